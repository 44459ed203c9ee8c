"""``alphavae generate`` through its argparse entry point (in-process), offline (the root conftest.py sets
``HF_HUB_OFFLINE``), on the committed ``embedded-generator``.

What it writes is compared pixel for pixel with the in-process sampler in tests/test_generate_pixels.py."""

import pytest
import torch

from alphavae.cli import main
from alphavae.imageio import load_rgba

pytestmark = pytest.mark.usefixtures("one_thread")


def test_generate_writes_n_rgba_pngs_at_the_generators_size(tmp_path, capsys):
    out = tmp_path / "g"
    assert main(["generate", "--model", "embedded-generator", "--n", "4", "--seed", "0", "--steps", "2",
                 "--output", str(out), "--device", "cpu"]) == 0
    assert capsys.readouterr().out.strip() == f"wrote 4 RGBA PNGs (256x256) to {out}"
    files = sorted(out.iterdir())
    assert [f.name[:5] for f in files] == ["0000-", "0001-", "0002-", "0003-"] and all(f.suffix == ".png" for f in files)
    images = [load_rgba(f) for f in files]
    assert all(x.shape == (4, 256, 256) for x in images)  # the generator's training size, without --size
    # real alpha, not an opaque RGB image: a good share of every image is see-through
    assert all((x[3] < 0.99).float().mean() > 0.3 for x in images), [(x[3] < 0.99).float().mean().item() for x in images]


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


def test_a_bad_spec_is_one_line_exit_2(tmp_path, capsys):
    assert main(["generate", "--model", "embedded-nope", "--n", "1", "--output", str(tmp_path / "out")]) == 2
    captured = capsys.readouterr()
    lines = [l for l in captured.err.splitlines() if l.strip()]
    assert len(lines) == 1 and lines[0].startswith("alphavae generate: error: ") and "embedded-nope" in lines[0], captured.err
    assert not captured.out and not (tmp_path / "out").exists()


def test_bad_arguments_name_themselves(tmp_path, capsys):
    for args, needle in [(["--model", str(tmp_path), "--n", "1"], str(tmp_path)),
                         (["--n", "0"], "--n 0"),
                         (["--n", "1", "--class", "no-such-class"], "no-such-class"),
                         (["--n", "1", "--size", "100"], "--size 100")]:
        assert main(["generate", *args, "--output", str(tmp_path / "out"), "--device", "cpu"]) == 2, args
        err = capsys.readouterr().err.strip()
        assert len(err.splitlines()) == 1 and needle in err, (args, err)
    assert not (tmp_path / "out").exists() or not any((tmp_path / "out").iterdir())


@pytest.mark.parametrize("record", [[], ["--command", "recorded text"]])
def test_a_bad_generator_eval_model_is_one_line_naming_the_command(tmp_path, capsys, record):
    """The error names ``generator``, not ``None`` or the --command text to record (once the same argparse dest)."""
    args = ["generator", "eval", "--model", "nameless", "--json", str(tmp_path / "g.json"), "--md", str(tmp_path / "g.md")]
    assert main(args + record) == 2
    lines = [l for l in capsys.readouterr().err.splitlines() if l.strip()]
    assert lines == ["alphavae generator: error: --model 'nameless': expected NAME=SPEC"]
    assert not (tmp_path / "g.json").exists()
