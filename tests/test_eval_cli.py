"""``alphavae eval`` on two folders of real 256 px RGBA PNGs, checked against numpy and scikit-image, and its
error paths (exit 2 with one line, exit 1 for a corrupt image among many)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from skimage.metrics import structural_similarity

from alphavae.blending import BACKGROUNDS
from alphavae.cli import main
from alphavae.paths import sample_dir
from alphavae.imageio import list_images

N_IMAGES = 4


def _degrade(rgba: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """A plausible reconstruction error: noise on colour and alpha, alpha edges slightly eroded."""
    out = rgba.astype(np.float64) + rng.normal(0, 6, rgba.shape)
    out[..., 3] *= 0.97
    return out.clip(0, 255).round().astype(np.uint8)


@pytest.fixture(scope="module")
def folders(tmp_path_factory):
    """``target/`` (real RGBA sample images, long side 256) and ``pred/`` (degraded copies), as PNG."""
    root = tmp_path_factory.mktemp("eval")
    rng = np.random.default_rng(0)
    for sub in ("target", "pred"):
        (root / sub / "nested").mkdir(parents=True)
    for i, path in enumerate(list_images(sample_dir())[:N_IMAGES]):
        rgba = np.asarray(Image.open(path).convert("RGBA"))
        name = f"nested/{path.stem}.png" if i == 0 else f"{path.stem}.png"
        Image.fromarray(rgba).save(root / "target" / name)
        Image.fromarray(_degrade(rgba, rng)).save(root / "pred" / name)
    return root


def _independent(root, names):
    """Per-background mean PSNR and luma SSIM computed with numpy + scikit-image from the PNG files."""
    psnr, ssim = {}, {}
    for bg, colour in BACKGROUNDS.items():
        ps, ss = [], []
        for name in names:
            comps = []
            for sub in ("pred", "target"):
                x = np.asarray(Image.open(root / sub / name), dtype=np.float64) / 255
                comps.append(x[..., :3] * x[..., 3:] + np.asarray(colour) * (1 - x[..., 3:]))
            ps.append(10 * np.log10(1 / np.mean((comps[0] - comps[1]) ** 2)))
            y = [c @ np.array([0.299, 0.587, 0.114]) for c in comps]
            ss.append(structural_similarity(y[1], y[0], gaussian_weights=True, sigma=1.5,
                                            use_sample_covariance=False, data_range=1.0))
        psnr[bg], ssim[bg] = np.mean(ps), np.mean(ss)
    return psnr, ssim


def test_eval_matches_numpy_psnr_and_skimage_ssim(folders, tmp_path, capsys):
    out = tmp_path / "report.json"
    code = main(["eval", "--pred", str(folders / "pred"), "--target", str(folders / "target"), "--json", str(out),
                 "--masked", "--device", "cpu"])
    assert code == 0
    data = json.loads(out.read_text())
    assert {"n_images", "backgrounds", "mean", "alpha", "notes", "masked"} <= data.keys()
    assert data["n_images"] == N_IMAGES and list(data["backgrounds"]) == list(BACKGROUNDS)
    assert set(data["alpha"]) == {"psnr", "sad", "grad"}
    names = sorted(p.relative_to(folders / "target").as_posix() for p in (folders / "target").rglob("*.png"))
    psnr, ssim = _independent(folders, names)
    for bg in BACKGROUNDS:
        assert abs(data["backgrounds"][bg]["psnr"] - psnr[bg]) < 0.01
        assert abs(data["backgrounds"][bg]["ssim"] - ssim[bg]) < 0.002
        assert data["backgrounds"][bg]["lpips"] is None or data["backgrounds"][bg]["lpips"] >= 0
    assert abs(data["mean"]["psnr"] - np.mean(list(psnr.values()))) < 0.01
    table = capsys.readouterr().out
    assert "magenta" in table and "mean" in table and "target alpha > 0" in table


def test_eval_subset_of_metrics_and_backgrounds_and_size(folders, tmp_path):
    out = tmp_path / "r.json"
    assert main(["eval", "--pred", str(folders / "pred"), "--target", str(folders / "target"), "--json", str(out),
                 "--metrics", "psnr", "--backgrounds", "black,white", "--size", "128"]) == 0
    data = json.loads(out.read_text())
    assert list(data["backgrounds"]) == ["black", "white"] and list(data["mean"]) == ["psnr"]


def _one_line_error(capsys, code: int, *needles: str) -> None:
    err = capsys.readouterr().err.strip()
    assert code == 2 and "\n" not in err and "Traceback" not in err, err
    for needle in needles:
        assert needle in err, err


def test_missing_partner_and_size_mismatch_are_named(folders, tmp_path, capsys):
    pred = tmp_path / "pred"
    pred.mkdir()
    files = sorted((folders / "target").glob("*.png"))
    for f in files[1:]:
        (pred / f.name).write_bytes(f.read_bytes())
    _one_line_error(capsys, main(["eval", "--pred", str(pred), "--target", str(folders / "target")]),
                    "no partner", files[0].name)
    small = tmp_path / "small"
    (small / "nested").mkdir(parents=True)
    for f in (folders / "target").rglob("*.png"):
        rel = f.relative_to(folders / "target")
        im = Image.open(f)
        im.resize((im.width // 2, im.height // 2)).save(small / rel)
    _one_line_error(capsys, main(["eval", "--pred", str(small), "--target", str(folders / "target")]),
                    "size mismatch", str(small), str(folders / "target"))


def test_bad_arguments_give_exit_2(folders, tmp_path, capsys):
    base = ["eval", "--pred", str(folders / "pred"), "--target", str(folders / "target")]
    _one_line_error(capsys, main(["eval", "--pred", str(tmp_path / "nope"), "--target", str(folders / "target")]), "--pred")
    _one_line_error(capsys, main(base + ["--backgrounds", "orange"]), "orange")
    _one_line_error(capsys, main(base + ["--metrics", "fid"]), "fid")
    _one_line_error(capsys, main(base + ["--lpips-weights", str(tmp_path / "alex.pth")]), "alex.pth")


def test_a_corrupt_image_is_named_and_the_rest_evaluated(folders, tmp_path, capsys):
    pred = tmp_path / "pred"
    pred.mkdir()
    for f in (folders / "pred").rglob("*.png"):
        rel = f.relative_to(folders / "pred")
        (pred / rel).parent.mkdir(parents=True, exist_ok=True)
        (pred / rel).write_bytes(f.read_bytes())
    broken = sorted(pred.glob("*.png"))[0]
    broken.write_bytes(b"not a png")
    out = tmp_path / "r.json"
    code = main(["eval", "--pred", str(pred), "--target", str(folders / "target"), "--metrics", "psnr", "--json", str(out)])
    assert code == 1
    assert broken.name in capsys.readouterr().err
    data = json.loads(out.read_text())
    assert data["n_images"] == N_IMAGES - 1 and broken.stem in data["skipped"]


def test_the_installed_command_exits_2_without_traceback(folders, tmp_path):
    """The suite's one run of the installed ``alphavae`` script (pyproject's ``[project.scripts]``) as a program
    (``python -m alphavae`` where it is not installed); every other CLI test calls ``main`` in-process."""
    script = Path(sys.executable).with_name("alphavae")
    command = [str(script)] if script.is_file() else [sys.executable, "-m", "alphavae"]
    proc = subprocess.run([*command, "eval", "--pred", str(tmp_path), "--target", str(folders / "target")],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    assert proc.stderr.strip().count("\n") == 0 and "no partner" in proc.stderr
