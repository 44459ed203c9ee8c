"""The ablation command end to end on the CPU: tiny VAE, a few steps, four variants of which one is the same
run as another (it differs only in its description); the table, the JSON and the picture strips are written.
With seeds: one run per (variant, seed), rows that are means over the seeds with 95 % intervals, and differences
from main paired by seed; the statistics are checked against hand computations."""

from __future__ import annotations

import json
import math
import re
import shutil
import subprocess
from pathlib import Path

import pytest
import torch
from diffusers import AutoencoderKL
from safetensors.torch import load_file

from alphavae.cli import main as cli_main
from alphavae.training import ablation as ablation_module
from alphavae.training.ablation import (load_ablation, markdown_table, read_ablation, run_ablation, same_runs,
                                       train_variants, variant_configs)
from alphavae.training.ablation_stats import mean_interval, paired_difference, t_quantile
from alphavae.paths import results_dir, sample_dir
from alphavae.imageio import load_rgba
from alphavae.training.splits import make_split, read_split, split_files, write_split
from alphavae.training.config import ConfigError
from alphavae.training.ablation_table import NOT_RECORDED
from alphavae.vae.loading import machine_name


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
    # soft alpha: the converted model decodes α = 1 everywhere (none soft); the trained runs' share is a percentage
    assert rows["converted, untouched"]["alpha"]["soft_pct"] == 0
    assert all(0 <= rows[n]["alpha"]["soft_pct"] <= 100 for n in ("main", "no_lpips", "naive_mse"))
    assert "soft α %" in table and f"{result['real_soft_alpha_pct']:.1f} % in the held-out images" in table
    assert 0 < result["real_soft_alpha_pct"] < 100
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


#: t(0.975, df) from a printed table (two-sided 95 %).
T_TABLE = {1: 12.7062, 2: 4.3027, 3: 3.1824, 4: 2.7764, 10: 2.2281, 30: 2.0423}


def use_variants(ablation_dir: Path, names: tuple[str, ...], **keys) -> Path:
    """Rewrite the fixture's ablation.json to keep only ``names`` (and set ``keys``); returns its path."""
    path = ablation_dir / "ablation.json"
    cfg = json.loads(path.read_text())
    cfg["variants"] = {k: v for k, v in cfg["variants"].items() if k in names}
    path.write_text(json.dumps({**cfg, **keys}))
    return path


def weights(run: Path) -> dict[str, torch.Tensor]:
    return load_file(run / "model" / "diffusion_pytorch_model.safetensors")


def test_t_interval_matches_a_hand_computation():
    assert all(t_quantile(df) == pytest.approx(t, abs=1e-4) for df, t in T_TABLE.items())
    mean, half = mean_interval([1.0, 2.0, 3.0])  # sd 1: half-width t(0.975, 2) / sqrt(3) = 4.303 * 0.5774
    assert mean == 2.0 and half == pytest.approx(2.484, abs=1e-3)
    assert mean_interval([5.0]) == (5.0, None) and mean_interval([1.0, None]) == (None, None)


def test_difference_from_main_is_paired_by_seed():
    """Main's seeds spread by 20 dB, the variant is main + 1 ± 0.2 on every seed: paired, the difference is real;
    the seeds are matched by name, not by position (the variant's are listed in another order)."""
    main = {"0": 10.0, "1": 20.0, "2": 30.0}
    variant = {"2": 30.8, "0": 11.0, "1": 21.2}
    d = paired_difference(variant, main)
    assert d["diff"] == pytest.approx(1.0) and d["interval95"] == pytest.approx(T_TABLE[2] * 0.2 / math.sqrt(3), abs=1e-3)
    assert d["real"] is True
    assert mean_interval(list(main.values()))[1] > 20  # unpaired, the two means' intervals would overlap widely
    assert paired_difference({"0": 11.0}, main) == {"diff": 1.0, "interval95": None, "real": None}


def test_ablation_with_seeds(ablation_dir):
    """Two seeds, two steps: one run per (variant, seed), the alias trained for no seed; each row is the mean of its
    seeds with the 95 % interval of two values, the difference from main is paired, and the table shows both."""
    path = use_variants(ablation_dir, ("main", "naive_mse", "main_again"), seeds=[0, 1])
    runs, results = ablation_dir / "runs", ablation_dir / "results"
    table = run_ablation(path, runs, results, overrides={"steps": 2})
    result = json.loads((results / "ablation.json").read_text())
    for name in ("main", "naive_mse"):
        for seed in (0, 1):
            assert json.loads((runs / name / f"seed-{seed}" / "run.json").read_text())["config"]["seed"] == seed
    assert not (runs / "main_again").exists() and not (runs / "main" / "model").exists()
    one, two = weights(runs / "main" / "seed-0"), weights(runs / "main" / "seed-1")
    assert any(not torch.equal(one[k], two[k]) for k in one)  # the seed reaches the run
    assert result["seeds"] == [0, 1]
    rows = {row["name"]: row for row in result["rows"]}
    t1 = T_TABLE[1]
    for name in ("main", "naive_mse"):
        row = rows[name]
        for section, metric in (("mean", "psnr"), ("mean", "ssim"), ("mean", "lpips"), ("alpha", "psnr"), ("alpha", "sad")):
            a, b = (row["seeds"][s][section][metric] for s in ("0", "1"))
            assert row[section][metric] == pytest.approx((a + b) / 2)
            assert row["interval95"][section][metric] == pytest.approx(t1 * abs(a - b) / 2, rel=1e-4)  # sd |a-b|/√2, n 2
        assert set(row["seeds"]) == {"0", "1"} and "backgrounds" not in row["seeds"]["0"]
    diff = rows["naive_mse"]["vs_main"]["mean"]["psnr"]
    d0, d1 = (rows["naive_mse"]["seeds"][s]["mean"]["psnr"] - rows["main"]["seeds"][s]["mean"]["psnr"] for s in ("0", "1"))
    assert diff["diff"] == pytest.approx((d0 + d1) / 2) and diff["interval95"] == pytest.approx(t1 * abs(d0 - d1) / 2, rel=1e-4)
    assert diff["real"] == (abs(diff["diff"]) > diff["interval95"])
    same = rows["main_again"]["vs_main"]["alpha"]["sad"]
    assert same == {"diff": 0.0, "interval95": 0.0, "real": False} and "vs_main" not in rows["main"]
    assert "interval95" not in rows["converted, untouched"]
    lines = table.splitlines()
    assert "±" in next(line for line in lines if line.startswith("| main |"))
    assert "±" not in next(line for line in lines if line.startswith("| converted, untouched |"))
    assert "Difference from main (95 % interval, paired by seed" in table and "| naive_mse | " in table.split("Difference")[1]
    assert "Seeds: 2 runs per variant (seeds 0, 1)" in table
    assert (results / "ablation_recon" / "main.png").is_file()
    # The same seed again, through the CLI's --seed: identical weights.
    assert cli_main(["train", "--config", str(ablation_dir / "main.json"), "--output", str(ablation_dir / "again"),
                     "--seed", "1", "--steps", "2"]) == 0
    again = weights(ablation_dir / "again")
    assert json.loads((ablation_dir / "again" / "run.json").read_text())["config"]["seed"] == 1
    assert all(torch.equal(again[k], two[k]) for k in two)


def test_ablation_jobs_passes_each_seed_to_its_process(ablation_dir, monkeypatch):
    """``jobs`` > 1: one ``alphavae train --seed S --output OUTPUT/<variant>/seed-S`` per run, whole seeds first, the
    alias never; without seeds, today's ``OUTPUT/<variant>`` at the config's seed."""
    commands: list[list[str]] = []

    class Finished:
        returncode = 0

        def __init__(self, cmd, **_):
            commands.append(cmd)

        def poll(self):
            return 0

    monkeypatch.setattr(subprocess, "Popen", Finished)
    monkeypatch.setattr(ablation_module.time, "sleep", lambda _: None)
    path = use_variants(ablation_dir, ("main", "naive_mse", "main_again"), seeds=[3, 4])
    ablation = load_ablation(path)
    runs = ablation_dir / "runs"
    train_variants(variant_configs(ablation), ablation, runs, jobs=2, overrides={"steps": 2})
    ran = [(Path(c[c.index("--output") + 1]), c[c.index("--seed") + 1]) for c in commands]
    assert ran == [(runs / "main" / "seed-3", "3"), (runs / "naive_mse" / "seed-3", "3"),
                   (runs / "main" / "seed-4", "4"), (runs / "naive_mse" / "seed-4", "4")]
    assert all(c[c.index("--steps") + 1] == "2" for c in commands) and (runs / "main" / "seed-4.log").is_file()
    commands.clear()
    ablation.seeds = None
    train_variants(variant_configs(ablation), ablation, runs, jobs=2, overrides={})
    assert [(Path(c[c.index("--output") + 1]), c[c.index("--seed") + 1]) for c in commands] == [
        (runs / "main", "0"), (runs / "naive_mse", "0")]


def test_cli_seeds_reach_the_variant_configs(ablation_dir, monkeypatch, capsys):
    """``--seeds 3 4`` replaces the file's seeds and reaches each run's config; --seed and --seeds each belong to
    one mode, and bad --seeds are a one-line error."""
    trained: list[tuple[Path, int, int]] = []

    def fake_train(config, output, resume):
        trained.append((Path(output), config.seed, config.steps))
        (Path(output) / "model").mkdir(parents=True)

    evaluated = {}
    monkeypatch.setattr(ablation_module, "train", fake_train)
    monkeypatch.setattr(ablation_module, "evaluate_ablation", lambda *a: evaluated.update(args=a))
    monkeypatch.setattr(ablation_module, "markdown_table", lambda result: "table")
    path = use_variants(ablation_dir, ("main", "main_again"), seeds=[0, 1, 2])
    runs = ablation_dir / "runs"
    assert cli_main(["train", "--ablation", str(path), "--output", str(runs), "--seeds", "3", "4", "--steps", "2"]) == 0
    assert trained == [(runs / "main" / "seed-3", 3, 2), (runs / "main" / "seed-4", 4, 2)]
    assert evaluated["args"][-1] == [3, 4] and "--seeds 3 4" in evaluated["args"][-2]
    capsys.readouterr()
    for argv, needle in ((["--ablation", str(path), "--seed", "3"], "--seed"),
                         (["--config", str(ablation_dir / "main.json"), "--seeds", "3"], "--seeds"),
                         (["--ablation", str(path), "--seeds", "3", "3"], "--seeds")):
        assert cli_main(["train", *argv, "--output", str(runs)]) == 2
        err = capsys.readouterr().err.strip()
        assert len(err.splitlines()) == 1 and needle in err, err


@pytest.mark.parametrize("seeds", [[], 3, "0 1", [0, "1"], [True], [0, 0], [-1], [1.5], None])
def test_bad_seeds_are_a_one_line_error(ablation_dir, capsys, seeds):
    path = use_variants(ablation_dir, ("main",), seeds=seeds)
    with pytest.raises(ConfigError, match="^" + re.escape(f"{path}: 'seeds' must be a non-empty list")):
        load_ablation(path)
    assert cli_main(["train", "--ablation", str(path), "--output", str(ablation_dir / "runs")]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and str(path) in err and "'seeds'" in err, err


def test_one_given_seed_says_there_are_no_intervals(ablation_dir):
    path = use_variants(ablation_dir, ("main", "naive_mse"), seeds=[7])
    table = run_ablation(path, ablation_dir / "runs", ablation_dir / "results", overrides={"steps": 1})
    result = json.loads((ablation_dir / "results" / "ablation.json").read_text())
    assert (ablation_dir / "runs" / "main" / "seed-7" / "model").is_dir() and result["seeds"] == [7]
    naive = next(row for row in result["rows"] if row["name"] == "naive_mse")
    assert naive["interval95"] is None and naive["vs_main"]["mean"]["psnr"]["interval95"] is None
    assert "One seed (7) per variant: no intervals" in table and "±" not in table and "Difference from main" not in table


def test_runs_trained_in_separate_calls_make_one_table_without_their_models(ablation_dir, capsys):
    """``--variants``: one call trains and scores only some runs; each keeps ``score.json``, and the first seed a
    call scores keeps ``pictures.png`` (a row's strip is its first seed's). A later command finds every run scored,
    trains nothing (the models are gone, as when only the small folders come back from a GPU call) and writes the
    table the runs would have given together, also when a first seed was scored as a later one (no strip)."""
    path = use_variants(ablation_dir, ("main", "naive_mse"), seeds=[0, 1])
    runs, results = ablation_dir / "runs", ablation_dir / "results"
    first = run_ablation(path, runs, results, overrides={"steps": 1}, seeds=[0], variants=["naive_mse"])
    assert not (runs / "main").exists() and "| naive_mse |" in first and "| main |" not in first
    assert "--variants naive_mse" in first
    run_ablation(path, runs, results, overrides={"steps": 1}, seeds=[1], variants=["naive_mse"])
    run_ablation(path, runs, results, overrides={"steps": 1}, variants=["main"])
    together = json.loads((results / "ablation.json").read_text())  # main's two seeds, scored from their models
    scored = {run: json.loads((run / "score.json").read_text()) for run in runs.glob("*/seed-*")}
    assert len(scored) == 4 and all(s["heldout"] for s in scored.values())
    pictured = {run.relative_to(runs).as_posix() for run in runs.glob("*/seed-*") if (run / "pictures.png").is_file()}
    assert pictured == {"naive_mse/seed-0", "naive_mse/seed-1", "main/seed-0"}  # main's seed 1 came second in its call
    for run in runs.glob("*/seed-*"):
        shutil.rmtree(run / "model")
        shutil.rmtree(run / "model-fp16")
    table = run_ablation(path, runs, results, overrides={"steps": 1})
    result = json.loads((results / "ablation.json").read_text())
    assert not any(runs.glob("*/seed-*/model"))  # nothing trained again
    rows = {row["name"]: row for row in result["rows"]}
    assert rows["main"]["seeds"] == next(r for r in together["rows"] if r["name"] == "main")["seeds"]
    assert rows["naive_mse"]["seeds"]["0"]["mean"] == scored[runs / "naive_mse" / "seed-0"]["numbers"]["mean"]
    assert "vs_main" in rows["naive_mse"] and "| naive_mse |" in table.split("Difference")[1]
    assert load_rgba(results / "ablation_recon" / "naive_mse.png").shape == (4, 32, 64)
    cpu = machine_name(torch.device("cpu"))  # where the runs trained (their run.json), not where the table is made
    assert result["trained_on"] == {cpu: 4} and f"trained on: {cpu} (4 runs); this table made on {cpu}." in table
    old_run = runs / "main" / "seed-0" / "run.json"  # as the trainer wrote it before stop 26
    old_run.write_text(json.dumps({k: v for k, v in json.loads(old_run.read_text()).items() if k != "machine"}))
    assert f"trained on: {cpu} (3 runs), {NOT_RECORDED} (1 run);" in run_ablation(path, runs, results, overrides={"steps": 1})
    (runs / "naive_mse" / "seed-0" / "pictures.png").unlink()  # as if seed 0 had been scored second in its call
    run_ablation(path, runs, results, overrides={"steps": 1})
    again = json.loads((results / "ablation.json").read_text())
    assert next(r for r in again["rows"] if r["name"] == "naive_mse")["seeds"] == rows["naive_mse"]["seeds"]
    assert load_rgba(results / "ablation_recon" / "naive_mse.png").shape == (4, 32, 64)  # the strip made before stays
    # A score made on other held-out images cannot stand in for a model that is gone: one line naming the file.
    score_file = runs / "main" / "seed-1" / "score.json"
    score = json.loads(score_file.read_text())
    score_file.write_text(json.dumps({**score, "heldout": score["heldout"][1:]}))
    with pytest.raises(ConfigError, match=re.escape(str(score_file))):
        run_ablation(path, runs, results, overrides={"steps": 1})
    capsys.readouterr()
    assert cli_main(["train", "--ablation", str(path), "--output", str(runs), "--variants", "main", "nope"]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "--variants" in err and "nope" in err, err


def test_shipped_ablation_trains_three_seeds():
    ablation = load_ablation(Path(__file__).resolve().parents[1] / "configs" / "ablation.json")
    assert ablation.seeds == [0, 1, 2] and "main" in variant_configs(ablation)


def test_committed_table_is_printed_from_its_json():
    """The committed results (3 seeds, scored on a GPU) print exactly as ``results/ablation.md`` has them."""
    assert markdown_table(read_ablation()) == (results_dir() / "ablation.md").read_text()
