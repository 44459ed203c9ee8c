"""``alphavae reconstruct`` through its entry point on real sample images: counts, sizes, channels, paths,
and the error contract (corrupt file → named, rest written, exit 1; bad SPEC or folder → one line, exit 2)."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from diffusers import AutoencoderKL
from PIL import Image

from alphavae.cli import main
from alphavae.paths import sample_dir
from alphavae.imageio import list_images, load_rgba

ENV = {**os.environ, "HF_HUB_OFFLINE": "1", "TQDM_DISABLE": "1"}


def alphavae(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "alphavae", *map(str, args)], env=ENV, capture_output=True, text=True, timeout=300)


@pytest.fixture
def inputs(tmp_path) -> Path:
    """Four real sample images in two sub-folders, plus a corrupt PNG."""
    src = list_images(sample_dir())[:4]
    root = tmp_path / "in"
    for i, path in enumerate(src):
        dest = root / f"group{i % 2}" / path.name
        dest.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(path, dest)
    (root / "group0" / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\nnot really a png")
    return root


def readable(root: Path) -> list[Path]:
    return [p for p in list_images(root) if p.name != "broken.png"]


def test_rgb_vae_writes_rgb_at_input_size_and_names_the_corrupt_file(inputs, tmp_path):
    out = tmp_path / "out"
    result = alphavae("reconstruct", "--vae", "embedded", "--input", inputs, "--output", out, "--batch-size", "2")
    assert result.returncode == 1, result.stderr
    assert "broken.png" in result.stderr and "Traceback" not in result.stderr
    for src in readable(inputs):
        dest = out / src.relative_to(inputs).with_suffix(".png")
        with Image.open(dest) as im, Image.open(src) as original:
            assert im.mode == "RGB" and im.size == original.size
    assert len(list_images(out)) == len(readable(inputs))
    assert not list(out.rglob("*.tmp"))


def test_four_channel_vae_writes_rgba_resized(inputs, tmp_path):
    torch.manual_seed(0)
    AutoencoderKL(in_channels=4, out_channels=4, block_out_channels=(8, 8), down_block_types=("DownEncoderBlock2D",) * 2,
                  up_block_types=("UpDecoderBlock2D",) * 2, norm_num_groups=4).save_pretrained(tmp_path / "rgba-vae")
    (inputs / "group0" / "broken.png").unlink()
    out = tmp_path / "out"
    result = alphavae("reconstruct", "--vae", tmp_path / "rgba-vae", "--input", inputs, "--output", out, "--size", "37")
    assert result.returncode == 0, result.stderr
    for src in readable(inputs):
        dest = out / src.relative_to(inputs).with_suffix(".png")
        with Image.open(dest) as im:
            assert im.mode == "RGBA" and max(im.size) == 37
        h, w = load_rgba(src).shape[-2:]
        assert load_rgba(dest).shape[-2:] == (round(h * 37 / max(h, w)), round(w * 37 / max(h, w)))


@pytest.mark.parametrize("args, names", [  # in-process through the argparse entry point (fast)
    (["--vae", "embedded-rbga"], "embedded-rbga"),
    (["--vae", "nobody/no-such-vae"], "HF_HUB_OFFLINE"),
    (["--vae", "embedded", "--background", "mauve"], "--background"),
    (["--vae", "embedded", "--batch-size", "0"], "--batch-size"),
])
def test_bad_arguments_are_one_line_exit_2(inputs, tmp_path, args, names, capsys, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    assert main(["reconstruct", "--input", str(inputs), "--output", str(tmp_path / "out"), *args]) == 2
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 1 and names in lines[0], lines
    assert not (tmp_path / "out").exists()


def test_missing_input_folder_is_exit_2(tmp_path, capsys):
    assert main(["reconstruct", "--vae", "embedded", "--input", str(tmp_path / "nope"), "--output", str(tmp_path / "out")]) == 2
    assert "--input" in capsys.readouterr().err


def test_help_explains_with_an_example():
    result = alphavae("reconstruct", "--help")
    assert result.returncode == 0 and "posterior mode" in result.stdout and "alphavae reconstruct --vae" in result.stdout
