"""``alphavae reconstruct`` through its argparse entry point (in-process) on real sample images: counts, sizes,
channels, paths, and the error contract (corrupt file → named, rest written, exit 1; bad SPEC or folder → one
line, exit 2). The pixels are checked in tests/test_reconstruct_pixels.py, an interrupted run as a real process in
tests/test_interrupts.py."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
import torch
from diffusers import AutoencoderKL
from PIL import Image

from alphavae.cli import main
from alphavae.paths import sample_dir
from alphavae.imageio import list_images, load_rgba

pytestmark = pytest.mark.usefixtures("one_thread")


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


def test_rgb_vae_writes_rgb_at_input_size_and_names_the_corrupt_file(inputs, tmp_path, capsys):
    out = tmp_path / "out"
    assert main(["reconstruct", "--vae", "embedded", "--input", str(inputs), "--output", str(out), "--batch-size", "2",
                 "--device", "cpu"]) == 1
    captured = capsys.readouterr()
    lines = captured.err.strip().splitlines()  # one line naming the corrupt file and why
    assert len(lines) == 1 and lines[0].startswith(f"alphavae reconstruct: skipped {inputs / 'group0' / 'broken.png'}: "
                                                   "cannot read image"), lines
    assert captured.out.strip() == f"wrote {len(readable(inputs))} images to {out}; 1 skipped"
    for src in readable(inputs):
        dest = out / src.relative_to(inputs).with_suffix(".png")
        with Image.open(dest) as im, Image.open(src) as original:
            assert im.mode == "RGB" and im.size == original.size
    assert sorted(p.relative_to(out) for p in out.rglob("*") if p.is_file()) == sorted(
        p.relative_to(inputs).with_suffix(".png") for p in readable(inputs))  # nothing else (no temporary files)


def test_four_channel_vae_writes_rgba_resized(inputs, tmp_path, capsys):
    torch.manual_seed(0)
    AutoencoderKL(in_channels=4, out_channels=4, block_out_channels=(8, 8), down_block_types=("DownEncoderBlock2D",) * 2,
                  up_block_types=("UpDecoderBlock2D",) * 2, norm_num_groups=4).save_pretrained(tmp_path / "rgba-vae")
    (inputs / "group0" / "broken.png").unlink()
    out = tmp_path / "out"
    assert main(["reconstruct", "--vae", str(tmp_path / "rgba-vae"), "--input", str(inputs), "--output", str(out),
                 "--size", "37", "--device", "cpu"]) == 0
    captured = capsys.readouterr()
    assert not captured.err and captured.out.strip() == f"wrote {len(readable(inputs))} images to {out}"
    for src in readable(inputs):
        dest = out / src.relative_to(inputs).with_suffix(".png")
        with Image.open(dest) as im:
            assert im.mode == "RGBA" and max(im.size) == 37
        h, w = load_rgba(src).shape[-2:]
        assert load_rgba(dest).shape[-2:] == (round(h * 37 / max(h, w)), round(w * 37 / max(h, w)))
    assert len(list_images(out)) == len(readable(inputs)) == 4


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


def test_help_explains_with_an_example(capsys):
    with pytest.raises(SystemExit) as exit_:
        main(["reconstruct", "--help"])
    out = capsys.readouterr().out
    assert exit_.value.code == 0 and "posterior mode" in out and "alphavae reconstruct --vae" in out, out
