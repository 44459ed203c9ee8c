"""The real-world path: an RGBA VAE inside a diffusers text-to-image pipeline, adapted with a LoRA (method.md §4).

The paper keeps FLUX's transformer and teaches it the RGBA latent statistics with a rank-64 LoRA on the
attention and feed-forward projections. The same idea for the Stable Diffusion family, with diffusers + peft:

1. ``rgba_pipeline(pipe, rgba_vae)`` — the same pipeline with the RGBA VAE (converted from the pipeline's own
   VAE and fine-tuned with the AlphaVAE objective) in place of the RGB one. The latent shape and scaling are
   unchanged, so the UNet runs as is; without the fine-tune the decoded alpha is meaningless.
2. ``add_lora(pipe.unet, rank=64)`` — freeze the UNet, add a peft ``LoraConfig`` adapter on ``to_q/to_k/
   to_v/to_out.0`` and ``ff.net.0.proj/ff.net.2``.
3. ``train_lora(pipe, images, prompts | prompt_embeds)`` — the denoising loss on RGBA latents (posterior
   samples, ``(z − shift)·scale``), with the pipeline's own noise schedule and prediction type.
4. ``save_lora(pipe, folder)`` / ``pipe.load_lora_weights(folder)``; ``generate_rgba(pipe, ...)`` →
   ``(n, 4, H, W)`` RGBA in [0, 1] (``output_type="pt"``; 4 channels pass through diffusers' post-processing).

Colab recipe (GPU, network; not run here — no hub access in this project's environment)::

    pipe = StableDiffusionPipeline.from_pretrained("stable-diffusion-v1-5/stable-diffusion-v1-5",
                                                   torch_dtype=torch.float16, safety_checker=None).to("cuda")
    # RGBA VAE: `alphavae convert --vae stable-diffusion-v1-5/stable-diffusion-v1-5:vae --output rgba0`,
    # then `alphavae train` with that folder as the VAE (notebook 04), giving e.g. ./sd15-rgba
    pipe = rgba_pipeline(pipe, load_vae("./sd15-rgba", device="cuda", dtype=torch.float16))
    add_lora(pipe.unet, rank=64)                           # LoRA weights train in float32
    train_lora(pipe, images, prompts=captions, steps=20_000, batch_size=8, lr=1e-4)
    save_lora(pipe, "sd15-rgba-lora"); rgba = generate_rgba(pipe, prompt="a red apple", n=4)

SD 2.x works the same way. SDXL (``StableDiffusionXLPipeline``, VAE ``madebyollin/sdxl-vae-fp16-fix``) also
needs the pooled text embeddings and time ids as ``added_cond_kwargs`` in the training step — not
implemented here. FLUX (the paper): convert ``black-forest-labs/FLUX.1-dev:vae`` (16 latent channels,
``shift_factor`` set), fine-tune it, then train a LoRA on ``FluxTransformer2DModel`` (targets ``to_q, to_k,
to_v, to_out.0, add_q_proj, add_k_proj, add_v_proj, to_add_out, ff.net.0.proj, ff.net.2,
ff_context.net.0.proj, ff_context.net.2``) with diffusers' ``train_dreambooth_lora_flux.py`` pointed at a
pipeline folder holding the RGBA VAE, its image loading changed from ``convert("RGB")`` to 4-channel RGBA.
"""

from __future__ import annotations

import os
from pathlib import Path

import torch
import torch.nn.functional as F
from diffusers import AutoencoderKL, DDPMScheduler, StableDiffusionPipeline
from diffusers.utils import convert_state_dict_to_diffusers
from peft import LoraConfig
from peft.utils import get_peft_model_state_dict
from tqdm.auto import tqdm

from alphavae.blending import to_vae_range
from alphavae.training.optim import adamw
from alphavae.vae.loading import latent_factors

#: What the LoRA adapts in each transformer block of the UNet: attention and feed-forward projections.
LORA_TARGETS = ("to_q", "to_k", "to_v", "to_out.0", "ff.net.0.proj", "ff.net.2")


def rgba_pipeline(pipe: StableDiffusionPipeline, rgba_vae: AutoencoderKL) -> StableDiffusionPipeline:
    """A new pipeline of the same class sharing every component of ``pipe`` except the VAE, which is ``rgba_vae``.

    The RGBA VAE must have the same latent channels as the RGB one (it does when made by
    :func:`alphavae.vae.conversion.convert_to_rgba`); the original pipeline is left untouched.
    """
    old = pipe.vae.config
    if rgba_vae.config.latent_channels != old.latent_channels:
        raise ValueError(f"rgba_vae has {rgba_vae.config.latent_channels} latent channels, the pipeline's UNet expects {old.latent_channels}")
    if rgba_vae.config.in_channels != 4 or rgba_vae.config.out_channels != 4:
        raise ValueError("rgba_vae is not an RGBA (4-channel) VAE; convert it with alphavae.vae.conversion.convert_to_rgba")
    components = {**pipe.components, "vae": rgba_vae.to(pipe.device)}
    return type(pipe)(**components)


def add_lora(unet, rank: int = 64, alpha: float | None = None, targets: tuple[str, ...] = LORA_TARGETS,
             adapter_name: str = "rgba") -> list[torch.nn.Parameter]:
    """Freeze ``unet`` and add a LoRA adapter (rank ``rank``, scale ``alpha / rank``) on ``targets``.

    Returns the trainable LoRA parameters (kept in float32 even if the UNet is half precision).
    """
    unet.requires_grad_(False)
    unet.add_adapter(LoraConfig(r=rank, lora_alpha=alpha or rank, init_lora_weights="gaussian",
                                target_modules=list(targets)), adapter_name=adapter_name)
    params = [p for p in unet.parameters() if p.requires_grad]
    if not params:
        raise ValueError(f"no module of the UNet matches the LoRA targets {targets}")
    for p in params:
        p.data = p.data.float()
    return params


@torch.no_grad()
def rgba_latents(vae: AutoencoderKL, images01: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
    """RGBA images ``(B, 4, H, W)`` in [0, 1] → diffusion latents ``(z − shift)·scale`` (posterior samples)."""
    shift, scale = latent_factors(vae)
    dist = vae.encode(to_vae_range(images01).to(vae.device, vae.dtype)).latent_dist
    return (dist.sample(generator) - shift) * scale


def encode_prompts(pipe: StableDiffusionPipeline, prompts: list[str]) -> torch.Tensor:
    """Text embeddings of ``prompts`` through the pipeline's tokenizer and text encoder."""
    with torch.no_grad():
        embeds, _ = pipe.encode_prompt(prompts, pipe.device, 1, False)
    return embeds


def denoising_loss(pipe: StableDiffusionPipeline, latents: torch.Tensor, prompt_embeds: torch.Tensor,
                   generator: torch.Generator) -> torch.Tensor:
    """The diffusion training loss on clean ``latents``: noise them at random steps, predict as the UNet was
    trained to (ε, v or x₀ per the scheduler's ``prediction_type``), mean squared error."""
    schedule = DDPMScheduler.from_config(pipe.scheduler.config)
    device = latents.device
    noise = torch.randn(latents.shape, generator=generator, device=device)
    t = torch.randint(schedule.config.num_train_timesteps, (len(latents),), generator=generator, device=device)
    noisy = schedule.add_noise(latents, noise, t)
    kind = schedule.config.prediction_type
    target = {"epsilon": noise, "v_prediction": schedule.get_velocity(latents, noise, t), "sample": latents}[kind]
    pred = pipe.unet(noisy.to(pipe.unet.dtype), t, encoder_hidden_states=prompt_embeds.to(pipe.unet.dtype)).sample
    return F.mse_loss(pred.float(), target.float())


def train_lora(pipe: StableDiffusionPipeline, images01: torch.Tensor, prompts: list[str] | None = None,
               prompt_embeds: torch.Tensor | None = None, steps: int = 1000, batch_size: int = 4, lr: float = 1e-4,
               seed: int = 0, progress: bool = True) -> list[float]:
    """Train the LoRA added by :func:`add_lora` on RGBA images ``(N, 4, H, W)`` in [0, 1] with their captions.

    Give ``prompts`` (one per image; needs the pipeline's tokenizer) or precomputed ``prompt_embeds``
    ``(N, L, D)`` (e.g. offline without a tokenizer). Only the LoRA parameters change. Returns the losses.
    """
    if prompt_embeds is None:
        if prompts is None or len(prompts) != len(images01):
            raise ValueError("train_lora needs one prompt per image (prompts=...) or prompt_embeds=...")
        prompt_embeds = encode_prompts(pipe, list(prompts))
    if len(prompt_embeds) != len(images01):
        raise ValueError(f"{len(prompt_embeds)} prompt embeddings for {len(images01)} images")
    params = [p for p in pipe.unet.parameters() if p.requires_grad]
    if not params:
        raise ValueError("the UNet has no trainable parameters: call add_lora(pipe.unet) first")
    device = pipe.device
    generator = torch.Generator(device=device).manual_seed(seed)
    latents = torch.cat([rgba_latents(pipe.vae, chunk, generator) for chunk in images01.split(batch_size)])
    prompt_embeds = prompt_embeds.to(device)
    optimizer = adamw(params, lr)
    pipe.unet.train()
    losses = []
    for _ in tqdm(range(steps), desc="LoRA", disable=not progress):
        idx = torch.randint(len(latents), (batch_size,), generator=generator, device=device)
        loss = denoising_loss(pipe, latents[idx], prompt_embeds[idx], generator)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    pipe.unet.eval()
    return losses


def save_lora(pipe: StableDiffusionPipeline, folder: str | os.PathLike) -> Path:
    """Write the UNet's LoRA weights (safetensors) so ``pipe.load_lora_weights(folder)`` restores them."""
    folder = Path(folder)
    adapter = pipe.unet.active_adapters()[0]
    layers = convert_state_dict_to_diffusers(get_peft_model_state_dict(pipe.unet, adapter_name=adapter))
    type(pipe).save_lora_weights(folder, unet_lora_layers=layers)
    return folder


@torch.no_grad()
def generate_rgba(pipe: StableDiffusionPipeline, prompt: str | list[str] | None = None,
                  prompt_embeds: torch.Tensor | None = None, n: int = 1, seed: int = 0, **kwargs) -> torch.Tensor:
    """Run the pipeline (RGBA VAE inside) and return RGBA images ``(n, 4, H, W)`` in [0, 1] on the CPU.

    Extra keyword arguments go to the pipeline (``num_inference_steps``, ``guidance_scale``, ``height`` ...).
    """
    generator = torch.Generator(device="cpu").manual_seed(seed)
    per_prompt = n if prompt_embeds is None and isinstance(prompt, str) else 1
    out = pipe(prompt=prompt, prompt_embeds=prompt_embeds, num_images_per_prompt=per_prompt, generator=generator,
               output_type="pt", **kwargs).images
    if out.shape[1] != 4:
        raise ValueError(f"the pipeline returned {out.shape[1]} channels; give it an RGBA VAE with rgba_pipeline()")
    return out.float().cpu()
