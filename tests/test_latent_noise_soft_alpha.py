"""``benchmarks/latent_noise_soft_alpha.py``: batched encode and decode give what one pass gives, in range."""

from __future__ import annotations

import pytest
import torch
from diffusers import AutoencoderKL
from script_modules import load_script

noise = load_script("benchmarks/latent_noise_soft_alpha.py")


def tiny_rgba_vae() -> AutoencoderKL:
    torch.manual_seed(0)
    return AutoencoderKL(in_channels=4, out_channels=4, block_out_channels=(8,) * 4, layers_per_block=1,
                         norm_num_groups=4, latent_channels=4, down_block_types=("DownEncoderBlock2D",) * 4,
                         up_block_types=("UpDecoderBlock2D",) * 4).eval()  # downsampling 8, as the shipped VAEs


def test_batched_means_and_decodes_are_one_pass_of_each():
    vae = tiny_rgba_vae()
    images = torch.rand(noise.BATCH + 3, 4, 32, 32)  # more than one batch, the last one short
    means = noise.posterior_means(vae, images)
    with torch.no_grad():
        one_pass = vae.encode(images * 2 - 1).latent_dist.mean
        decoded_once = ((vae.decode(one_pass).sample.clamp(-1, 1) + 1) / 2)
    torch.testing.assert_close(means, one_pass, rtol=1e-5, atol=1e-6)
    decoded = noise.decode(vae, means)
    assert decoded.shape == images.shape and decoded.min() >= 0 and decoded.max() <= 1
    torch.testing.assert_close(decoded, decoded_once, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("loss_kind", noise.FINETUNE_LOSSES)
def test_the_decoder_fine_tune_leaves_the_encoder_and_so_the_latent_space_alone(loss_kind):
    vae = tiny_rgba_vae()
    images = torch.rand(6, 4, 8 * noise.CROP, 8 * noise.CROP)  # 128 px: one 16×16 latent crop per image
    means = noise.posterior_means(vae, images)
    std = means.std(dim=(0, 2, 3), keepdim=True)
    before = {name: p.detach().clone() for name, p in vae.named_parameters()}
    noise.finetune_decoder(vae, images, means, std, steps=3, max_noise=0.2, lr=1e-3, seed=0, loss_kind=loss_kind)
    changed = {name for name, p in vae.named_parameters() if not torch.equal(p, before[name])}
    assert changed and all(name.startswith(("decoder.", "post_quant_conv.")) for name in changed), changed
    assert any(name.startswith("decoder.conv_out") for name in changed)
    torch.testing.assert_close(noise.posterior_means(vae, images), means)  # same latents as before
    assert not any(p.requires_grad for p in vae.parameters()) and not vae.training


def test_evenly_spaced_spreads_over_the_list():
    from alphavae.generation.evaluate import evenly_spaced
    files = [f"f{i}" for i in range(10)]
    assert evenly_spaced(files, 3) == ["f0", "f3", "f6"] and evenly_spaced(files, 20) == files
    assert evenly_spaced(files, None) == files
