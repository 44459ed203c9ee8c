"""The paper's ablation, reproduced in one command: train every variant, score all on the held-out split.

An ablation config (``configs/ablation.json``) names the variant configs. All variants must start from the
same pretrained VAE, on the same data and split, at the same size, for the same number of steps and seed —
the only differences are in the loss. Each is trained (``jobs`` at a time, as separate processes, which suits
small models on one big GPU), then every trained model, the untouched converted model and the "RGB VAE on
composites" ceiling are scored with the ALPHA metric on the held-out images, and one table is written:
``results/ablation.json`` (read by notebook 04) and ``results/ablation.md``, plus one RGBA strip of the same
few held-out images per row under ``results/ablation_recon/``.

Seeds: by default each variant is one run at its config's seed, in ``OUTPUT/<variant>``. With ``"seeds"`` in the
ablation config (or ``--seeds``) each (variant, seed) is its own run, in ``OUTPUT/<variant>/seed-<s>``; a variant's
row then holds the mean over its seeds (in the same keys as one run's), each seed's values, the 95 % interval of
each mean and the paired difference from ``main`` (:mod:`alphavae.training.ablation_stats`). The reference rows
are deterministic and computed once; strips and gradient shares are those of the first seed.

Across GPU calls: each scored run keeps its numbers in ``OUTPUT/<variant>/seed-<s>/score.json`` (with the
held-out file names it was scored on), and its picture strip in ``pictures.png`` when it was the first seed its
scoring call scored (a row's strip is its first seed's). A run with a score needs no
model: it is neither trained nor scored again, so runs trained in different calls (``variants`` selects some,
``--variants``) are collected into one table from their small folders (``benchmarks/results/ablation_runs/``, outside
the wheel).

The ceiling: for each of the 9 backgrounds, the RGB VAE reconstructs the opaque composite of the target over
that background, scored against that composite — what the RGB VAE achieves when it never has to model alpha.
"""

from __future__ import annotations

import dataclasses
import json
import os
import subprocess
import sys
import time
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from alphavae.blending import BACKGROUNDS, composite
from alphavae.vae.conversion import convert_to_rgba
from alphavae.training.data import RGBAFolder
from alphavae.imageio import atomic_write, load_rgba, save_png
from alphavae.metric.alpha import AlphaReport, alpha_metric
from alphavae.metric.alpha_shares import alpha_statistics
from alphavae.metric.backbones import lpips_or_reason
from alphavae.training.ablation_stats import differences_from, summarize_seeds
from alphavae.training.ablation_table import markdown_table
from alphavae.training.config import SEED_LIMIT, ConfigError, TrainConfig, load_config, read_json
from alphavae.training.data import train_and_heldout
from alphavae.training.loop import read_log
from alphavae.losses.objective import build_objective, gradient_shares
from alphavae.training.trainer import perceptual_model, train
from alphavae.vae.reconstruct import RECONSTRUCT_BATCH, reconstruct
from alphavae.paths import results_dir
from alphavae.vae.loading import load_vae, machine_name, weights_sha256

#: Held-out images the gradient shares at the start are measured on.
SHARE_IMAGES = 8

#: Keys that must be equal across variants (same start, same data, same length).
SHARED_KEYS = ("vae", "data", "split", "extra_data", "image_size", "max_images", "steps", "batch_size", "seed")
#: The variant every other one is compared with, seed by seed.
BASELINE = "main"
#: A scored run's numbers and its picture strip, in its folder (what a later table needs of it; no model).
SCORE_FILE, PICTURES_FILE = "score.json", "pictures.png"


@dataclass
class AblationConfig:
    """The variants (name → config file, relative to the ablation file), how many pictures to keep, and the seeds
    (None: one run per variant at its config's own seed)."""

    variants: dict[str, Path]
    n_pictures: int = 4
    description: str = ""
    seeds: list[int] | None = None


def check_seeds(seeds: Any, source: str) -> list[int]:
    """``seeds`` if it is a non-empty list of distinct integer seeds, else a :class:`ConfigError` naming ``source``."""
    if not (isinstance(seeds, list) and seeds and len(set(seeds)) == len(seeds)
            and all(isinstance(s, int) and not isinstance(s, bool) and 0 <= s < SEED_LIMIT for s in seeds)):
        raise ConfigError(f"{source}: 'seeds' must be a non-empty list of distinct integers in [0, 2**32), got {seeds!r}")
    return seeds


def load_ablation(path: str | os.PathLike) -> AblationConfig:
    """Read an ablation config; unknown keys, bad seeds and missing variant files are errors naming them."""
    path = Path(path)
    raw = read_json(path, "ablation config")
    known = {"variants", "n_pictures", "description", "seeds"}
    unknown = sorted(set(raw) - known) if isinstance(raw, dict) else []
    if not isinstance(raw, dict) or unknown:
        raise ConfigError(f"{path}: unknown key '{unknown[0] if unknown else '?'}' (known keys: {', '.join(sorted(known))})")
    variants = raw.get("variants")
    if not isinstance(variants, dict) or not variants:
        raise ConfigError(f"{path}: 'variants' must be a non-empty object name → config file")
    seeds = check_seeds(raw["seeds"], str(path)) if "seeds" in raw else None
    return AblationConfig({k: path.parent / v for k, v in variants.items()}, int(raw.get("n_pictures", 4)),
                          str(raw.get("description", "")), seeds)


def variant_configs(ablation: AblationConfig, overrides: dict[str, Any] | None = None) -> dict[str, TrainConfig]:
    """Load every variant config and check that they share :data:`SHARED_KEYS`."""
    configs = {name: load_config(p, **(overrides or {})) for name, p in ablation.variants.items()}
    first_name, first = next(iter(configs.items()))
    for name, cfg in configs.items():
        for key in SHARED_KEYS:
            if getattr(cfg, key) != getattr(first, key):
                raise ConfigError(f"{ablation.variants[name]}: '{key}' is {getattr(cfg, key)!r} but "
                                  f"{first_name} has {getattr(first, key)!r}; variants must share it")
    return configs


def same_runs(configs: dict[str, TrainConfig]) -> dict[str, str]:
    """``{variant: earlier variant}`` for variants whose training would be the same run as an earlier one's.

    Two variants whose configs differ only in their description (or whose loss objects say the same thing in
    other words) are not trained twice: two runs would differ only by GPU non-determinism, which the table
    would show as a fake difference; the later row repeats the earlier one, with a note.
    """
    seen: dict[str, str] = {}
    aliases: dict[str, str] = {}
    for name, cfg in configs.items():
        d = cfg.to_dict()
        d.pop("description")
        d["loss"] = cfg.loss_weights().to_dict()
        key = json.dumps(d, sort_keys=True)
        if key in seen:
            aliases[name] = seen[key]
        else:
            seen[key] = name
    return aliases


def run_dirs(output: Path, name: str, config: TrainConfig, seeds: list[int] | None) -> dict[int, Path]:
    """``{seed: run folder}`` of one variant: ``output/name`` at the config's seed when no seeds are given (the
    layout of the one-seed ablation), else ``output/name/seed-<s>`` per seed."""
    if seeds is None:
        return {config.seed: output / name}
    return {seed: output / name / f"seed-{seed}" for seed in seeds}


def train_variants(configs: dict[str, TrainConfig], ablation: AblationConfig, output: Path, jobs: int,
                   overrides: dict[str, Any]) -> None:
    """Train the (variant, seed) runs whose ``model/`` is missing: in this process (jobs = 1) or ``jobs``
    subprocesses, seed by seed (a stopped ablation has whole seeds done first). :func:`same_runs` holds for every
    seed, since the seed replaces the same key of every variant."""
    aliases = same_runs(configs)
    dirs = {name: run_dirs(output, name, cfg, ablation.seeds) for name, cfg in configs.items() if name not in aliases}
    seeds = next(iter(dirs.values()))  # the same for every variant (they share their config's seed)
    todo = [(name, seed, dirs[name][seed]) for seed in seeds for name in dirs
            if not (dirs[name][seed] / "model").is_dir() and not (dirs[name][seed] / SCORE_FILE).exists()]
    if jobs <= 1:
        for name, seed, folder in todo:
            train(dataclasses.replace(configs[name], seed=seed), folder, resume=True)
        return
    extra = [a for k, v in overrides.items() if k in ("steps", "lpips_net") for a in (f"--{k.replace('_', '-')}", str(v))]
    if overrides.get("device") == "cpu":
        extra += ["--device", "cpu"]
    running: list[tuple[Path, subprocess.Popen]] = []
    failed: list[str] = []
    while todo or running:
        while todo and len(running) < jobs:
            name, seed, folder = todo.pop(0)
            folder.parent.mkdir(parents=True, exist_ok=True)
            cmd = [sys.executable, "-m", "alphavae", "train", "--config", str(ablation.variants[name]),
                   "--output", str(folder), "--resume", "--seed", str(seed), *extra]
            with _log_file(folder).open("w") as log:  # the child keeps its own copy of the file
                running.append((folder, subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT)))
        time.sleep(1)
        for item in list(running):
            if item[1].poll() is not None:
                running.remove(item)
                if item[1].returncode != 0:
                    failed.append(f"{item[0].relative_to(output)} (exit {item[1].returncode}, see {_log_file(item[0])})")
    if failed:
        raise RuntimeError(f"ablation variants failed: {', '.join(failed)}")


def _log_file(folder: Path) -> Path:
    """Where a subprocess run's output goes: beside its folder (``OUTPUT/main.log``, ``OUTPUT/main/seed-1.log``)."""
    return folder.parent / f"{folder.name}.log"


def start_gradient_shares(rgb_vae, config: TrainConfig, targets: torch.Tensor, device: torch.device) -> dict[str, float]:
    """Each term's share of the gradient of ``config``'s objective at the start (the converted model, with the
    GAN on as from ``disc_start``): what each weight really steers (:func:`alphavae.losses.objective.gradient_shares`)."""
    weights = config.loss_weights()
    lpips_model = perceptual_model(weights, config, device, [])
    torch.manual_seed(config.seed)
    model, objective = build_objective(rgb_vae, weights, device, lpips_model)
    return gradient_shares(model, objective, targets.to(device), weights.disc_start)


@torch.no_grad()
def rgb_ceiling(rgb_vae, targets: torch.Tensor, device: torch.device, lpips_model=None) -> dict[str, Any]:
    """The RGB VAE on opaque composites, per background and mean (no alpha metrics: it has no alpha)."""
    per_bg: dict[str, dict[str, float | None]] = {}
    ones = torch.ones_like(targets[:, :1])
    for name, rgb in BACKGROUNDS.items():
        comp = torch.cat([composite(targets, rgb), ones], dim=1)
        recon = reconstruct(rgb_vae.to(device), comp[:, :3], RECONSTRUCT_BATCH)
        report = alpha_metric(torch.cat([recon, ones], 1).to(device), comp.to(device), backgrounds={name: rgb},
                              lpips_model=lpips_model)
        per_bg[name] = report.backgrounds[name]
    metrics = next(iter(per_bg.values())).keys()
    mean = {m: sum(v[m] for v in per_bg.values()) / len(per_bg) for m in metrics if all(v[m] is not None for v in per_bg.values())}
    return {"backgrounds": per_bg, "mean": mean, "alpha": {}}


def read_ablation(path: str | os.PathLike | None = None) -> dict[str, Any]:
    """A written ``ablation.json`` (default: the committed one, :func:`alphavae.paths.results_dir`)."""
    path = Path(path) if path is not None else results_dir() / "ablation.json"
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no ablation results; run `alphavae train --ablation configs/ablation.json`")
    return json.loads(path.read_text())


def _sections(report: AlphaReport | dict) -> dict[str, Any]:
    """A report's parts a row shows: ``mean``, ``alpha``, ``masked_mean`` and ``backgrounds``."""
    d = report.to_dict() if isinstance(report, AlphaReport) else report
    return {"mean": d["mean"], "alpha": d.get("alpha", {}),
            "masked_mean": d.get("masked", {}).get("mean") if isinstance(d.get("masked"), dict) else None,
            "backgrounds": d["backgrounds"]}


def _row(name: str, kind: str, report: AlphaReport | dict) -> dict[str, Any]:
    return {"name": name, "kind": kind, **_sections(report)}


def _with_soft_alpha(sections: dict[str, Any], recon: torch.Tensor) -> dict[str, Any]:
    """``sections`` (or a row) with the reconstructions' soft-alpha share (per cent) in its ``alpha`` part: the
    haze a generator decoded by this VAE inherits (:func:`alphavae.metric.alpha_shares.alpha_statistics`)."""
    return {**sections, "alpha": {**sections["alpha"], "soft_pct": 100 * alpha_statistics(recon)["soft"]}}


def _score_run(folder: Path, targets: torch.Tensor, heldout: list[str], picks: list[int], device: torch.device,
               lpips_model) -> tuple[dict[str, Any], list[str], torch.Tensor | None]:
    """One run's numbers (a row's sections, its speed and last loss), its trainer notes and its picture strip.

    Read from the run's ``score.json`` when that was scored on the same held-out images with the same LPIPS
    availability; otherwise scored from its ``model/`` and written there (with ``pictures.png`` when ``picks`` are
    given). A run scored as a later seed has no ``pictures.png``: its strip is None, and the row keeps its old one."""
    cached, run_json = folder / SCORE_FILE, folder / "run.json"
    if cached.exists():
        score = read_json(cached, "ablation run score")
        if score.get("heldout") == heldout and score.get("lpips") == (lpips_model is not None):
            strip = load_rgba(folder / PICTURES_FILE) if picks and (folder / PICTURES_FILE).exists() else None
            return score["numbers"], score["notes"], strip
        if not (folder / "model").is_dir():
            raise ConfigError(f"{cached}: scored on other held-out images (or LPIPS availability) and its model/ is "
                              f"not here to score again: retrain that run or remove the file")
    if not (folder / "model").is_dir():
        raise ConfigError(f"{folder}: no model/ and no {SCORE_FILE}: this run has not been trained")
    recon = reconstruct(load_vae(str(folder / "model"), device=device), targets, RECONSTRUCT_BATCH)
    report = alpha_metric(recon.to(device), targets.to(device), masked=True, lpips_model=lpips_model)
    log = read_log(folder)
    numbers = {**_with_soft_alpha(_sections(report), recon), "images_per_s": log[-1].get("images_per_s") if log else None,
               "final_loss": log[-1].get("total") if log else None}
    notes = json.loads(run_json.read_text())["notes"]
    strip = picture_strip(recon, picks)
    if strip is not None:
        save_png(strip, folder / PICTURES_FILE)
    score = {"numbers": numbers, "notes": notes, "heldout": heldout, "lpips": lpips_model is not None}
    atomic_write(cached, lambda p: Path(p).write_text(json.dumps(score, indent=1) + "\n"))
    return numbers, notes, strip


def picture_strip(images: torch.Tensor, picks: list[int]) -> torch.Tensor | None:
    """The picked images side by side (one ``(4, H, n·W)`` image), or None when no pictures are kept."""
    return torch.cat(list(images[picks]), dim=-1) if picks else None


def trained_on(output: Path, configs: dict[str, TrainConfig], seeds: list[int] | None) -> dict[str, int]:
    """How many of the runs trained on each machine, as their ``run.json`` names it ("not recorded": runs made before
    the trainer wrote it, stop 26)."""
    machines = [json.loads((folder / "run.json").read_text()).get("machine", "not recorded")
                for name, cfg in configs.items() for folder in run_dirs(output, name, cfg, seeds).values()
                if (folder / "run.json").is_file()]
    return dict(sorted(Counter(machines).items()))


def evaluate_ablation(configs: dict[str, TrainConfig], output: Path, results: Path, n_pictures: int,
                      command: str, seeds: list[int] | None = None) -> dict[str, Any]:
    """Score every trained (variant, seed) run and the two reference rows; write the JSON, the Markdown and the
    strips. ``seeds`` as :attr:`AblationConfig.seeds` (None: one run per variant, at its config's seed)."""
    first = next(iter(configs.values()))
    device = torch.device("cuda" if torch.cuda.is_available() and first.device != "cpu" else "cpu")
    _, heldout = train_and_heldout(first.data, first.split, first.max_images)
    if not heldout:
        raise ConfigError("the ablation needs a held-out split: set 'split' in the variant configs")
    dataset = RGBAFolder(heldout[0].parent, size=first.image_size, files=heldout)
    targets = dataset.load_all()
    names = [f"{p.parent.name}/{p.name}" for p in heldout]
    notes: list[str] = []
    lpips_model, reason = lpips_or_reason("alex", device)  # the metric's LPIPS (AlexNet v0.1, as the paper's)
    if reason:
        notes.append(f"LPIPS column unavailable: {reason}")
    picks = torch.linspace(0, len(targets) - 1, n_pictures).round().long().tolist() if n_pictures else []
    strips = results / "ablation_recon"
    strips.mkdir(parents=True, exist_ok=True)

    def strip(name: str, images: torch.Tensor) -> None:
        if picks:
            save_png(picture_strip(images, picks), strips / f"{name}.png")

    strip("target", targets)
    rgb_vae = load_vae(first.vae)
    rows = []
    converted = convert_to_rgba(rgb_vae)
    recon = reconstruct(converted.to(device), targets, RECONSTRUCT_BATCH)
    report = alpha_metric(recon.to(device), targets.to(device), masked=True, lpips_model=lpips_model)
    rows.append(_with_soft_alpha(_row("converted, untouched", "reference", report), recon))
    strip("converted", recon)
    aliases = same_runs(configs)
    for name, cfg in configs.items():
        if name in aliases:
            same = next(r for r in rows if r["name"] == aliases[name])
            rows.append({**same, "name": name, "config": cfg.to_dict(), "same_run_as": aliases[name]})
            notes.append(f"{name}: not trained separately, same run as {aliases[name]} (its config differs only in "
                         f"its description)")
            continue
        per_seed: dict[str, dict[str, Any]] = {}
        train_notes: dict[str, None] = {}  # the runs' notes, each once, in order
        for seed, folder in run_dirs(output, name, cfg, seeds).items():
            first_run = not per_seed  # the row's strip is its first seed's: later seeds keep no pictures
            per_seed[str(seed)], run_notes, pictures = _score_run(folder, targets, names, picks if first_run else [],
                                                                  device, lpips_model)
            train_notes.update(dict.fromkeys(run_notes))
            if pictures is not None:
                save_png(pictures, strips / f"{name}.png")
        first_seed = dataclasses.replace(cfg, seed=int(next(iter(per_seed))))
        rows.append({"name": name, "kind": "variant", **summarize_seeds(per_seed), "config": cfg.to_dict(),
                     "train_notes": list(train_notes),
                     "gradient_shares": start_gradient_shares(rgb_vae, first_seed, targets[:SHARE_IMAGES], device)})
    main = next((row for row in rows if row["name"] == BASELINE and row["kind"] == "variant"), None)
    if main is not None:
        for row in rows[1:]:  # after the converted model: the variants
            if row["name"] != BASELINE:
                row["vs_main"] = differences_from(row, main)
    if seeds is not None and len(seeds) == 1:
        notes.append(f"One seed ({seeds[0]}) per variant: no intervals, so a difference between rows may be seed noise.")
    rows.append(_row("RGB VAE on composites (ceiling)", "reference", rgb_ceiling(rgb_vae, targets, device, lpips_model)))
    result = {"rows": rows, "n_images": len(targets), "image_size": first.image_size, "steps": first.steps,
              "batch_size": first.batch_size, "seeds": seeds or [first.seed], "vae": first.vae,
              "vae_sha256": weights_sha256(first.vae), "machine": machine_name(device),
              "trained_on": trained_on(output, configs, seeds), "command": command,
              "lpips_unavailable": lpips_model is None, "real_soft_alpha_pct": 100 * alpha_statistics(targets)["soft"],
              "pictures": [heldout[i].name for i in picks],
              "notes": notes + [f"{name}: {cfg.description}" for name, cfg in configs.items() if cfg.description]}
    results.mkdir(parents=True, exist_ok=True)
    atomic_write(results / "ablation.json", lambda p: Path(p).write_text(json.dumps(result, indent=1) + "\n"))
    atomic_write(results / "ablation.md", lambda p: Path(p).write_text(markdown_table(result)))
    return result


def run_ablation(path: str | os.PathLike, output: str | os.PathLike, results: str | os.PathLike = "results",
                 jobs: int = 1, overrides: dict[str, Any] | None = None, seeds: list[int] | None = None,
                 variants: list[str] | None = None) -> str:
    """Train every variant of the ablation config at ``path`` into ``output``, score them, write the table.

    ``seeds`` replaces the config's ``seeds`` (``--seeds``); ``variants`` keeps only those variants, in the
    config's order (``--variants``: a GPU call trains some runs; a later command collects every scored run).
    Returns the Markdown table.
    """
    overrides = overrides or {}
    ablation = load_ablation(path)
    if seeds is not None:
        ablation.seeds = check_seeds(seeds, "--seeds")
    if variants is not None:
        unknown = [v for v in variants if v not in ablation.variants]
        if unknown or not variants:
            raise ConfigError(f"--variants: {unknown[0] if unknown else 'none given'} is not a variant of {path} "
                              f"(its variants: {', '.join(ablation.variants)})")
        ablation.variants = {k: v for k, v in ablation.variants.items() if k in variants}
    configs = variant_configs(ablation, overrides)
    output, results = Path(output), Path(results)
    train_variants(configs, ablation, output, jobs, overrides)
    options = ([f"--{k.replace('_', '-')} {v}" for k, v in overrides.items()] + ([f"--seeds {' '.join(map(str, seeds))}"] if seeds else [])
               + ([f"--variants {' '.join(variants)}"] if variants else []))
    command = "alphavae train --ablation " + " ".join([str(path), "--output", str(output), "--results", str(results),
                                                       "--jobs", str(jobs), *options])
    return markdown_table(evaluate_ablation(configs, output, results, ablation.n_pictures, command, ablation.seeds))
