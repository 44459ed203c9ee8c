"""The ALPHA metric over two folders of images paired by name (what ``alphavae eval`` runs).

Files pair by their path relative to the folder without the suffix (``cats/a.png`` ↔ ``cats/a.webp``).
Images stream through in batches of one size (pairs of different sizes are scored in separate batches and
the per-image values merged), so a large folder never sits in memory at once. Pairs are compared at their own
size, or with the long side resized to ``size`` in premultiplied space. A corrupt image, or a pair too small
for SSIM's window, is reported by name and skipped; missing partners or a size mismatch inside a pair are
errors naming the files.
"""

from __future__ import annotations

import os
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path

import torch

from alphavae.imageio import ImageReadError, list_images, load_rgba, resize_long_side
from alphavae.metric.alpha import METRICS, SSIM_WINDOW, AlphaReport, alpha_metric, merge_reports


@dataclass
class FolderEvaluation:
    """The report over every readable pair, the pair names in evaluation order, and unreadable files."""

    report: AlphaReport
    names: list[str]
    bad_files: dict[str, str] = field(default_factory=dict)


def _by_stem(folder: Path) -> dict[str, Path]:
    files: dict[str, Path] = {}
    for path in list_images(folder):
        key = path.relative_to(folder).with_suffix("").as_posix()
        if key in files:
            raise ValueError(f"{files[key]} and {path} have the same name; keep one per stem")
        files[key] = path
    return files


def pair_folders(pred_dir: str | os.PathLike, target_dir: str | os.PathLike) -> list[tuple[str, Path, Path]]:
    """``(name, pred_file, target_file)`` for every image, paired by relative path stem; an image without a
    partner is an error that names it."""
    pred_dir, target_dir = Path(pred_dir), Path(target_dir)
    preds, targets = _by_stem(pred_dir), _by_stem(target_dir)
    if not targets:
        raise ValueError(f"{target_dir}: no image files found")
    for missing, here, there in ((sorted(set(targets) - set(preds)), targets, pred_dir),
                                 (sorted(set(preds) - set(targets)), preds, target_dir)):
        if missing:
            shown = ", ".join(str(here[k]) for k in missing[:3]) + (f" and {len(missing) - 3} more" if len(missing) > 3 else "")
            raise ValueError(f"no partner in {there} for {shown}")
    return [(k, preds[k], targets[k]) for k in sorted(targets)]


class PairSkipped(Exception):
    """A readable pair that cannot be scored (too small for SSIM); the message names the file."""


def _load_pair(pred_file: Path, target_file: Path, size: int | None, with_ssim: bool) -> tuple[torch.Tensor, torch.Tensor]:
    pred, target = load_rgba(pred_file), load_rgba(target_file)
    if size is not None:
        pred, target = resize_long_side(pred, size), resize_long_side(target, size)
    if pred.shape != target.shape:
        hint = "" if size is not None else " (use --size to compare at one long side)"
        raise ValueError(f"size mismatch: {pred_file} is {pred.shape[-1]}x{pred.shape[-2]}, "
                         f"{target_file} is {target.shape[-1]}x{target.shape[-2]}{hint}")
    if with_ssim and min(target.shape[-2:]) < SSIM_WINDOW:
        raise PairSkipped(f"{target_file}: {target.shape[-1]}x{target.shape[-2]} is smaller than SSIM's "
                          f"{SSIM_WINDOW}x{SSIM_WINDOW} window" + (" at this --size" if size is not None else ""))
    return pred, target


def evaluate_folders(pred_dir: str | os.PathLike, target_dir: str | os.PathLike, size: int | None = None,
                     device: str | torch.device = "cpu", batch_size: int = 16, **metric_kwargs) -> FolderEvaluation:
    """The ALPHA metric of every prediction in ``pred_dir`` against its target in ``target_dir``.

    ``metric_kwargs`` go to :func:`alphavae.metric.alpha.alpha_metric` (backgrounds, metrics, ssim_mode, masked,
    jpeg_quality, lpips_model). Raises ``ValueError`` naming the files for missing partners, a size mismatch,
    or when no pair can be scored; unreadable files and pairs too small for SSIM are in ``bad_files``.
    """
    if size is not None and size < 1:
        raise ValueError(f"--size must be a positive number of pixels, got {size}")
    buckets: dict[tuple[int, ...], list[tuple[str, torch.Tensor, torch.Tensor]]] = defaultdict(list)
    reports: list[AlphaReport] = []
    names: list[str] = []
    bad: dict[str, str] = {}
    with_ssim = "ssim" in metric_kwargs.get("metrics", METRICS)

    def flush(shape: tuple[int, ...]) -> None:
        items = buckets.pop(shape)
        pred = torch.stack([p for _, p, _ in items]).to(device)
        target = torch.stack([t for _, _, t in items]).to(device)
        reports.append(alpha_metric(pred, target, batch_size=batch_size, **metric_kwargs))
        names.extend(n for n, _, _ in items)

    for name, pred_file, target_file in pair_folders(pred_dir, target_dir):
        try:
            pred, target = _load_pair(pred_file, target_file, size, with_ssim)
        except (ImageReadError, PairSkipped) as exc:
            bad[name] = str(exc)
            continue
        buckets[tuple(pred.shape)].append((name, pred, target))
        if len(buckets[tuple(pred.shape)]) == batch_size:
            flush(tuple(pred.shape))
    for shape in list(buckets):
        flush(shape)
    if not reports:
        first = f" (first: {next(iter(bad.values()))})" if bad else ""
        raise ValueError(f"no pair of images in {pred_dir} and {target_dir} could be scored{first}")
    return FolderEvaluation(merge_reports(reports), names, bad)
