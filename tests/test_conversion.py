"""RGB → RGBA surgery: the converted VAE reproduces the RGB VAE exactly, says α = 1, and round-trips to disk."""

from __future__ import annotations

import pytest
import torch
from diffusers import AutoencoderKL

from alphavae.vae.conversion import convert_to_rgba, surgery_summary
from alphavae.vae.loading import load_vae

TINY = dict(block_out_channels=(8, 16), down_block_types=("DownEncoderBlock2D",) * 2,
            up_block_types=("UpDecoderBlock2D",) * 2, layers_per_block=1, norm_num_groups=4, sample_size=32)
#: Stable Diffusion style: 4 latent channels, quant convs, scaling 0.18215, no shift.
SD_STYLE = dict(TINY, latent_channels=4, scaling_factor=0.18215)
#: FLUX style: 16 latent channels, no quant convs, a shift factor.
FLUX_STYLE = dict(TINY, latent_channels=16, use_quant_conv=False, use_post_quant_conv=False,
                  scaling_factor=0.3611, shift_factor=0.1159)


def _embedded() -> AutoencoderKL:
    return load_vae("embedded")  # shipped in data/models/: missing weights are a failure, not a skip


def _random(config: dict) -> AutoencoderKL:
    torch.manual_seed(0)
    vae = AutoencoderKL(**config).eval()
    with torch.no_grad():  # give the biases non-zero values so "bias kept" is actually tested
        for module in (vae.encoder.conv_in, vae.decoder.conv_out):
            module.bias.uniform_(-0.3, 0.3)
    return vae


@pytest.fixture(params=["sd", "flux", "embedded"])
def rgb_vae(request) -> AutoencoderKL:
    return {"sd": lambda: _random(SD_STYLE), "flux": lambda: _random(FLUX_STYLE), "embedded": _embedded}[request.param]()


def _inputs(seed: int = 1, size: int = 32) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    x = torch.rand(3, 4, size, size, generator=g) * 2 - 1
    x[0, 3] = -1.0  # fully transparent
    x[1, 3] = 1.0  # fully opaque; image 2 keeps a random alpha
    return x


def test_rgb_output_equals_original_for_any_alpha_and_alpha_is_one(rgb_vae):
    rgba = convert_to_rgba(rgb_vae)
    x = _inputs()
    with torch.no_grad():
        want = rgb_vae.decode(rgb_vae.encode(x[:, :3]).latent_dist.mode()).sample
        post = rgba.encode(x).latent_dist
        got = rgba.decode(post.mode()).sample
        other_alpha = rgba.encode(torch.cat([x[:, :3], -x[:, 3:]], 1)).latent_dist
    assert got.shape == (3, 4, 32, 32)
    torch.testing.assert_close(got[:, :3], want, rtol=1e-5, atol=1e-5)
    assert torch.equal(got[:, 3], torch.ones_like(got[:, 3]))
    torch.testing.assert_close(post.mean, other_alpha.mean, rtol=0, atol=0)  # the encoder ignores alpha


def test_latent_space_and_factors_unchanged(rgb_vae):
    rgba = convert_to_rgba(rgb_vae)
    for key in ("latent_channels", "scaling_factor", "shift_factor", "use_quant_conv", "use_post_quant_conv"):
        assert rgba.config.get(key) == rgb_vae.config.get(key), key
    assert (rgba.config.in_channels, rgba.config.out_channels) == (4, 4)
    changed = {c.name for c in surgery_summary(rgb_vae, rgba)}
    assert changed <= {"encoder.conv_in.weight", "decoder.conv_out.weight", "decoder.conv_out.bias"}
    assert "encoder.conv_in.weight" in changed and "decoder.conv_out.weight" in changed


def test_surgery_initialisation_values(rgb_vae):
    rgba = convert_to_rgba(rgb_vae)
    cin, cin0 = rgba.encoder.conv_in, rgb_vae.encoder.conv_in
    cout, cout0 = rgba.decoder.conv_out, rgb_vae.decoder.conv_out
    assert torch.equal(cin.weight[:, :3], cin0.weight) and torch.all(cin.weight[:, 3] == 0)
    assert torch.equal(cin.bias, cin0.bias)
    assert torch.equal(cout.weight[:3], cout0.weight) and torch.all(cout.weight[3] == 0)
    assert torch.equal(cout.bias[:3], cout0.bias) and cout.bias[3].item() == 1.0


def test_original_untouched(rgb_vae):
    before = {k: v.clone() for k, v in rgb_vae.state_dict().items()}
    convert_to_rgba(rgb_vae)
    after = rgb_vae.state_dict()
    assert before.keys() == after.keys() and all(torch.equal(before[k], after[k]) for k in before)
    assert rgb_vae.config.in_channels == 3 and rgb_vae.encoder.conv_in.in_channels == 3


def test_save_pretrained_round_trip(rgb_vae, tmp_path):
    rgba = convert_to_rgba(rgb_vae)
    rgba.save_pretrained(tmp_path / "rgba")
    loaded = load_vae(str(tmp_path / "rgba"))
    assert (loaded.config.in_channels, loaded.config.out_channels) == (4, 4)
    x = _inputs(seed=2)
    with torch.no_grad():
        torch.testing.assert_close(loaded(x).sample, rgba(x).sample, rtol=0, atol=0)


def test_refuses_a_vae_that_is_not_rgb():
    rgba = convert_to_rgba(_random(SD_STYLE))
    with pytest.raises(ValueError, match="already RGBA"):
        convert_to_rgba(rgba)
    with pytest.raises(ValueError, match="in_channels=1"):
        convert_to_rgba(AutoencoderKL(**dict(SD_STYLE, in_channels=1, out_channels=1)))
    with pytest.raises(TypeError, match="AutoencoderKL"):
        convert_to_rgba(torch.nn.Conv2d(3, 3, 1))


def test_gradients_reach_the_new_alpha_weights():
    """The zero weights are trainable: a loss on the alpha output moves them (training can start)."""
    rgba = convert_to_rgba(_random(SD_STYLE)).train()
    rgba.requires_grad_(True)
    out = rgba(_inputs()).sample
    out[:, 3].square().sum().backward()
    assert rgba.decoder.conv_out.weight.grad[3].abs().sum() > 0


def test_dtype_is_kept():
    """A half-precision VAE (how the embedded weights are stored) converts to a half-precision RGBA VAE."""
    rgba = convert_to_rgba(_random(SD_STYLE).half())
    assert {p.dtype for p in rgba.parameters()} == {torch.float16}
    assert rgba.decoder.conv_out.bias[3].item() == 1.0
