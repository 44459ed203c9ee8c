"""``alphavae convert`` through its argparse entry point (in-process): a loadable RGBA folder, atomic, never
overwriting by surprise, in the dtype asked for."""

from __future__ import annotations

import pytest
import torch
from diffusers import AutoencoderKL
from safetensors import safe_open

from alphavae.cli import main
from alphavae.vae.loading import load_vae

TINY = dict(block_out_channels=(8, 16), down_block_types=("DownEncoderBlock2D",) * 2,
            up_block_types=("UpDecoderBlock2D",) * 2, layers_per_block=1, norm_num_groups=4, latent_channels=4)


@pytest.fixture(scope="module")
def rgb_folder(tmp_path_factory):
    torch.manual_seed(0)
    folder = tmp_path_factory.mktemp("rgb") / "tiny-rgb"
    AutoencoderKL(**TINY).save_pretrained(folder)
    return folder


def _same_rgb(rgb_spec: str, rgba_folder) -> None:
    rgb, rgba = load_vae(rgb_spec), load_vae(str(rgba_folder))
    assert (rgba.config.in_channels, rgba.config.out_channels) == (4, 4)
    x = torch.rand(2, 4, 32, 32, generator=torch.Generator().manual_seed(1)) * 2 - 1
    with torch.no_grad():
        out = rgba(x).sample
        torch.testing.assert_close(out[:, :3], rgb(x[:, :3]).sample, rtol=1e-5, atol=1e-5)
    assert torch.all(out[:, 3] == 1)


def test_convert_a_saved_folder(rgb_folder, tmp_path, capsys):
    out = tmp_path / "rgba"
    assert main(["convert", "--vae", str(rgb_folder), "--output", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "encoder.conv_in.weight: (8, 3, 3, 3) -> (8, 4, 3, 3)" in printed and str(out) in printed
    _same_rgb(str(rgb_folder), out)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["rgba"]  # no temporary folder left behind


def test_convert_the_embedded_vae(tmp_path):
    out = tmp_path / "embedded-rgba-init"
    assert main(["convert", "--vae", "embedded", "--output", str(out)]) == 0
    _same_rgb("embedded", out)


def test_refuses_a_non_empty_output_unless_overwrite(rgb_folder, tmp_path, capsys):
    out = tmp_path / "taken"
    out.mkdir()
    (out / "keep.txt").write_text("mine")
    assert main(["convert", "--vae", str(rgb_folder), "--output", str(out)]) == 2
    err = capsys.readouterr().err
    assert "--output" in err and str(out) in err and "--overwrite" in err and len(err.strip().splitlines()) == 1
    assert (out / "keep.txt").read_text() == "mine"
    assert main(["convert", "--vae", str(rgb_folder), "--output", str(out), "--overwrite"]) == 0
    assert not (out / "keep.txt").exists()
    _same_rgb(str(rgb_folder), out)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["taken"]


def test_an_empty_existing_output_folder_is_fine(rgb_folder, tmp_path):
    out = tmp_path / "empty"
    out.mkdir()
    assert main(["convert", "--vae", str(rgb_folder), "--output", str(out)]) == 0
    _same_rgb(str(rgb_folder), out)


def test_bad_inputs_exit_2_with_one_line(rgb_folder, tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    rgba = tmp_path / "rgba"
    assert main(["convert", "--vae", str(rgb_folder), "--output", str(rgba)]) == 0
    capsys.readouterr()
    assert main(["convert", "--vae", str(rgba), "--output", str(tmp_path / "again")]) == 2
    assert "already RGBA" in capsys.readouterr().err
    assert main(["convert", "--vae", "no-such-org/no-such-vae", "--output", str(tmp_path / "x")]) == 2
    err = capsys.readouterr().err
    assert "no-such-org/no-such-vae" in err and len(err.strip().splitlines()) == 1
    assert not (tmp_path / "again").exists() and not (tmp_path / "x").exists()
    (tmp_path / "file").write_text("")
    assert main(["convert", "--vae", str(rgb_folder), "--output", str(tmp_path / "file")]) == 2
    assert "not a folder" in capsys.readouterr().err


def test_dtype_float16_writes_the_float32_conversion_in_half_precision(rgb_folder, tmp_path, capsys):
    for dtype in ("float32", "float16"):
        assert main(["convert", "--vae", str(rgb_folder), "--output", str(tmp_path / dtype), "--dtype", dtype]) == 0
    assert f"wrote the RGBA VAE to {tmp_path / 'float16'}" in capsys.readouterr().out
    assert load_vae(str(tmp_path / "float16")).config.in_channels == 4
    with safe_open(str(tmp_path / "float32" / "diffusion_pytorch_model.safetensors"), "pt") as full, \
            safe_open(str(tmp_path / "float16" / "diffusion_pytorch_model.safetensors"), "pt") as half:
        assert set(half.keys()) == set(full.keys())
        for key in full.keys():
            assert half.get_tensor(key).dtype == torch.float16, key
            assert torch.equal(half.get_tensor(key), full.get_tensor(key).half()), key
