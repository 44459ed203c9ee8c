"""Figures of notebook 05: the generator comparison (distance to held-out images, alpha statistics), and
generated assets pasted onto a scene."""

from __future__ import annotations

import matplotlib.pyplot as plt
import torch
from matplotlib.figure import Figure

from alphavae.generation.sampler import paste
from alphavae.imageio import resize_long_side
from alphavae.notebook.plotting import DPI, to_numpy_image

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


def painted_scene(width: int = 640) -> torch.Tensor:
    """A sky-to-sand gradient, RGB ``(3, 9/16·width, width)`` in [0, 1]: a scene every reader sees the same."""
    ys = torch.linspace(0, 1, width * 9 // 16).view(1, -1, 1)
    sky = torch.tensor([0.45, 0.65, 0.95]).view(3, 1, 1) * (1 - ys) + torch.tensor([0.95, 0.9, 0.75]).view(3, 1, 1) * ys
    return sky.expand(3, -1, width).clone()


def show_on_scene(assets: torch.Tensor, scene: torch.Tensor, title: str) -> Figure:
    """The first four RGBA ``assets`` (each resized to half the scene's height) pasted side by side along the
    scene's bottom edge with :func:`alphavae.generation.sampler.paste`, shown as one picture."""
    height, width = scene.shape[-2:]
    placed = scene
    for i, asset in enumerate(assets[:4]):
        small = resize_long_side(asset, height // 2)
        placed = paste(placed, small, top=height - small.shape[-2] - 10 * (i % 2), left=i * (width - small.shape[-1]) // 3)
    fig, ax = plt.subplots(figsize=(6.5, 6.5 * height / width), dpi=DPI)
    ax.imshow(to_numpy_image(placed))
    ax.set_title(title, fontsize=9)
    ax.set_axis_off()
    return fig
