"""Figures of notebook 05: the generator comparison (distance to held-out images, alpha statistics)."""

from __future__ import annotations

import matplotlib.pyplot as plt
from matplotlib.figure import Figure

from alphavae.notebook.plotting import DPI

#: Colours of the three alpha classes in the stacked bars.
ALPHA_COLOURS = {"transparent": (0.85, 0.85, 0.85), "soft": (0.55, 0.7, 0.9), "opaque": (0.15, 0.25, 0.5)}


def plot_comparison(report: dict) -> Figure:
    """Left: KID-VGG16 (mean over the feature backgrounds, ± std over subsets) per model. Right: shares of
    transparent / soft / opaque pixels per model and for the held-out real images."""
    models = report["models"]
    names = list(models)
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(9.5, 2.8), dpi=DPI)
    kid = [1e3 * models[n]["vgg16"]["mean"]["kid"] for n in names]
    err = [1e3 * models[n]["vgg16"]["mean"]["kid_std"] for n in names]
    ax1.barh(names, kid, xerr=err, color=(0.4, 0.5, 0.7))
    ax1.invert_yaxis()
    ax1.set_xlabel("KID-VGG16 ×10³ vs held-out (lower is better; not FID)")
    rows = {n: models[n]["alpha"]["generated"] for n in names} | {"held-out real": next(iter(models.values()))["alpha"]["real"]}
    left = [0.0] * len(rows)
    for kind, colour in ALPHA_COLOURS.items():
        values = [100 * r[kind] for r in rows.values()]
        ax2.barh(list(rows), values, left=left, color=colour, label=kind, edgecolor="black", linewidth=0.3)
        left = [a + b for a, b in zip(left, values)]
    ax2.invert_yaxis()
    ax2.set_xlabel("share of pixels (%)")
    ax2.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.01, 1.0))  # clear of the bars
    fig.tight_layout()
    return fig
