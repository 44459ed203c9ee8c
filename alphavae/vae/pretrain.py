"""Pretraining the project's own small RGB VAE (the ``embedded`` model) on real photos and art.

AlphaVAE starts from a *pretrained* RGB VAE. Hub VAEs cannot be reached offline, so the project makes its
own, of Stable Diffusion's family: a diffusers ``AutoencoderKL`` with 4 resolution levels (3 downsamplings,
factor 8), ``latent_channels`` latent channels (SD's 4 by default; FLUX's 16 work the same way), a
diagonal-Gaussian (KL) posterior, GroupNorm ResNet blocks, a mid-block with attention and the quant convs, only
narrower. The recipe is SD's: reconstruction L1 + LPIPS (only when real weights, fetched by ``alphavae weights
fetch``; a positive weight without them is an error) + a small KL to N(0, I), each summed over its elements and
divided by the batch size, and optionally, from step ``disc_start``, a PatchGAN hinge term weighted by
``adversarial_weight`` times the adaptive weight λ (off by default: weight 0; SD switches it on late in a long
run, and it trades PSNR for sharpness). AdamW with warm-up and cosine decay (the discriminator: AdamW with
betas (0.5, 0.9) at a constant ``lr``), bf16 autocast on a GPU that has bf16 natively
(``alphavae.vae.loading.autocast_dtype``; fp32 on a T4), and the checkpoints, loop and lock every trainer shares.

The data (:mod:`alphavae.vae.pretrain_data`) live on the training device: random crops at several scales of
the training images, cut there by a gather. Every random number of step ``s`` comes from
:func:`alphavae.training.step.step_generator` seeded by (seed, s), so a resumed run repeats an unbroken one
exactly, and a step never waits for the host: the logs stay on the device until every ``log_every`` steps.
The latent ``scaling_factor`` is 1 / std of the latents over training crops, as SD computes it, and is
stored in the saved config.

Run ``alphavae pretrain --help``; the exact command behind the shipped weights is in
``data/models/embedded-vae/MODEL_CARD.md``, the GPU run in ``scripts/gpu_pretrain_rgb.sh``. Quality is
measured by ``benchmarks/embedded_vae_quality.py``.
"""

from __future__ import annotations

import json
import math
import random
import time
from dataclasses import asdict
from pathlib import Path

import torch
from diffusers import AutoencoderKL
from safetensors.torch import save
from torch import nn

from alphavae.blending import to_vae_range
from alphavae.losses.adversarial import (
    PatchDiscriminator,
    adaptive_weight,
    generator_adversarial_loss,
    hinge_discriminator_loss,
)
from alphavae.metric.backbones import lpips_or_reason
from alphavae.training.checkpoint import (
    latest_checkpoint,
    load_checkpoint,
    rng_state,
    save_checkpoint,
    set_rng_state,
)
from alphavae.training.loop import LoopPlan, RunLog, run_lock, run_steps
from alphavae.training.optim import PAPER_BETAS, adamw, lr_schedule
from alphavae.training.step import step_generator
from alphavae.vae.loading import autocast_for, torch_device
from alphavae.vae.pretrain_config import PretrainConfig
from alphavae.vae.pretrain_data import HELDOUT_EVERY, PhotoCrops, split_folder


def build_vae(config: PretrainConfig) -> AutoencoderKL:
    """A fresh SD-family ``AutoencoderKL`` (RGB in and out), sized by ``config``."""
    levels = len(config.block_out_channels)
    return AutoencoderKL(
        in_channels=3,
        out_channels=3,
        down_block_types=("DownEncoderBlock2D",) * levels,
        up_block_types=("UpDecoderBlock2D",) * levels,
        block_out_channels=tuple(config.block_out_channels),
        layers_per_block=config.layers_per_block,
        latent_channels=config.latent_channels,
        norm_num_groups=config.norm_num_groups,
        sample_size=256,
    )


def load_perceptual(config: PretrainConfig, device: torch.device):
    """LPIPS-``config.lpips_net`` on the fetched ImageNet backbone, or None when its weight is 0.

    A positive weight without the weights is an error naming ``alphavae weights fetch`` (never a random backbone).
    """
    if config.lpips_weight <= 0:
        return None
    model, reason = lpips_or_reason(config.lpips_net, device)
    if model is None:
        raise ValueError(f"--lpips-weight {config.lpips_weight}: {reason}; or pass --lpips-weight 0")
    return model


def vae_loss(vae: AutoencoderKL, x01: torch.Tensor, config: PretrainConfig, generator: torch.Generator,
             lpips_model=None, discriminator: nn.Module | None = None
             ) -> tuple[torch.Tensor, dict[str, torch.Tensor], torch.Tensor]:
    """SD's VAE objective on a batch in [0, 1]: L_rec = (L1 + w·LPIPS) summed per image, + kl_weight · KL, over
    the batch, + (with ``discriminator``) adversarial_weight · λ · L_GAN. Returns ``(loss, logs, recon)``: logs
    are detached 0-dim tensors (read them back rarely), ``recon`` is in [-1, 1]. The posterior noise comes from
    ``generator``."""
    x = to_vae_range(x01)
    posterior = vae.encode(x).latent_dist
    recon = vae.decode(posterior.sample(generator=generator)).sample.float()  # losses in fp32 under autocast
    batch = x.shape[0]
    rec = (recon - x).abs().sum() / batch
    logs = {"l1_per_px": rec.detach() / x[0].numel()}
    if lpips_model is not None:
        perceptual = lpips_model(recon, x).sum() / batch
        rec = rec + config.lpips_weight * perceptual * x[0].numel()  # SD broadcasts LPIPS over every element
        logs["lpips"] = perceptual.detach()
    kl = posterior.kl().float().sum() / batch
    loss = rec + config.kl_weight * kl
    logs["kl"] = kl.detach()
    if discriminator is not None:
        gan = generator_adversarial_loss(discriminator(recon))
        lam = adaptive_weight(rec, gan, vae.decoder.conv_out.weight)
        loss = loss + config.adversarial_weight * lam * gan
        logs["adversarial"], logs["adaptive_weight"] = gan.detach(), lam
    logs["loss"] = loss.detach()
    return loss, logs, recon


def discriminator_loss(discriminator: nn.Module, x01: torch.Tensor, recon: torch.Tensor
                       ) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """The PatchGAN's hinge loss on the real batch (in [0, 1]) and the detached reconstruction (in [-1, 1])."""
    loss = hinge_discriminator_loss(discriminator(to_vae_range(x01)), discriminator(recon.detach()))
    return loss, {"disc_loss": loss.detach()}


@torch.no_grad()
def latent_scaling_factor(vae: AutoencoderKL, crops: PhotoCrops, n_batches: int, batch_size: int, generator: torch.Generator) -> float:
    """1 / std of posterior samples over training crops (Stable Diffusion's ``scale_by_std``); ``generator``
    (on the crops' device) draws the crops and the posterior noise."""
    latents = [vae.encode(to_vae_range(crops.sample(batch_size, generator))).latent_dist.sample(generator=generator).float()
               for _ in range(n_batches)]
    return float(1.0 / torch.cat(latents).std())


def save_fp16(vae: AutoencoderKL, folder: str | Path) -> Path:
    """Save ``vae`` as fp16 safetensors in diffusers layout (``config.json`` + weights) without touching it."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    vae.save_config(folder)
    weights = {name: t.detach().to("cpu", torch.float16).contiguous() for name, t in vae.state_dict().items()}
    (folder / "diffusion_pytorch_model.safetensors").write_bytes(save(weights, metadata={"format": "pt"}))  # umask mode
    return folder


def train(config: PretrainConfig, resume: bool = False) -> Path:
    """Run (or resume) pretraining; returns the final fp16 model folder (``OUTPUT/embedded-vae``), or the
    checkpoint folder when ``max_minutes`` stopped it first (continue with ``resume=True``)."""
    output = Path(config.output)
    with run_lock(output):
        return _train(config, output, resume)


def _train(config: PretrainConfig, output: Path, resume: bool) -> Path:
    device = torch_device(config.device)
    random.seed(config.seed)
    torch.manual_seed(config.seed)

    train_files, held_out = split_folder(config.photos)
    crops = PhotoCrops(train_files, config.crop, tuple(config.scales), device, config.colour_augment)
    vae = build_vae(config).to(device).train()
    optimizer = adamw(vae.parameters(), config.lr, weight_decay=config.weight_decay)
    scheduler = lr_schedule(optimizer, config.lr_schedule, config.warmup, config.steps)
    discriminator = PatchDiscriminator(in_channels=3).to(device).train() if config.adversarial_weight > 0 else None
    disc_optimizer = (adamw(discriminator.parameters(), config.lr, betas=PAPER_BETAS, weight_decay=config.weight_decay)
                      if discriminator is not None else None)
    lpips_model = load_perceptual(config, device)
    config.notes = [f"held-out photos: {len(held_out)} of {len(train_files) + len(held_out)} images (every "
                    f"{HELDOUT_EVERY}th group of related images, alphavae.vae.pretrain_data.split_folder)"]
    if crops.skipped:
        config.notes.append(f"{crops.skipped} training images are smaller than the {config.crop} px crop at every scale: unused")

    ckpt_root = output / "checkpoints"
    found = latest_checkpoint(ckpt_root) if resume else None
    step = 0
    if found is not None:
        shared, local = load_checkpoint(found)
        vae.load_state_dict(shared["model"])
        optimizer.load_state_dict(shared["optimizer"])
        scheduler.load_state_dict(shared["scheduler"])
        if discriminator is not None and "discriminator" in shared:
            discriminator.load_state_dict(shared["discriminator"])
            disc_optimizer.load_state_dict(shared["disc_optimizer"])
        elif discriminator is not None:
            config.notes.append(f"the checkpoint {found.name} has no discriminator: a fresh one starts here")
        set_rng_state(local["rng"])
        step = int(shared["step"])
        print(f"resumed from {found} at step {step}")
    for note in config.notes:
        print(note)
    log = RunLog(output / "log.jsonl", step if found is not None else None)
    autocast = autocast_for(device)
    began = time.monotonic()
    last: dict[str, float] = {}

    def one_step(s: int) -> dict[str, torch.Tensor]:
        generator = step_generator(config.seed, s, device)
        adversarial = discriminator if discriminator is not None and s >= config.disc_start else None
        x01 = crops.sample(config.batch_size, generator)
        with autocast:
            loss, logs, recon = vae_loss(vae, x01, config, generator, lpips_model, adversarial)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        scheduler.step()
        if adversarial is not None:
            with autocast:
                disc_loss, disc_logs = discriminator_loss(adversarial, x01, recon)
            disc_optimizer.zero_grad(set_to_none=True)
            disc_loss.backward()
            disc_optimizer.step()
            logs.update(disc_logs)
        return logs

    def write_log(done: int, logs: dict[str, torch.Tensor]) -> str:
        values = dict(zip(logs, torch.stack([v.float() for v in logs.values()]).tolist()))  # one host sync
        if not math.isfinite(values["loss"]):
            raise FloatingPointError(f"pretraining diverged by step {done}: {values}")
        last.update(values)
        log.write({"step": done, **values, "lr": scheduler.get_last_lr()[0], "seconds": time.monotonic() - began})
        return f"l1={values['l1_per_px']:.4f} kl={values['kl']:.0f}"

    def checkpoint(done: int) -> None:
        def state() -> dict:
            shared = {"step": done, "model": vae.state_dict(), "optimizer": optimizer.state_dict(),
                      "scheduler": scheduler.state_dict(), "config": asdict(config)}
            if discriminator is not None:
                shared |= {"discriminator": discriminator.state_dict(), "disc_optimizer": disc_optimizer.state_dict()}
            return shared
        save_checkpoint(ckpt_root, done, state, {"rng": rng_state()}, config.keep_checkpoints)

    plan = LoopPlan(config.steps, config.log_every, config.checkpoint_every, max_minutes=config.max_minutes)
    step = run_steps(plan, step, one_step, write_log, checkpoint, "pretrain")
    if step < config.steps:
        print(f"stopped after {config.max_minutes} min at step {step}; continue with --resume")
        return latest_checkpoint(ckpt_root)

    vae.eval()
    crops.colour_augment = False  # the latent statistics of the photos as they are
    scale = latent_scaling_factor(vae, crops, n_batches=16, batch_size=32,
                                  generator=torch.Generator(device=device).manual_seed(config.seed + 1))
    vae.register_to_config(scaling_factor=scale, shift_factor=None)
    final = save_fp16(vae, output / "embedded-vae")
    summary = {"config": asdict(config), "steps_done": step, "scaling_factor": scale, "final_logs": last,
               "minutes_this_run": (time.monotonic() - began) / 60}
    (output / "pretrain_summary.json").write_text(json.dumps(summary, indent=2))
    print(json.dumps({k: summary[k] for k in ("steps_done", "scaling_factor", "final_logs")}))
    return final
