"""The ablation command end to end on the CPU: tiny VAE, a few steps, four variants of which one is the same
run as another (it differs only in its description); the table, the JSON and the picture strips are written."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from diffusers import AutoencoderKL

from alphavae.training.ablation import load_ablation, run_ablation, same_runs, variant_configs
from alphavae.paths import sample_dir
from alphavae.imageio import load_rgba
from alphavae.training.splits import make_split, read_split, split_files, write_split
from alphavae.training.config import ConfigError


pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture
def ablation_dir(tmp_path) -> Path:
    torch.manual_seed(0)
    AutoencoderKL(in_channels=3, out_channels=3, block_out_channels=(8, 16), layers_per_block=1, latent_channels=4,
                  norm_num_groups=8, down_block_types=("DownEncoderBlock2D",) * 2,
                  up_block_types=("UpDecoderBlock2D",) * 2, sample_size=32).save_pretrained(tmp_path / "vae")
    write_split(make_split(sample_dir(), fraction=0.2, seed=0), tmp_path / "split.json")
    base = {"vae": str(tmp_path / "vae"), "data": "sample", "split": "split.json", "image_size": 32, "steps": 3,
            "batch_size": 4, "lr": 1e-3, "warmup_steps": 1, "device": "cpu", "num_workers": 0, "log_every": 1,
            "lpips_net": "alex"}
    losses = {"main": {"disc_start": 1}, "no_lpips": {"disc_start": 1, "perceptual": 0.0},
              "naive_mse": {"disc_start": 1, "reconstruction_loss": "mse"}, "main_again": {"disc_start": 1}}
    for name, loss in losses.items():
        (tmp_path / f"{name}.json").write_text(json.dumps({**base, "loss": loss, "description": name}))
    (tmp_path / "ablation.json").write_text(json.dumps({"variants": {n: f"{n}.json" for n in losses}, "n_pictures": 2}))
    return tmp_path


def test_split_is_per_category_and_stable():
    split = make_split(sample_dir(), fraction=0.1, seed=0)
    assert split == make_split(sample_dir(), fraction=0.1, seed=0)
    train, held = split_files(sample_dir(), split)
    assert not set(train) & set(held) and len(train) + len(held) == split["n_images"]
    categories = {p.parent.name for p in train + held}
    assert {p.parent.name for p in held} == categories  # at least one held-out image in every category
    assert make_split(sample_dir(), fraction=0.1, seed=1)["heldout"] != split["heldout"]


def test_committed_split_matches_its_recipe():
    split = read_split(Path(__file__).resolve().parents[1] / "configs" / "split-rgba-train.json")
    assert len(split["heldout"]) == 142 and split["fraction"] == 0.1 and split["seed"] == 0


def test_variants_must_share_the_start(ablation_dir):
    cfg = json.loads((ablation_dir / "naive_mse.json").read_text())
    (ablation_dir / "naive_mse.json").write_text(json.dumps({**cfg, "steps": 4}))
    with pytest.raises(ConfigError, match="'steps'"):
        variant_configs(load_ablation(ablation_dir / "ablation.json"))
    (ablation_dir / "bad.json").write_text(json.dumps({"variants": {"main": "main.json"}, "n_picture": 2}))
    with pytest.raises(ConfigError, match="n_picture"):
        load_ablation(ablation_dir / "bad.json")


def test_ablation_writes_the_table(ablation_dir):
    table = run_ablation(ablation_dir / "ablation.json", ablation_dir / "runs", ablation_dir / "results")
    result = json.loads((ablation_dir / "results" / "ablation.json").read_text())
    names = [row["name"] for row in result["rows"]]
    assert names == ["converted, untouched", "main", "no_lpips", "naive_mse", "main_again", "RGB VAE on composites (ceiling)"]
    rows = {row["name"]: row for row in result["rows"]}
    assert rows["main_again"]["same_run_as"] == "main" and not (ablation_dir / "runs" / "main_again").exists()
    assert "| main_again (= main) |" in table and rows["main_again"]["mean"] == rows["main"]["mean"]
    assert (ablation_dir / "runs" / "no_lpips" / "model").is_dir()  # a real perceptual term: a different run
    assert all(0 < row["mean"]["lpips"] < 1 for row in result["rows"])  # real LPIPS-Alex on every row
    assert rows["main"]["mean"]["psnr"] > rows["converted, untouched"]["mean"]["psnr"]  # three steps already help
    assert len({json.dumps(rows[n]["mean"]) for n in ("main", "no_lpips", "naive_mse")}) == 3
    assert rows["RGB VAE on composites (ceiling)"]["alpha"] == {}
    assert result["vae_sha256"] and result["n_images"] == len(read_split(ablation_dir / "split.json")["heldout"])
    strip = load_rgba(ablation_dir / "results" / "ablation_recon" / "main.png")
    assert strip.shape == (4, 32, 64)  # 2 pictures side by side
    assert same_runs(variant_configs(load_ablation(ablation_dir / "ablation.json"))) == {"main_again": "main"}


def test_ablation_jobs_trains_each_variant_in_its_own_process(ablation_dir):
    """``--jobs 2``: variants train as two subprocesses at a time, each logging to ``runs/<name>.log``; the table is
    the same kind as in-process, and a rerun trains nothing (every variant's model exists)."""
    cfg = json.loads((ablation_dir / "ablation.json").read_text())
    cfg["variants"] = {k: v for k, v in cfg["variants"].items() if k in ("main", "naive_mse")}
    (ablation_dir / "ablation.json").write_text(json.dumps(cfg))
    table = run_ablation(ablation_dir / "ablation.json", ablation_dir / "runs", ablation_dir / "results", jobs=2)
    for name in ("main", "naive_mse"):
        assert (ablation_dir / "runs" / name / "model").is_dir()
        assert "trained 3 steps" in (ablation_dir / "runs" / f"{name}.log").read_text()
    assert "| main |" in table and "| naive_mse |" in table and "--jobs 2" in table
    stamp = (ablation_dir / "runs" / "main" / "model" / "config.json").stat().st_mtime
    run_ablation(ablation_dir / "ablation.json", ablation_dir / "runs", ablation_dir / "results", jobs=2)
    assert (ablation_dir / "runs" / "main" / "model" / "config.json").stat().st_mtime == stamp
