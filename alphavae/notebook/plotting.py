"""Figures every notebook shares: RGBA images over a checkerboard, grids over the solid backgrounds, and bar
charts of metric values per background.

Each function draws a new matplotlib figure (or into ``ax``) and returns it; the notebook ends its cell with
``plt.show()``. Images are ``(4, H, W)`` (or ``(N, 4, H, W)``) straight-alpha tensors in [0, 1]; RGB
``(3, H, W)`` tensors are shown as they are.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence

import matplotlib as mpl
import matplotlib.pyplot as plt
import numpy as np
import torch
from matplotlib.axes import Axes
from matplotlib.figure import Figure

from alphavae.blending import composite, over_checkerboard, resolve_backgrounds

#: Resolution of every figure (and of the PNGs stored in the notebooks): legible on a projector.
DPI = 110
#: Default width of one image panel, in inches (≈ 140 px at :data:`DPI`); figures stay small so stored
#: notebooks stay small.
PANEL = 1.3
#: No figure is narrower than this, in inches (≥ 500 px at :data:`DPI`): grids of few panels get bigger panels.
MIN_WIDTH = 4.8
#: The figure settings applied once, when :mod:`alphavae.notebook` is imported (:func:`apply_style`).
STYLE = {
    "figure.dpi": DPI,
    "savefig.dpi": DPI,
    "font.size": 9,
    "axes.titlesize": 9,
    "axes.labelsize": 9,
    "legend.fontsize": 8,
    "xtick.labelsize": 8,
    "ytick.labelsize": 8,
    "legend.frameon": False,
}


def apply_style() -> None:
    """Set matplotlib's defaults to :data:`STYLE` (the one place the notebooks' figure settings live)."""
    mpl.rcParams.update(STYLE)


def fit_width(panel: float, cols: int) -> float:
    """The panel width that makes ``cols`` panels at least :data:`MIN_WIDTH` wide together."""
    return max(panel, MIN_WIDTH / max(cols, 1))


def wrap_title(title: str, width_in: float, fontsize: float = 8) -> str:
    """``title`` broken into lines that fit a panel ``width_in`` inches wide — never cut. Breaks at spaces, and
    after underscores in file names (``dino_architetto_francesc_01``)."""
    chars = max(8, int(width_in * 72 / (0.6 * fontsize)))
    lines: list[str] = []
    for line in title.split("\n"):
        pieces = re.split(r"(?<=[_ ])", line)  # keep the separator at the end of each piece
        current = ""
        for piece in pieces:
            if current and len(current) + len(piece.rstrip()) > chars:
                lines.append(current.rstrip())
                current = ""
            current += piece
        lines.append(current.rstrip())
    return "\n".join(lines)


def to_numpy_image(image: torch.Tensor) -> np.ndarray:
    """``(3|1, H, W)`` tensor in [0, 1] → ``(H, W, 3)`` (or ``(H, W)``) float array for ``imshow``."""
    image = image.detach().float().clamp(0, 1).cpu()
    return image[0].numpy() if image.shape[0] == 1 else image.permute(1, 2, 0).numpy()


def displayable(image: torch.Tensor, background: str | Sequence[float] = "checkerboard") -> torch.Tensor:
    """An RGB tensor to show: RGBA composited over the checkerboard or a solid background; RGB unchanged."""
    if image.shape[0] == 3:
        return image
    if image.shape[0] != 4:
        raise ValueError(f"expected a (3|4, H, W) image, got shape {tuple(image.shape)}")
    if isinstance(background, str) and background == "checkerboard":
        return over_checkerboard(image)
    rgb = resolve_backgrounds([background])[background] if isinstance(background, str) else background
    return composite(image, rgb)


def _grid(rows: int, cols: int, panel: float) -> tuple[Figure, np.ndarray]:
    panel = fit_width(panel, cols)
    fig, axes = plt.subplots(rows, cols, figsize=(cols * panel, rows * panel + 0.3), dpi=DPI, squeeze=False)
    for ax in axes.flat:
        ax.set_axis_off()
    return fig, axes


def show_rgba(images: torch.Tensor | Sequence[torch.Tensor], titles: Sequence[str] | None = None,
              background: str | Sequence[float] = "checkerboard", ncols: int = 6, panel: float = PANEL) -> Figure:
    """Show one or more RGBA (or RGB) images in a grid, over a checkerboard (default) or a named background."""
    items = [images] if isinstance(images, torch.Tensor) and images.dim() == 3 else list(images)
    ncols = max(1, min(ncols, len(items)))
    nrows = -(-len(items) // ncols)
    fig, axes = _grid(nrows, ncols, panel)
    for i, image in enumerate(items):
        ax = axes.flat[i]
        ax.imshow(to_numpy_image(displayable(image, background)), interpolation="nearest")
        if titles is not None:
            ax.set_title(wrap_title(titles[i], fit_width(panel, ncols)), fontsize=8)
    fig.tight_layout()
    return fig


def show_channels(rgba: torch.Tensor, panel: float = PANEL) -> Figure:
    """One RGBA image taken apart: straight colour, alpha, premultiplied colour (c·α), and over a checkerboard.

    The straight colour shows what is stored under transparent pixels; premultiplied colour is what
    compositing actually uses.
    """
    colour, alpha = rgba[:3], rgba[3:4]
    panels = [
        (colour, "straight colour c"),
        (alpha, "alpha α"),
        (colour * alpha, "premultiplied c·α"),
        (over_checkerboard(rgba), "over a checkerboard"),
    ]
    fig, axes = _grid(1, len(panels), panel)
    for ax, (image, title) in zip(axes.flat, panels):
        ax.imshow(to_numpy_image(image), cmap="gray", vmin=0, vmax=1, interpolation="nearest")
        ax.set_title(title, fontsize=8)
    fig.tight_layout()
    return fig


def show_backgrounds(images: torch.Tensor | Sequence[torch.Tensor], backgrounds: Sequence[str] | Mapping | None = None,
                     row_titles: Sequence[str] | None = None, checkerboard: bool = True, panel: float = 0.8) -> Figure:
    """A grid: one row per RGBA image, one column per background (the 9 canonical ones by default), plus a
    first checkerboard column. This is exactly what the ALPHA metric scores."""
    items = [images] if isinstance(images, torch.Tensor) and images.dim() == 3 else list(images)
    bgs = resolve_backgrounds(backgrounds)
    columns = (["checkerboard"] if checkerboard else []) + list(bgs)
    fig, axes = _grid(len(items), len(columns), panel)
    for r, image in enumerate(items):
        for c, name in enumerate(columns):
            ax = axes[r, c]
            shown = over_checkerboard(image) if name == "checkerboard" else composite(image, bgs[name])
            ax.imshow(to_numpy_image(shown), interpolation="nearest")
            if r == 0:
                ax.set_title(name, fontsize=7)
        if row_titles is not None:
            axes[r, 0].set_axis_on()
            axes[r, 0].set_xticks([])
            axes[r, 0].set_yticks([])
            axes[r, 0].set_ylabel(row_titles[r], fontsize=8)
    fig.tight_layout()
    return fig


def _bar_colour(name: str) -> tuple[float, ...]:
    try:
        return resolve_backgrounds([name])[name]
    except ValueError:
        return (0.35, 0.35, 0.35)


def metric_bars(series: Mapping[str, Mapping[str, float | None]], metric: str = "PSNR (dB)",
                ax: Axes | None = None, show_mean: bool = True) -> Figure:
    """Grouped bar chart: ``series`` maps a label (e.g. a model or degradation) to ``{background: value}``.

    A single series gets bars in each background's own colour; several series get one colour each, grouped
    by background. ``None`` and non-finite values (PSNR of identical images) are left out and marked "n/a".
    With ``show_mean`` a dashed line marks each series' mean over the backgrounds it has, labelled with its
    value in the legend, which sits outside the axes (right), clear of the bars.
    """
    if not series:
        raise ValueError("metric_bars needs at least one series")
    names = list(dict.fromkeys(bg for values in series.values() for bg in values))
    width = min(8.0, max(MIN_WIDTH - 1.6, 0.3 * len(names) * len(series) + 1.5))
    fig = ax.figure if ax is not None else plt.figure(figsize=(width + 2.2, 2.8), dpi=DPI)
    ax = ax if ax is not None else fig.add_subplot()
    width = 0.8 / len(series)
    x = np.arange(len(names))
    cycle = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    unit = metric[metric.rfind("(") + 1:metric.rfind(")")] if "(" in metric else ""
    for s, (label, values) in enumerate(series.items()):
        heights = [values.get(bg) for bg in names]
        finite = [v is not None and np.isfinite(v) for v in heights]
        offset = x - 0.4 + width * (s + 0.5)
        colours = [_bar_colour(bg) for bg in names] if len(series) == 1 else cycle[s % len(cycle)]
        ax.bar(offset, [v if ok else 0 for v, ok in zip(heights, finite)], width, color=colours,
               edgecolor="black", linewidth=0.5, label=label)
        for xo, ok in zip(offset, finite):
            if not ok:
                ax.annotate("n/a", (xo, 0), ha="center", va="bottom", fontsize=7)
        if show_mean and any(finite):
            mean = float(np.mean([v for v, ok in zip(heights, finite) if ok]))
            prefix = "mean" if len(series) == 1 else f"{label}: mean"
            ax.axhline(mean, ls="--", lw=1, color="black" if len(series) == 1 else cycle[s % len(cycle)],
                       label=f"{prefix} {mean:.3g} {unit}".rstrip())
    ax.set_xticks(x, names, rotation=45, ha="right", fontsize=8)
    ax.set_xlabel("background")
    ax.set_ylabel(metric)
    ax.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.01, 1.0))
    fig.tight_layout()
    return fig


def exact_vs_reported(exact: Sequence[float], reported: Sequence[float], label: str) -> Figure:
    """Each prediction's exact score (x) against the score a pipeline reports for it (y), with the line y = x:
    how far, and for which predictions, the reported numbers depart from the exact ones."""
    fig, ax = plt.subplots(figsize=(5, 3.4), dpi=DPI)
    ax.plot(exact, reported, "o-", label=label)
    ax.plot(exact, exact, "--", color="gray", label="exact (y = x)")
    ax.set_xlabel("exact mean PSNR (dB)")
    ax.set_ylabel("reported mean PSNR (dB)")
    ax.legend(fontsize=8, loc="upper left")  # the curves run from bottom left to top right
    fig.tight_layout()
    return fig
