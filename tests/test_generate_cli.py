"""``alphavae generate`` through its entry point, offline, on the committed ``embedded-generator``."""

import os
import subprocess
import sys

import torch

from alphavae.cli import main
from alphavae.imageio import load_rgba

ENV = {**os.environ, "HF_HUB_OFFLINE": "1", "TQDM_DISABLE": "1"}


def run(*args):
    return subprocess.run([sys.executable, "-m", "alphavae", "generate", *args], capture_output=True, text=True, env=ENV)


def test_generate_writes_four_rgba_pngs(tmp_path):
    result = run("--model", "embedded-generator", "--n", "4", "--seed", "0", "--output", str(tmp_path / "g"), "--device", "cpu")
    assert result.returncode == 0, result.stderr
    files = sorted((tmp_path / "g").glob("*.png"))
    assert len(files) == 4
    images = [load_rgba(f) for f in files]
    assert all(x.shape == (4, 256, 256) for x in images)
    assert any((x[3] < 1).any() for x in images)  # real alpha, not an opaque RGB image


def test_generate_is_deterministic_for_a_seed(tmp_path):
    args = ["generate", "--n", "2", "--steps", "4", "--device", "cpu", "--class", "food"]
    assert main(args + ["--seed", "3", "--output", str(tmp_path / "a")]) == 0
    assert main(args + ["--seed", "3", "--output", str(tmp_path / "b")]) == 0
    assert main(args + ["--seed", "4", "--output", str(tmp_path / "c")]) == 0
    names = sorted(p.name for p in (tmp_path / "a").glob("*.png"))
    assert names == ["0000-food.png", "0001-food.png"]
    for name in names:
        assert (tmp_path / "a" / name).read_bytes() == (tmp_path / "b" / name).read_bytes()
    assert not torch.equal(load_rgba(tmp_path / "a" / names[0]), load_rgba(tmp_path / "c" / names[0]))


def test_a_bad_spec_is_one_line_exit_2_without_traceback(tmp_path):
    result = run("--model", "embedded-nope", "--n", "1", "--output", str(tmp_path / "out"))
    assert result.returncode == 2
    lines = [l for l in result.stderr.splitlines() if l.strip()]
    assert len(lines) == 1 and "embedded-nope" in lines[0] and "Traceback" not in result.stderr, result.stderr


def test_bad_arguments_name_themselves(tmp_path, capsys):
    for args, needle in [(["--model", str(tmp_path), "--n", "1"], str(tmp_path)),
                         (["--n", "0"], "--n 0"),
                         (["--n", "1", "--class", "no-such-class"], "no-such-class"),
                         (["--n", "1", "--size", "100"], "--size 100")]:
        assert main(["generate", *args, "--output", str(tmp_path / "out"), "--device", "cpu"]) == 2, args
        err = capsys.readouterr().err.strip()
        assert len(err.splitlines()) == 1 and needle in err, (args, err)
    assert not (tmp_path / "out").exists() or not any((tmp_path / "out").iterdir())
