"""Figures of training runs and of the ablation, for notebook 04: loss terms over steps, pictures per variant."""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np
import torch
from matplotlib.figure import Figure

from alphavae.imageio import load_rgba
from alphavae.notebook.plotting import DPI, show_rgba

#: Terms plotted by default, in this order, when the log has them.
LOSS_TERMS = ("loss/reconstruction", "loss/alpha_l1", "loss/prior_kl", "loss/reference_kl", "loss/perceptual",
              "loss/adversarial", "disc/loss", "adaptive_weight", "lr")
#: Logged values that follow a schedule, not a batch: never smoothed.
SCHEDULES = ("lr",)


def plot_loss_terms(logs: dict[str, list[dict[str, float]]] | list[dict[str, float]], terms: Sequence[str] | None = None,
                    panel: float = 1.8, smooth: int = 1) -> Figure:
    """One panel per logged term (unweighted), value against step; ``logs`` is one run's ``read_log`` or
    ``{label: log}`` for several runs drawn together. Positive terms on a log scale, the others linear: each
    panel's y label says which. ``smooth`` > 1 draws the logged values faintly and their running mean over
    ``smooth`` logged points on top (one step's loss at batch 8 is noisy; the mean shows the trend); the learning
    rate is a schedule and is drawn as logged."""
    runs = {"": logs} if isinstance(logs, list) else dict(logs)
    present = {k for log in runs.values() for entry in log for k in entry}
    terms = [t for t in (terms or LOSS_TERMS) if t in present]
    if not terms:
        raise ValueError("none of the terms to plot are in the log")
    cols = min(4, len(terms))
    rows = -(-len(terms) // cols)
    fig, axes = plt.subplots(rows, cols, figsize=(cols * panel * 1.45, rows * panel + 0.2), dpi=DPI, squeeze=False)
    for ax in axes.flat[len(terms):]:
        ax.set_axis_off()
    for ax, term in zip(axes.flat, terms):
        for label, log in runs.items():
            points = [(e["step"], e[term]) for e in log if term in e]
            if points:
                steps, values = map(np.asarray, zip(*points))
                if smooth > 1 and len(values) >= smooth and term not in SCHEDULES:
                    faint = ax.plot(steps, values, lw=0.6, alpha=0.3)[0]
                    mean = np.convolve(values, np.ones(smooth) / smooth, mode="valid")
                    ax.plot(steps[smooth - 1:], mean, lw=1.2, color=faint.get_color(),
                            label=f"{label} (mean of {smooth})".strip())
                else:
                    ax.plot(steps, values, lw=1, label=label or None)
        values = [e[term] for log in runs.values() for e in log if term in e]
        log_scale = bool(values) and min(values) > 0
        if log_scale:
            ax.set_yscale("log")
        ax.set_ylabel("value, log scale" if log_scale else "value, linear scale", fontsize=7)
        ax.set_title(term, fontsize=8)
        ax.set_xlabel("step", fontsize=7)
        ax.tick_params(labelsize=7)
    fig.tight_layout()
    if len(runs) > 1:
        handles, labels = axes.flat[0].get_legend_handles_labels()
        fig.legend(handles, labels, fontsize=7, loc="upper left", bbox_to_anchor=(1.0, 1.0))  # clear of the curves
    return fig


def load_strip(path: str | os.PathLike, n: int) -> list[torch.Tensor]:
    """Split an RGBA strip of ``n`` square images side by side (``results/ablation_recon/*.png``) into images."""
    strip = load_rgba(path)
    return list(strip.chunk(n, dim=-1))


def show_variant_pictures(strips: str | os.PathLike, names: Sequence[str], n: int, panel: float = 1.2) -> Figure:
    """The same ``n`` held-out images (columns) under each of ``names`` (rows: ``<strips>/<name>.png``),
    over a checkerboard."""
    images, titles = [], []
    for name in names:
        for i, image in enumerate(load_strip(Path(strips) / f"{name}.png", n)):
            images.append(image)
            titles.append(name if i == 0 else "")
    return show_rgba(images, titles=titles, ncols=n, panel=panel)
