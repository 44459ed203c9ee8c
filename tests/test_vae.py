"""The VAE loader (embedded, local folder, hub id through the real cache layout, offline errors) and the
shipped embedded RGB VAE's quality against the latent-matched bicubic baseline."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from diffusers import AutoencoderKL

from alphavae.blending import composite
from alphavae.paths import data_dir, sample_dir
from alphavae.imageio import list_images, load_rgba, resize_long_side
from alphavae.metric.alpha import psnr
from alphavae.vae.reconstruct import bicubic_baseline, latent_matched_factor, reconstruct
from alphavae.vae.loading import EMBEDDED, VAELoadError, load_vae, resolve_spec


@pytest.fixture(autouse=True)
def offline(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")


def tiny_vae(seed: int = 0) -> AutoencoderKL:
    torch.manual_seed(seed)
    return AutoencoderKL(
        block_out_channels=(8, 8), down_block_types=("DownEncoderBlock2D",) * 2,
        up_block_types=("UpDecoderBlock2D",) * 2, norm_num_groups=4, latent_channels=4,
    )


def test_embedded_loads_offline_and_is_sd_family():
    vae = load_vae("embedded")
    c = vae.config
    assert (c.in_channels, c.out_channels, c.latent_channels) == (3, 3, 16)  # FLUX's count (SD has 4)
    assert len(c.block_out_channels) == 4  # 3 downsamplings: factor 8
    assert c.use_quant_conv and c.use_post_quant_conv
    assert c.scaling_factor != 0.18215  # computed from data, not SD's constant
    weights = data_dir() / "models" / "embedded-vae" / "diffusion_pytorch_model.safetensors"
    assert weights.stat().st_size < 8.5e6
    assert not vae.training and vae.dtype == torch.float32
    x = torch.rand(2, 3, 32, 40)
    z = vae.encode(x * 2 - 1).latent_dist.mode()
    assert z.shape == (2, 16, 4, 5)


def sample_composites(n: int = 8, side: int = 128) -> torch.Tensor:
    """The first ``n`` RGBA sample images (long side ``side``, centred on a square) over gray and white."""
    from alphavae.training.data import square_pad

    images = [square_pad(resize_long_side(load_rgba(p), side), side) for p in list_images(sample_dir())[:n]]
    rgba = torch.stack(images)
    return torch.cat([composite(rgba, (0.5, 0.5, 0.5)), composite(rgba, (1.0, 1.0, 1.0))])


def test_embedded_reconstruction_beats_bicubic_baseline():
    vae = load_vae("embedded")
    x = sample_composites()
    factor = latent_matched_factor(vae)
    assert factor == pytest.approx(8 * (3 / 16) ** 0.5)  # 16 latent channels
    vae_psnr = psnr(reconstruct(vae, x), x)
    bicubic_psnr = psnr(bicubic_baseline(x, factor), x)
    # measured (2-core CPU): 27.97 vs 25.66 dB, VAE better on 11/16 composites; against 16 latent channels the
    # latent-matched bicubic is x3.46, a strong baseline (held-out numbers: benchmarks/results/heldout_quality_rgb.json)
    assert vae_psnr.mean() > bicubic_psnr.mean() + 1.5, (vae_psnr.mean(), bicubic_psnr.mean())
    assert (vae_psnr > bicubic_psnr).float().mean() >= 0.6


def test_reconstruct_pads_and_crops_back():
    vae = tiny_vae()
    x = torch.rand(2, 3, 13, 21)
    y = reconstruct(vae, x)
    assert y.shape == x.shape and 0 <= y.min() and y.max() <= 1
    with pytest.raises(ValueError, match="expected"):
        reconstruct(vae, torch.rand(1, 4, 16, 16))


def test_bicubic_baseline_keeps_flat_images():
    x = torch.full((1, 3, 64, 64), 0.3)
    assert torch.allclose(bicubic_baseline(x, 6.93), x, atol=1e-5)


def test_local_folder_and_id_subfolder_resolution(tmp_path):
    vae = tiny_vae()
    vae.save_pretrained(tmp_path / "repo" / "vae", safe_serialization=True)
    assert resolve_spec(str(tmp_path / "repo" / "vae")) == (str(tmp_path / "repo" / "vae"), None)
    assert resolve_spec(f"{tmp_path / 'repo'}:vae") == (str(tmp_path / "repo"), "vae")
    assert resolve_spec("black-forest-labs/FLUX.1-dev:vae") == ("black-forest-labs/FLUX.1-dev", "vae")
    assert resolve_spec("stabilityai/sd-vae-ft-mse") == ("stabilityai/sd-vae-ft-mse", None)
    loaded = load_vae(f"{tmp_path / 'repo'}:vae")
    for (name, a), b in zip(vae.state_dict().items(), loaded.state_dict().values()):
        assert torch.equal(a, b), name


def test_only_safetensors_are_loaded(tmp_path):
    tiny_vae().save_pretrained(tmp_path / "bin", safe_serialization=False)
    with pytest.raises(VAELoadError, match="bin"):
        load_vae(str(tmp_path / "bin"))


def _fake_hub_cache(cache: Path, repo_id: str, vae: AutoencoderKL) -> None:
    """Lay a model out the way huggingface_hub's cache does: models--org--name/{refs/main, snapshots/<sha>/}."""
    sha = "0" * 40
    root = cache / ("models--" + repo_id.replace("/", "--"))
    (root / "refs").mkdir(parents=True)
    (root / "refs" / "main").write_text(sha)
    vae.save_pretrained(root / "snapshots" / sha / "vae", safe_serialization=True)


@pytest.fixture
def hub_cache(tmp_path, monkeypatch) -> Path:
    """An empty Hugging Face cache folder, used in place of the real one (the constant huggingface_hub read from
    ``$HF_HUB_CACHE`` when it was imported, and the variable for anything that reads it later)."""
    from huggingface_hub import constants

    cache = tmp_path / "hub"
    cache.mkdir()
    monkeypatch.setenv("HF_HUB_CACHE", str(cache))
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(cache))
    return cache


def test_hub_id_loads_from_the_local_cache_offline(hub_cache):
    vae = tiny_vae(seed=3)
    _fake_hub_cache(hub_cache, "someorg/tiny-vae", vae)
    loaded = load_vae("someorg/tiny-vae:vae")
    assert loaded.state_dict().keys() == vae.state_dict().keys()
    for (name, a), b in zip(vae.state_dict().items(), loaded.state_dict().values()):
        assert torch.equal(a, b), name
    with pytest.raises(VAELoadError, match="someorg/tiny-vae:decoder"):  # the subfolder is really used
        load_vae("someorg/tiny-vae:decoder")


def test_offline_unknown_hub_id_is_a_one_line_error(hub_cache):
    with pytest.raises(VAELoadError) as caught:
        load_vae("nobody/no-such-vae:vae")
    message = str(caught.value)
    assert "\n" not in message
    assert message.startswith("nobody/no-such-vae:vae") and "HF_HUB_OFFLINE" in message and "local" in message


def test_bad_specs_name_what_to_do(tmp_path):
    with pytest.raises(VAELoadError, match="valid names: " + ", ".join(EMBEDDED)):
        load_vae("embedded-rbga")
    with pytest.raises(VAELoadError, match="no such folder"):
        load_vae(str(tmp_path / "missing" / "vae"))
    with pytest.raises(VAELoadError, match="empty"):
        resolve_spec(" ")
    (tmp_path / "notavae").mkdir()
    (tmp_path / "notavae" / "config.json").write_text(json.dumps({"_class_name": "AutoencoderKL"}))
    with pytest.raises(VAELoadError, match="notavae"):
        load_vae(str(tmp_path / "notavae"))


@pytest.mark.parametrize(("device", "major", "expected"), [
    ("cuda", 9, torch.bfloat16),  # an H100 or H200
    ("cuda", 8, torch.bfloat16),  # an A100, L4
    ("cuda", 7, None),            # a T4 or V100: bf16 only emulated, so fp32
    ("cpu", 9, None),
])
def test_autocast_is_bf16_only_where_a_gpu_has_it_natively(monkeypatch, device, major, expected):
    """Every trainer autocasts through ``autocast_dtype``; the config's ``mixed_precision: auto`` follows it."""
    from alphavae.training.trainer import auto_mixed_precision
    from alphavae.vae.loading import autocast_dtype

    monkeypatch.setattr(torch.cuda, "get_device_capability", lambda device=None: (major, 0))
    assert autocast_dtype(torch.device(device)) is expected
    if device == "cuda":
        assert auto_mixed_precision(cpu=False) == ("bf16" if expected else "no")
    assert auto_mixed_precision(cpu=True) == "no"
