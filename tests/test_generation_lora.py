"""The LoRA path of notebook 05 end to end, offline, on a tiny pipeline built here.

RANDOM INITIALISATION — wiring test only: the UNet, text encoder and VAE below are tiny and random (no
pretrained weights exist offline). It proves the plumbing — RGBA images in, a LoRA on the UNet's attention
and feed-forward projections trains (loss on fixed draws goes down, LoRA weights change, base weights stay
frozen), RGBA PNGs out — not image quality.
"""

import copy
import json

import pytest
import torch
from diffusers import AutoencoderKL, DDIMScheduler, StableDiffusionPipeline, UNet2DConditionModel
from transformers import CLIPTextConfig, CLIPTextModel, CLIPTokenizer

from alphavae.vae.conversion import convert_to_rgba
from alphavae.training.data import RGBAFolder
from alphavae.paths import sample_dir
from alphavae.imageio import load_rgba, save_png
from alphavae.generation.lora import add_lora, denoising_loss, encode_prompts, generate_rgba, rgba_latents, rgba_pipeline, save_lora, train_lora

CAPTIONS = ["a red apple", "a cat", "a blue star", "a house"]


def tiny_tokenizer(folder):
    """A CLIP BPE tokenizer whose vocabulary is single letters (no merges): enough to tokenise any caption."""
    letters = "abcdefghijklmnopqrstuvwxyz"
    vocab = ["<|startoftext|>", "<|endoftext|>"] + list(letters) + [c + "</w>" for c in letters]
    (folder / "vocab.json").write_text(json.dumps({tok: i for i, tok in enumerate(vocab)}))
    (folder / "merges.txt").write_text("#version: 0.2\n")
    return CLIPTokenizer(str(folder / "vocab.json"), str(folder / "merges.txt"), model_max_length=16), len(vocab)


@pytest.fixture(scope="module")
def pipe(tmp_path_factory):
    torch.manual_seed(0)
    tokenizer, vocab_size = tiny_tokenizer(tmp_path_factory.mktemp("tok"))
    text_encoder = CLIPTextModel(CLIPTextConfig(vocab_size=vocab_size, hidden_size=32, intermediate_size=37, num_hidden_layers=2,
                                                num_attention_heads=4, max_position_embeddings=16, bos_token_id=0, eos_token_id=1))
    unet = UNet2DConditionModel(sample_size=8, in_channels=4, out_channels=4, block_out_channels=(32, 64), layers_per_block=1,
                                down_block_types=("CrossAttnDownBlock2D", "DownBlock2D"), up_block_types=("UpBlock2D", "CrossAttnUpBlock2D"),
                                cross_attention_dim=32, attention_head_dim=8, norm_num_groups=8)
    rgb_vae = AutoencoderKL(block_out_channels=(16, 32), layers_per_block=1, norm_num_groups=8, latent_channels=4,
                            down_block_types=("DownEncoderBlock2D",) * 2, up_block_types=("UpDecoderBlock2D",) * 2)
    scheduler = DDIMScheduler(beta_schedule="scaled_linear", beta_start=0.00085, beta_end=0.012, clip_sample=False, set_alpha_to_one=False, steps_offset=1)
    rgb_pipe = StableDiffusionPipeline(vae=rgb_vae, text_encoder=text_encoder, tokenizer=tokenizer, unet=unet, scheduler=scheduler,
                                       safety_checker=None, feature_extractor=None, requires_safety_checker=False)
    rgb_pipe.set_progress_bar_config(disable=True)
    rgba = rgba_pipeline(rgb_pipe, convert_to_rgba(rgb_vae))
    rgba.set_progress_bar_config(disable=True)
    return rgba


@pytest.fixture(scope="module")
def images():
    data = RGBAFolder(sample_dir(), size=16)
    return torch.stack([data[i] for i in range(len(CAPTIONS))])


def test_rgba_pipeline_swaps_only_the_vae(pipe):
    assert pipe.vae.config.in_channels == pipe.vae.config.out_channels == 4
    assert pipe.vae_scale_factor == 2
    with pytest.raises(ValueError, match="4-channel"):
        rgba_pipeline(pipe, AutoencoderKL(block_out_channels=(16,), norm_num_groups=8))


def test_lora_trains_on_rgba_latents_and_leaves_the_base_frozen(pipe, images, tmp_path):
    base_unet = copy.deepcopy(pipe.unet)
    params = add_lora(pipe.unet, rank=4)
    lora_names = {n for n, p in pipe.unet.named_parameters() if p.requires_grad}
    assert lora_names and all("lora_" in n for n in lora_names)
    assert any("ff.net" in n for n in lora_names) and any("to_q" in n for n in lora_names)
    base_before = {n: p.detach().clone() for n, p in pipe.unet.named_parameters() if n not in lora_names}
    lora_before = [p.detach().clone() for p in params]

    embeds = encode_prompts(pipe, CAPTIONS)
    latents = rgba_latents(pipe.vae, images, torch.Generator().manual_seed(1))
    assert latents.shape == (4, 4, 8, 8)

    def fixed_loss():  # the same noise and timesteps before and after training
        with torch.no_grad():
            return sum(denoising_loss(pipe, latents, embeds, torch.Generator().manual_seed(s)).item() for s in range(8))

    before = fixed_loss()
    losses = train_lora(pipe, images, prompts=CAPTIONS, steps=40, batch_size=4, lr=3e-3, progress=False)
    after = fixed_loss()
    assert len(losses) == 40 and all(torch.isfinite(torch.tensor(losses)))
    print("fixed-draw loss", before, after)
    assert after < 0.9 * before, (before, after)
    assert all(not torch.equal(a, p) for a, p in zip(lora_before, params))
    assert all(torch.equal(base_before[n], p) for n, p in pipe.unet.named_parameters() if n in base_before)

    folder = save_lora(pipe, tmp_path / "lora")
    assert (folder / "pytorch_lora_weights.safetensors").is_file()

    out = generate_rgba(pipe, prompt="a red apple", n=2, seed=0, num_inference_steps=3, height=16, width=16)
    assert out.shape == (2, 4, 16, 16) and 0 <= out.min() and out.max() <= 1
    assert torch.equal(out, generate_rgba(pipe, prompt="a red apple", n=2, seed=0, num_inference_steps=3, height=16, width=16))
    save_png(out[0], tmp_path / "apple.png")
    assert load_rgba(tmp_path / "apple.png").shape == (4, 16, 16)

    fresh = StableDiffusionPipeline(**{**pipe.components, "unet": base_unet})
    fresh.set_progress_bar_config(disable=True)
    fresh.load_lora_weights(folder)
    again = generate_rgba(fresh, prompt="a red apple", n=2, seed=0, num_inference_steps=3, height=16, width=16)
    assert torch.allclose(again, out, atol=1e-4)
