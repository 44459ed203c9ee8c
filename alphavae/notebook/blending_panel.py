"""The notebook-01 blending widget: damage an RGBA image, composite it over a background, score it live.

Built the style.md §6 way: a pure function, :func:`blend_and_score`, does the work and :func:`show_blend`
draws it (the notebook calls both with defaults first, so GitHub and CI see a static result); then
:func:`blending_widget` only wires core ipywidgets controls to them (``continuous_update=False``, drawing into
an ``Output`` whose drawing is replaced in one step, see :func:`figure_output`). The panel is a
:class:`PanelBox`, whose plain-text form (what GitHub shows for a stored widget) is a note, not ``VBox(...)``.
"""

from __future__ import annotations

import base64
import inspect
import io
import math
import threading
from collections.abc import Sequence
from dataclasses import dataclass

import ipywidgets as widgets
import matplotlib.pyplot as plt
import torch
from matplotlib.figure import Figure

from alphavae.blending import BACKGROUNDS, composite, over_checkerboard
from alphavae.metric.degradations import DEGRADATIONS, degrade, scale_alpha
from alphavae.metric.alpha import AlphaReport, alpha_metric
from alphavae.notebook.plotting import DPI, fit_width, to_numpy_image


#: What a stored notebook shows in place of a panel where no live kernel runs it (GitHub, nbviewer).
PANEL_NOTE = "[interactive panel: run the notebook to use it; the plain cell below shows its first drawing]"


class PanelBox(widgets.VBox):
    """A ``VBox`` whose text form is :data:`PANEL_NOTE`: a stored notebook shows that note where the widget
    cannot be drawn, instead of ``VBox(children=(...``. ``thread``/``last`` hold a running job and its result."""

    thread: threading.Thread | None = None
    last: object = None

    def __repr__(self) -> str:
        return PANEL_NOTE


@dataclass
class BlendResult:
    """What :func:`blend_and_score` computed: the damaged prediction, both composites over ``background``,
    the full ALPHA report over the 9 backgrounds, and the headline numbers in ``scores``."""

    target: torch.Tensor
    prediction: torch.Tensor
    background: str
    target_composite: torch.Tensor
    prediction_composite: torch.Tensor
    report: AlphaReport
    scores: dict[str, float]


def blend_and_score(target: torch.Tensor, alpha_scale: float = 1.0, background: str = "gray",
                    degradation: str = "blur", strength: float = 0.5, seed: int = 0) -> BlendResult:
    """Make a prediction from ``target`` (``(4, H, W)`` RGBA in [0, 1]) by :func:`~alphavae.metric.degradations.degrade`
    and then scaling its alpha by ``alpha_scale``; score it with the ALPHA metric (PSNR and SSIM).

    ``scores`` holds PSNR/SSIM over ``background``, their means over the 9 backgrounds, and the alpha-only
    PSNR, SAD and gradient error. PSNR is ``inf`` when the composites are identical.
    """
    if background not in BACKGROUNDS:
        raise ValueError(f"unknown background {background!r}; choose from {list(BACKGROUNDS)}")
    prediction = scale_alpha(degrade(target, degradation, strength, seed), alpha_scale)
    report = alpha_metric(prediction[None], target[None], metrics=("psnr", "ssim"))
    scores = {
        "psnr": report.backgrounds[background]["psnr"],
        "ssim": report.backgrounds[background]["ssim"],
        "mean_psnr": report.mean["psnr"],
        "mean_ssim": report.mean["ssim"],
        "alpha_psnr": report.alpha["psnr"],
        "sad": report.alpha["sad"],
        "grad": report.alpha["grad"],
    }
    rgb = BACKGROUNDS[background]
    return BlendResult(target, prediction, background, composite(target, rgb), composite(prediction, rgb), report, scores)


#: The widget's starting values: :func:`blend_and_score`'s own defaults (one source).
BLEND_DEFAULTS = {k: v.default for k, v in inspect.signature(blend_and_score).parameters.items()
                  if v.default is not inspect.Parameter.empty}


def _db(value: float) -> str:
    return "∞ dB" if math.isinf(value) else f"{value:.2f} dB"


def describe(result: BlendResult) -> str:
    """The scores as two short lines of text."""
    s = result.scores
    return (f"over {result.background}: PSNR {_db(s['psnr'])}, SSIM {s['ssim']:.4f}   |   mean of 9: PSNR "
            f"{_db(s['mean_psnr'])}, SSIM {s['mean_ssim']:.4f}\nalpha only: PSNR {_db(s['alpha_psnr'])}, "
            f"SAD {s['sad']:.3f}k, gradient error {s['grad']:.4f}k")


def show_blend(result: BlendResult, panel: float = 1.5) -> Figure:
    """Four panels: target and prediction over the chosen background, the per-pixel error of the composite
    (largest channel difference, with its colour bar), and the prediction over a checkerboard; the scores in
    the title."""
    diff = (result.prediction_composite - result.target_composite).abs().amax(0)
    panel = fit_width(panel, 4.6)
    fig, axes = plt.subplots(1, 4, figsize=(4.6 * panel, panel + 0.9), dpi=DPI)
    images = [(result.target_composite, f"target over {result.background}"),
              (result.prediction_composite, f"prediction over {result.background}")]
    for ax, (image, title) in zip(axes[:2], images):
        ax.imshow(to_numpy_image(image), interpolation="nearest")
        ax.set_title(title, fontsize=8)
    shown = axes[2].imshow(diff.numpy(), cmap="magma", vmin=0, vmax=max(float(diff.max()), 1e-6), interpolation="nearest")
    axes[2].set_title("|composite error|", fontsize=8)
    bar = fig.colorbar(shown, ax=axes[2], fraction=0.046, pad=0.03)
    bar.ax.tick_params(labelsize=6)
    bar.set_label("error (0–1)", fontsize=6)
    axes[3].imshow(to_numpy_image(over_checkerboard(result.prediction)), interpolation="nearest")
    axes[3].set_title("prediction, checkerboard", fontsize=8)
    for ax in axes:
        ax.set_axis_off()
    fig.suptitle(describe(result), fontsize=8)
    fig.tight_layout()
    return fig


def figure_output(fig: Figure) -> dict:
    """A figure as one ``display_data`` output (PNG) for an ``Output`` widget's ``outputs``.

    Setting ``outputs`` directly does not depend on capturing the kernel's display messages (``with out:``),
    so the first drawing — made while the cell that builds the widget is still running — lands in the widget
    with or without a frontend. (Capturing there hung one headless full-mode run on a GPU machine; see
    benchmarks/NOTES.md, "Notebooks in full mode".)
    """
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=fig.dpi)
    png = base64.b64encode(buffer.getvalue()).decode("ascii")
    return {"output_type": "display_data", "data": {"image/png": png, "text/plain": repr(fig)}, "metadata": {}}


def blending_widget(images: torch.Tensor | Sequence[torch.Tensor], names: Sequence[str] | None = None) -> PanelBox:
    """Controls — image, degradation, strength, alpha scale, background — redrawing :func:`show_blend` on
    every change. ``images``: RGBA ``(4, H, W)`` tensors (or one ``(N, 4, H, W)`` tensor)."""
    items = list(images)
    names = list(names) if names is not None else [f"image {i}" for i in range(len(items))]
    style = {"description_width": "initial"}
    default = BLEND_DEFAULTS
    controls = {
        "index": widgets.Dropdown(options=[(n, i) for i, n in enumerate(names)], value=0, description="image"),
        "degradation": widgets.Dropdown(options=DEGRADATIONS, value=default["degradation"], description="degradation"),
        "strength": widgets.FloatSlider(value=default["strength"], min=0, max=1, step=0.05, description="strength",
                                        continuous_update=False, style=style),
        "alpha_scale": widgets.FloatSlider(value=default["alpha_scale"], min=0, max=1.5, step=0.05,
                                           description="alpha scale", continuous_update=False, style=style),
        "background": widgets.Dropdown(options=list(BACKGROUNDS), value=default["background"], description="background"),
    }
    out = widgets.Output()

    def redraw(_change=None) -> None:
        v = {k: c.value for k, c in controls.items()}
        result = blend_and_score(items[v["index"]], v["alpha_scale"], v["background"], v["degradation"], v["strength"])
        fig = show_blend(result)
        out.outputs = (figure_output(fig),)  # replaces the old drawing in one step, like clear_output(wait=True)
        plt.close(fig)

    for control in controls.values():
        control.observe(redraw, names="value")
    redraw()
    rows = [widgets.HBox([controls["index"], controls["degradation"], controls["strength"]]),
            widgets.HBox([controls["alpha_scale"], controls["background"]])]
    return PanelBox([*rows, out])
