"""Notebook 03's figures and its loss-weight panel: what each loss term measures, and what its weight does.

Built the style.md §6 way: pure functions compute (:func:`loss_maps`, :func:`monte_carlo_curve`,
:func:`finetune_demo`), ``show_*`` functions draw, and :func:`loss_weights_panel` only wires core ipywidgets
controls to them — log sliders for the KL weights, ``continuous_update=False``, and the fine-tune behind a
button, drawn into an ``Output`` with ``clear_output(wait=True)``.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field, replace

import ipywidgets as widgets
import matplotlib.pyplot as plt
import numpy as np
import torch
from diffusers import AutoencoderKL
from IPython.display import display
from matplotlib.figure import Figure

from alphavae.blending import over_checkerboard, to_vae_range
from alphavae.losses.objective import build_objective
from alphavae.vae.reconstruct import reconstruct
from alphavae.training.finetune import finetune_steps
from alphavae.losses import (IMAGENET_MOMENTS, BackgroundMoments, LossWeights,
                             abmse_loss, abmse_map, composite_vae, naive_mse_loss, naive_mse_map,
                             sampled_composite_loss)
from alphavae.notebook.plotting import DPI, to_numpy_image

# --- which pixels each term cares about -------------------------------------------------------------------


def loss_maps(pred01: torch.Tensor, target01: torch.Tensor, moments: BackgroundMoments = IMAGENET_MOMENTS) -> dict[str, torch.Tensor]:
    """Per-pixel maps ``(H, W)`` for one RGBA pair in [0, 1]: each reconstruction loss, the squared composite
    error over black and over white, and how strongly each loss pulls on the predicted colour (|∂L/∂ĉ|)."""
    target = to_vae_range(target01[None].float())
    pred = to_vae_range(pred01[None].float()).requires_grad_(True)
    maps = {"naive MSE": naive_mse_map(pred, target)[0], "ABMSE": abmse_map(pred, target, moments)[0]}
    for name, b in (("error over black", (0.0, 0.0, 0.0)), ("error over white", (1.0, 1.0, 1.0))):
        maps[name] = (composite_vae(target, b) - composite_vae(pred, b)).square().sum(1)[0]
    for name, loss in (("|∂ naive MSE / ∂ĉ|", naive_mse_loss(pred, target)), ("|∂ ABMSE / ∂ĉ|", abmse_loss(pred, target, moments))):
        grad = torch.autograd.grad(loss, pred)[0]
        maps[name] = grad[0, :3].norm(dim=0)
    return {k: v.detach() for k, v in maps.items()}


def show_loss_maps(pred01: torch.Tensor, target01: torch.Tensor, maps: dict[str, torch.Tensor],
                   panel: float = 1.7) -> Figure:
    """Target and prediction over a checkerboard in the first column, then the heat maps of ``maps`` two per
    column, in order (so :func:`loss_maps`' pairs sit one above the other). Loss maps share one colour scale,
    gradient maps another, so they compare."""
    names = list(maps)
    cols = 1 + math.ceil(len(names) / 2)
    fig, axes = plt.subplots(2, cols, figsize=(cols * panel, 2 * panel + 0.5), dpi=DPI, squeeze=False)
    for ax in axes.flat:
        ax.set_axis_off()
    for ax, (image, title) in zip(axes[:, 0], ((target01, "target"), (pred01, "prediction"))):
        ax.imshow(to_numpy_image(over_checkerboard(image)), interpolation="nearest")
        ax.set_title(title, fontsize=8)
    grads = {n for n in names if n.startswith("|∂")}
    vmax = {kind: max([float(maps[n].max()) for n in names if (n in grads) == kind] or [1.0]) or 1.0 for kind in (True, False)}
    for i, n in enumerate(names):
        ax = axes[i % 2, 1 + i // 2]
        ax.imshow(maps[n].numpy(), cmap="magma", vmin=0, vmax=vmax[n in grads], interpolation="nearest")
        ax.set_title(f"{n}\nsum {float(maps[n].sum()):.3g}", fontsize=7)
    fig.tight_layout()
    return fig


# --- the analytic expectation against sampled backgrounds -------------------------------------------------


@dataclass
class MonteCarloCurve:
    """Running mean and standard error of the sampled composite loss after 1..N backgrounds, and the closed form."""

    n: np.ndarray
    mean: np.ndarray
    se: np.ndarray
    analytic: float
    label: str


def monte_carlo_curve(pred01: torch.Tensor, target01: torch.Tensor, backgrounds01: torch.Tensor,
                      moments: BackgroundMoments, label: str = "") -> MonteCarloCurve:
    """Sampled composite losses over ``backgrounds01`` ``(N, 3)`` (drawn from the distribution whose
    ``moments`` are given) for a batch of RGBA pairs in [0, 1], as running statistics, beside the ABMSE."""
    pred, target = to_vae_range(pred01.float()), to_vae_range(target01.float())
    with torch.no_grad():
        losses = sampled_composite_loss(pred, target, backgrounds01).double().numpy()
        analytic = float(abmse_loss(pred, target, moments))
    n = np.arange(1, len(losses) + 1)
    mean = np.cumsum(losses) / n
    var = np.maximum(np.cumsum(losses**2) / n - mean**2, 0.0) * n / np.maximum(n - 1, 1)
    return MonteCarloCurve(n, mean, np.sqrt(var / n), analytic, label)


def show_monte_carlo(curves: list[MonteCarloCurve], panel: float = 3.2) -> Figure:
    """One panel per curve: the running Monte-Carlo mean with a ±2 SE band, converging on the closed form."""
    fig, axes = plt.subplots(1, len(curves), figsize=(panel * len(curves), 2.6), dpi=DPI, squeeze=False)
    for ax, c in zip(axes.flat, curves):
        ax.fill_between(c.n, c.mean - 2 * c.se, c.mean + 2 * c.se, alpha=0.3, label="±2 standard errors")
        ax.plot(c.n, c.mean, lw=1, label="mean over sampled backgrounds")
        ax.axhline(c.analytic, color="black", ls="--", lw=1, label="ABMSE (closed form)")
        ax.set_xscale("log")
        ax.set_xlabel("backgrounds sampled")
        ax.set_title(c.label, fontsize=8)
    axes.flat[0].set_ylabel("composite squared error / image")
    axes.flat[0].legend(fontsize=7)
    fig.tight_layout()
    return fig


# --- a short fine-tune with chosen weights ----------------------------------------------------------------


@dataclass
class FinetuneDemo:
    """Targets, the untrained conversion's and the fine-tuned model's reconstructions (posterior mode, [0, 1]),
    the per-step logs, the objective's notes (skipped terms) and the wall time."""

    weights: LossWeights
    targets: torch.Tensor
    before: torch.Tensor
    after: torch.Tensor
    history: list[dict[str, float]]
    notes: list[str] = field(default_factory=list)
    seconds: float = 0.0
    model: AutoencoderKL | None = None


def finetune_demo(rgb_vae: AutoencoderKL, images01: torch.Tensor, weights: LossWeights | None = None,
                  steps: int = 20, lr: float = 1e-4, batch_size: int = 4, seed: int = 0,
                  lpips_model: torch.nn.Module | None = None, n_show: int = 4) -> FinetuneDemo:
    """Convert ``rgb_vae`` to RGBA and fine-tune it for ``steps`` steps with ``weights`` on ``images01``.

    The reference KL uses ``rgb_vae`` itself (frozen); a small PatchGAN is built if the adversarial weight is
    positive; the perceptual term needs ``lpips_model`` (else it is skipped and noted). The first ``n_show``
    images are reconstructed before and after.
    """
    weights = weights or LossWeights()
    torch.manual_seed(seed)
    device = next(rgb_vae.parameters()).device
    model, objective = build_objective(rgb_vae, weights, device, lpips_model, disc_channels=16,
                                       generator=torch.Generator(device).manual_seed(seed))
    shown = images01[:n_show]
    before = reconstruct(model, shown).cpu()
    start = time.perf_counter()
    history = finetune_steps(model, images01, objective, steps, lr=lr, batch_size=batch_size, seed=seed)
    seconds = time.perf_counter() - start
    return FinetuneDemo(weights, shown, before, reconstruct(model, shown).cpu(), history, objective.notes, seconds, model)


def show_finetune(demo: FinetuneDemo, panel: float = 1.3) -> Figure:
    """Left: targets, untrained conversion, fine-tuned (rows, over a checkerboard). Right: each term's
    unweighted value per step, and its weighted value (log scale)."""
    n = len(demo.targets)
    fig = plt.figure(figsize=(n * panel + 7.0, 3 * panel + 0.6), dpi=DPI)
    grid = fig.add_gridspec(3, n + 2, width_ratios=[1] * n + [2.6, 2.6])
    for r, (images, title) in enumerate(((demo.targets, "target"), (demo.before, "converted, untrained"),
                                         (demo.after, f"after {len(demo.history)} steps"))):
        for c in range(n):
            ax = fig.add_subplot(grid[r, c])
            ax.imshow(to_numpy_image(over_checkerboard(images[c])), interpolation="nearest")
            ax.set_axis_off()
            if c == 0:
                ax.set_title(title, fontsize=8, loc="left")
    steps = [h["step"] for h in demo.history]
    for col, prefix, title in ((n, "loss/", "unweighted terms"), (n + 1, "weighted/", "weighted terms")):
        ax = fig.add_subplot(grid[:, col])
        for key in dict.fromkeys(k for h in demo.history for k in h if k.startswith(prefix)):
            values = [abs(h[key]) if key in h else np.nan for h in demo.history]
            ax.plot(steps, values, lw=1.2, label=key.removeprefix(prefix))
        ax.set_yscale("log")
        ax.set_xlabel("step")
        ax.set_title(title, fontsize=8)
        ax.legend(fontsize=6)
    fig.tight_layout()
    return fig


def loss_weights_panel(rgb_vae: AutoencoderKL, images01: torch.Tensor, steps: int = 20, lr: float = 1e-4,
                       batch_size: int = 4, lpips_model: torch.nn.Module | None = None) -> widgets.VBox:
    """Sliders for every loss weight (log sliders for the KL weights), the reconstruction loss, the blend
    probability, steps and learning rate; the button runs :func:`finetune_demo` and draws :func:`show_finetune`."""
    w = LossWeights()
    style, layout = {"description_width": "9em"}, widgets.Layout(width="24em")

    def lin(value, lo, hi, step, label):
        return widgets.FloatSlider(value=value, min=lo, max=hi, step=step, description=label,
                                   continuous_update=False, style=style, layout=layout)

    def log(value, lo, hi, label):
        return widgets.FloatLogSlider(value=value, base=10, min=lo, max=hi, step=0.5, description=label,
                                      readout_format=".0e", continuous_update=False, style=style, layout=layout)

    controls = {
        "reconstruction": lin(w.reconstruction, 0, 2, 0.1, "reconstruction"),
        "reconstruction_loss": widgets.Dropdown(options=["abmse", "mse"], value=w.reconstruction_loss,
                                                description="which", style=style, layout=layout),
        "perceptual": lin(w.perceptual if lpips_model is not None else 0.0, 0, 2, 0.1, "perceptual"),
        "prior_kl": log(w.prior_kl, -12, 0, "prior KL"),
        "reference_kl": log(w.reference_kl, -18, 0, "reference KL"),
        "adversarial": lin(0.0, 0, 2, 0.1, "adversarial"),
        "disc_start": widgets.IntSlider(value=steps // 2, min=0, max=200, description="GAN from step",
                                        continuous_update=False, style=style, layout=layout),
        "blend_p": lin(w.blend_p, 0, 1, 0.05, "blend p"),
    }
    if lpips_model is None:
        controls["perceptual"].disabled = True
        controls["perceptual"].description = "perceptual (n/a)"
    run_controls = {
        "steps": widgets.IntSlider(value=steps, min=1, max=200, description="steps", continuous_update=False,
                                   style=style, layout=layout),
        "lr": log(lr, -6, -2, "learning rate"),
    }
    button = widgets.Button(description="Fine-tune", button_style="primary", icon="play")
    out = widgets.Output()

    def run(_click=None) -> None:
        values = {k: c.value for k, c in controls.items()}
        chosen = replace(w, **values)
        button.disabled = True
        with out:
            out.clear_output(wait=True)
            print(f"fine-tuning {run_controls['steps'].value} steps ...")
            try:
                demo = finetune_demo(rgb_vae, images01, chosen, steps=run_controls["steps"].value,
                                     lr=run_controls["lr"].value, batch_size=batch_size, lpips_model=lpips_model)
            finally:
                button.disabled = False
            out.clear_output(wait=True)
            print(f"{len(demo.history)} steps in {demo.seconds:.1f} s; " + ("; ".join(demo.notes) or "all terms on"))
            fig = show_finetune(demo)
            display(fig)
            plt.close(fig)

    button.on_click(run)
    left = widgets.VBox(list(controls.values()))
    right = widgets.VBox([*run_controls.values(), button])
    return widgets.VBox([widgets.HBox([left, right]), out])
