"""The paper's ablation, reproduced in one command: train every variant, score all on the held-out split.

An ablation config (``configs/ablation.json``) names the variant configs. All variants must start from the
same pretrained VAE, on the same data and split, at the same size, for the same number of steps and seed —
the only differences are in the loss. Each is trained (``jobs`` at a time, as separate processes, which suits
small models on one big GPU), then every trained model, the untouched converted model and the "RGB VAE on
composites" ceiling are scored with the ALPHA metric on the held-out images, and one table is written:
``results/ablation.json`` (read by notebook 04) and ``results/ablation.md``, plus one RGBA strip of the same
few held-out images per row under ``results/ablation_recon/``.

The ceiling: for each of the 9 backgrounds, the RGB VAE reconstructs the opaque composite of the target over
that background, scored against that composite — what the RGB VAE achieves when it never has to model alpha.
"""

from __future__ import annotations

import json
import os
import platform
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from alphavae.blending import BACKGROUNDS, composite
from alphavae.vae.conversion import convert_to_rgba
from alphavae.training.data import RGBAFolder
from alphavae.imageio import atomic_write, save_png
from alphavae.metric.alpha import AlphaReport, alpha_metric
from alphavae.metric.backbones import lpips_or_reason
from alphavae.training.config import ConfigError, TrainConfig, load_config, read_json
from alphavae.training.data import train_and_heldout
from alphavae.training.loop import read_log
from alphavae.losses.objective import build_objective, gradient_shares
from alphavae.training.trainer import perceptual_model, train
from alphavae.vae.reconstruct import reconstruct
from alphavae.paths import results_dir
from alphavae.vae.loading import load_vae, weights_sha256

#: Images per encode → decode when the ablation reconstructs the held-out set.
RECONSTRUCT_BATCH = 16
#: Held-out images the gradient shares at the start are measured on.
SHARE_IMAGES = 8

#: Keys that must be equal across variants (same start, same data, same length).
SHARED_KEYS = ("vae", "data", "split", "image_size", "max_images", "steps", "batch_size", "seed")


@dataclass
class AblationConfig:
    """The variants (name → config file, relative to the ablation file) and how many pictures to keep."""

    variants: dict[str, Path]
    n_pictures: int = 4
    description: str = ""


def load_ablation(path: str | os.PathLike) -> AblationConfig:
    """Read an ablation config; unknown keys and missing variant files are errors naming them."""
    path = Path(path)
    raw = read_json(path, "ablation config")
    known = {"variants", "n_pictures", "description"}
    unknown = sorted(set(raw) - known) if isinstance(raw, dict) else []
    if not isinstance(raw, dict) or unknown:
        raise ConfigError(f"{path}: unknown key '{unknown[0] if unknown else '?'}' (known keys: {', '.join(sorted(known))})")
    variants = raw.get("variants")
    if not isinstance(variants, dict) or not variants:
        raise ConfigError(f"{path}: 'variants' must be a non-empty object name → config file")
    return AblationConfig({k: path.parent / v for k, v in variants.items()}, int(raw.get("n_pictures", 4)),
                          str(raw.get("description", "")))


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


def train_variants(configs: dict[str, TrainConfig], ablation: AblationConfig, output: Path, jobs: int,
                   overrides: dict[str, Any]) -> None:
    """Train the variants whose ``model/`` is missing: in this process (jobs = 1) or ``jobs`` subprocesses."""
    aliases = same_runs(configs)
    todo = [name for name in configs if name not in aliases and not (output / name / "model").is_dir()]
    if jobs <= 1:
        for name in todo:
            train(configs[name], output / name, resume=True)
        return
    extra = [a for k, v in overrides.items() if k in ("steps", "lpips_net") for a in (f"--{k.replace('_', '-')}", str(v))]
    if overrides.get("device") == "cpu":
        extra += ["--device", "cpu"]
    running: list[tuple[str, subprocess.Popen]] = []
    failed: list[str] = []
    output.mkdir(parents=True, exist_ok=True)
    while todo or running:
        while todo and len(running) < jobs:
            name = todo.pop(0)
            log = (output / f"{name}.log").open("w")
            cmd = [sys.executable, "-m", "alphavae", "train", "--config", str(ablation.variants[name]),
                   "--output", str(output / name), "--resume", *extra]
            running.append((name, subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT)))
        time.sleep(1)
        for item in list(running):
            if item[1].poll() is not None:
                running.remove(item)
                if item[1].returncode != 0:
                    failed.append(f"{item[0]} (exit {item[1].returncode}, see {output / (item[0] + '.log')})")
    if failed:
        raise RuntimeError(f"ablation variants failed: {', '.join(failed)}")


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


def _row(name: str, kind: str, report: AlphaReport | dict, extra: dict[str, Any] | None = None) -> dict[str, Any]:
    d = report.to_dict() if isinstance(report, AlphaReport) else report
    return {"name": name, "kind": kind, "mean": d["mean"], "alpha": d.get("alpha", {}),
            "masked_mean": d.get("masked", {}).get("mean") if isinstance(d.get("masked"), dict) else None,
            "backgrounds": d["backgrounds"], **(extra or {})}


def _fmt(value: float | None, digits: int) -> str:
    return "—" if value is None else f"{value:.{digits}f}"


def _share(value: float | None) -> str:
    """A gradient share as a percentage, with enough digits to show a share of 10⁻⁵."""
    return "off" if value is None else f"{100 * value:.3g} %"


def markdown_table(result: dict[str, Any]) -> str:
    """The ablation table as Markdown (one row per model), with the setup and notes under it."""
    lpips_note = "unavailable" if result["lpips_unavailable"] else None
    lines = ["| model | PSNR | SSIM | LPIPS | PSNR (α>0) | α PSNR | α SAD | α grad |", "|---|---|---|---|---|---|---|---|"]
    for row in result["rows"]:
        m, a, mm = row["mean"], row["alpha"], row.get("masked_mean") or {}
        lp = _fmt(m.get("lpips"), 4) if m.get("lpips") is not None else (lpips_note or "—")
        name = row["name"] + (f" (= {row['same_run_as']})" if row.get("same_run_as") else "")
        lines.append(f"| {name} | {_fmt(m.get('psnr'), 2)} | {_fmt(m.get('ssim'), 4)} | {lp} | "
                     f"{_fmt(mm.get('psnr'), 2)} | {_fmt(a.get('psnr'), 2)} | {_fmt(a.get('sad'), 2)} | {_fmt(a.get('grad'), 2)} |")
    shares = [row for row in result["rows"] if row.get("gradient_shares")]
    if shares:
        terms = list(dict.fromkeys(t for row in shares for t in row["gradient_shares"]))
        lines += ["", "Share of the gradient on the VAE's weights at the start (converted model, GAN on), per term:", "",
                  "| variant | " + " | ".join(terms) + " |", "|---|" + "---|" * len(terms)]
        lines += [f"| {row['name']} | " + " | ".join(_share(row["gradient_shares"].get(t)) for t in terms) + " |" for row in shares]
    lines += ["", f"Held-out split: {result['n_images']} images at {result['image_size']} px (square, transparent padding); "
              f"composite metrics are the mean over the 9 backgrounds; SAD and grad in thousands (lower is better).",
              f"Training: {result['steps']} steps, global batch {result['batch_size']}, from `{result['vae']}`; "
              f"machine: {result['machine']}.", f"Command: `{result['command']}`", ""]
    lines += [f"- {note}" for note in result["notes"]]
    return "\n".join(lines) + "\n"


def evaluate_ablation(configs: dict[str, TrainConfig], output: Path, results: Path, n_pictures: int,
                      command: str) -> dict[str, Any]:
    """Score every trained variant and the two reference rows; write the JSON, the Markdown and the strips."""
    first = next(iter(configs.values()))
    device = torch.device("cuda" if torch.cuda.is_available() and first.device != "cpu" else "cpu")
    _, heldout = train_and_heldout(first.data, first.split, first.max_images)
    if not heldout:
        raise ConfigError("the ablation needs a held-out split: set 'split' in the variant configs")
    dataset = RGBAFolder(heldout[0].parent, size=first.image_size, files=heldout)
    targets = torch.stack([dataset.load(i) for i in range(len(dataset))])
    notes: list[str] = []
    lpips_model, reason = lpips_or_reason("alex", device)  # the metric's LPIPS (AlexNet v0.1, as the paper's)
    if reason:
        notes.append(f"LPIPS column unavailable: {reason}")
    picks = torch.linspace(0, len(targets) - 1, n_pictures).round().long().tolist() if n_pictures else []
    strips = results / "ablation_recon"
    strips.mkdir(parents=True, exist_ok=True)

    def strip(name: str, images: torch.Tensor) -> None:
        if picks:
            save_png(torch.cat(list(images[picks]), dim=-1), strips / f"{name}.png")

    strip("target", targets)
    rgb_vae = load_vae(first.vae)
    rows = []
    converted = convert_to_rgba(rgb_vae)
    recon = reconstruct(converted.to(device), targets, RECONSTRUCT_BATCH)
    rows.append(_row("converted, untouched", "reference", alpha_metric(recon.to(device), targets.to(device), masked=True, lpips_model=lpips_model)))
    strip("converted", recon)
    aliases = same_runs(configs)
    for name, cfg in configs.items():
        if name in aliases:
            same = next(r for r in rows if r["name"] == aliases[name])
            rows.append({**same, "name": name, "config": cfg.to_dict(), "same_run_as": aliases[name]})
            notes.append(f"{name}: not trained separately, same run as {aliases[name]} (its config differs only in "
                         f"its description)")
            continue
        run = output / name
        recon = reconstruct(load_vae(str(run / "model"), device=device), targets, RECONSTRUCT_BATCH)
        report = alpha_metric(recon.to(device), targets.to(device), masked=True, lpips_model=lpips_model)
        log = read_log(run)
        run_info = json.loads((run / "run.json").read_text())
        rows.append(_row(name, "variant", report, {"config": cfg.to_dict(), "train_notes": run_info["notes"],
                                                  "images_per_s": log[-1].get("images_per_s") if log else None,
                                                  "final_loss": log[-1].get("total") if log else None,
                                                  "gradient_shares": start_gradient_shares(rgb_vae, cfg, targets[:SHARE_IMAGES], device)}))
        strip(name, recon)
    rows.append(_row("RGB VAE on composites (ceiling)", "reference", rgb_ceiling(rgb_vae, targets, device, lpips_model)))
    machine = torch.cuda.get_device_name(device) if device.type == "cuda" else f"CPU ({platform.processor() or platform.machine()})"
    result = {"rows": rows, "n_images": len(targets), "image_size": first.image_size, "steps": first.steps,
              "batch_size": first.batch_size, "vae": first.vae, "vae_sha256": weights_sha256(first.vae),
              "machine": machine, "command": command,
              "lpips_unavailable": lpips_model is None, "pictures": [heldout[i].name for i in picks],
              "notes": notes + [f"{name}: {cfg.description}" for name, cfg in configs.items() if cfg.description]}
    results.mkdir(parents=True, exist_ok=True)
    atomic_write(results / "ablation.json", lambda p: Path(p).write_text(json.dumps(result, indent=1) + "\n"))
    atomic_write(results / "ablation.md", lambda p: Path(p).write_text(markdown_table(result)))
    return result


def run_ablation(path: str | os.PathLike, output: str | os.PathLike, results: str | os.PathLike = "results",
                 jobs: int = 1, overrides: dict[str, Any] | None = None) -> str:
    """Train every variant of the ablation config at ``path`` into ``output``, score them, write the table.

    Returns the Markdown table.
    """
    overrides = overrides or {}
    ablation = load_ablation(path)
    configs = variant_configs(ablation, overrides)
    output, results = Path(output), Path(results)
    train_variants(configs, ablation, output, jobs, overrides)
    command = "alphavae train --ablation " + " ".join([str(path), "--output", str(output), "--results", str(results),
                                                       "--jobs", str(jobs)] + [f"--{k.replace('_', '-')} {v}" for k, v in overrides.items()])
    return markdown_table(evaluate_ablation(configs, output, results, ablation.n_pictures, command))
