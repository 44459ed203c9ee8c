"""Notebook 03's figures and its loss-weight panel: what each loss term measures, and what its weight does.

Built the style.md §6 way: pure functions compute (:func:`loss_maps`, :func:`monte_carlo_curve`,
:func:`finetune_demo`), ``show_*`` functions draw, and :func:`loss_weights_panel` only wires core ipywidgets
controls to them — the paper's weights (:class:`~alphavae.losses.LossWeights`) as defaults, log sliders for the
KL weights, ``continuous_update=False``, and the fine-tune behind a button, run in a thread so a progress bar
moves and a Stop button is heard between steps; the result replaces the ``Output``'s drawing in one step.
:data:`SUGGESTIONS` are the settings notebook 03 suggests trying, each with the effect it promises
(``tests/test_loss_panel.py`` runs them).
"""

from __future__ import annotations

import math
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace

import ipywidgets as widgets
import matplotlib.pyplot as plt
import numpy as np
import torch
from diffusers import AutoencoderKL
from matplotlib.figure import Figure

from alphavae.blending import over_checkerboard, to_vae_range
from alphavae.losses.objective import RECONSTRUCTION_LOSSES, build_objective
from alphavae.vae.reconstruct import reconstruct
from alphavae.training.finetune import finetune_steps
from alphavae.losses import (IMAGENET_MOMENTS, BackgroundMoments, LossWeights,
                             abmse_loss, abmse_map, composite_vae, naive_mse_loss, naive_mse_map,
                             sampled_composite_loss)
from alphavae.notebook.blending_panel import PanelBox, figure_output
from alphavae.notebook.plotting import DPI, fit_width, to_numpy_image

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
                   panel: float = 1.35) -> Figure:
    """Target and prediction over a checkerboard in the first column, then the heat maps of ``maps`` two per
    column, in order (so :func:`loss_maps`' pairs sit one above the other), each with its colour bar. Loss maps
    share one colour scale, gradient maps another, so they compare."""
    names = list(maps)
    cols = 1 + math.ceil(len(names) / 2)
    panel = fit_width(panel, cols)
    fig, axes = plt.subplots(2, cols, figsize=(cols * panel * 1.2, 2 * panel + 0.7), dpi=DPI, squeeze=False)
    for ax in axes.flat:
        ax.set_axis_off()
    for ax, (image, title) in zip(axes[:, 0], ((target01, "target"), (pred01, "prediction"))):
        ax.imshow(to_numpy_image(over_checkerboard(image)), interpolation="nearest")
        ax.set_title(title, fontsize=8)
    grads = {n for n in names if n.startswith("|∂")}
    vmax = {kind: max([float(maps[n].max()) for n in names if (n in grads) == kind] or [1.0]) or 1.0 for kind in (True, False)}
    for i, n in enumerate(names):
        ax = axes[i % 2, 1 + i // 2]
        shown = ax.imshow(maps[n].numpy(), cmap="magma", vmin=0, vmax=vmax[n in grads], interpolation="nearest")
        ax.set_title(f"{n}\nsum {float(maps[n].sum()):.3g}", fontsize=7)
        bar = fig.colorbar(shown, ax=ax, fraction=0.046, pad=0.03)
        bar.ax.tick_params(labelsize=6)
        bar.set_label("|gradient| per pixel" if n in grads else "squared error per pixel", fontsize=6)
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


def show_monte_carlo(curves: list[MonteCarloCurve], panel: float = 3.0) -> Figure:
    """One panel per curve: the running Monte-Carlo mean with a ±2 SE band, converging on the closed form; the
    legend below the panels, clear of the curves."""
    fig, axes = plt.subplots(1, len(curves), figsize=(fit_width(panel, len(curves)) * len(curves), 2.6), dpi=DPI,
                             squeeze=False)
    for ax, c in zip(axes.flat, curves):
        ax.fill_between(c.n, c.mean - 2 * c.se, c.mean + 2 * c.se, alpha=0.3, label="±2 standard errors")
        ax.plot(c.n, c.mean, lw=1, label="mean over sampled backgrounds")
        ax.axhline(c.analytic, color="black", ls="--", lw=1, label="ABMSE (closed form)")
        ax.set_xscale("log")
        ax.set_xlabel("backgrounds sampled (log scale)")
        ax.set_title(c.label, fontsize=8)
    axes.flat[0].set_ylabel("composite squared error\nper image ([-1, 1] units²)")
    fig.tight_layout()
    handles, labels = axes.flat[0].get_legend_handles_labels()
    fig.legend(handles, labels, loc="upper center", bbox_to_anchor=(0.5, 0.0), ncol=3, fontsize=8)
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
    stopped: bool = False

    def scores(self) -> dict[str, float]:
        """What a fine-tune changed, on the shown images: the mean |α error| before and after, the mean colour
        error on visible pixels after (|ĉ − c| weighted by the target's α), and the reconstruction term
        (mean of the last 5 steps)."""
        visible = self.targets[:, 3:]
        last = [h["loss/reconstruction"] for h in self.history[-5:]]
        return {
            "alpha_error_before": (self.before[:, 3] - self.targets[:, 3]).abs().mean().item(),
            "alpha_error": (self.after[:, 3] - self.targets[:, 3]).abs().mean().item(),
            "colour_error": ((self.after[:, :3] - self.targets[:, :3]).abs() * visible).sum().item()
                            / max(3 * visible.sum().item(), 1e-12),
            "reconstruction": sum(last) / max(len(last), 1),
        }


class _Stopped(Exception):
    """Raised from the step callback when ``should_stop()`` says so: the fine-tune ends after that step."""


def finetune_demo(rgb_vae: AutoencoderKL, images01: torch.Tensor, weights: LossWeights | None = None,
                  steps: int = 20, lr: float = 1e-4, batch_size: int = 4, seed: int = 0,
                  lpips_model: torch.nn.Module | None = None, n_show: int = 4,
                  progress: Callable[[int, dict[str, float]], None] | None = None,
                  should_stop: Callable[[], bool] | None = None) -> FinetuneDemo:
    """Convert ``rgb_vae`` to RGBA and fine-tune it for ``steps`` steps with ``weights`` on ``images01``.

    The reference KL uses ``rgb_vae`` itself (frozen); a small PatchGAN is built if the adversarial weight is
    positive; the perceptual term needs ``lpips_model`` (else it is skipped and noted). The first ``n_show``
    images are reconstructed before and after. ``progress(step, logs)`` is called after every step; when
    ``should_stop()`` turns true the run ends after the current step (``stopped`` is set, the steps so far kept).
    """
    weights = weights or LossWeights()
    torch.manual_seed(seed)
    device = next(rgb_vae.parameters()).device
    model, objective = build_objective(rgb_vae, weights, device, lpips_model, disc_channels=16,
                                       generator=torch.Generator(device).manual_seed(seed))
    shown = images01[:n_show]
    before = reconstruct(model, shown).cpu()
    history: list[dict[str, float]] = []

    def callback(step: int, logs: dict[str, float]) -> None:
        history.append(logs)
        if progress is not None:
            progress(step, logs)
        if should_stop is not None and should_stop() and step + 1 < steps:
            raise _Stopped

    start = time.perf_counter()
    stopped = False
    try:
        finetune_steps(model, images01, objective, steps, lr=lr, batch_size=batch_size, seed=seed, callback=callback)
    except _Stopped:
        stopped = True  # finetune_steps has put the model back in eval mode
    seconds = time.perf_counter() - start
    return FinetuneDemo(weights, shown, before, reconstruct(model, shown).cpu(), history, objective.notes, seconds, model,
                        stopped)


def show_finetune(demo: FinetuneDemo, panel: float = 1.2) -> Figure:
    """Left: targets, untrained conversion, fine-tuned (rows, over a checkerboard). Right: each term's
    unweighted value per step, and its weighted value (both log scale: the terms span decades); the legend
    below the curves."""
    n = len(demo.targets)
    fig = plt.figure(figsize=(n * panel + 5.2, 3 * panel + 0.9), dpi=DPI)
    grid = fig.add_gridspec(3, n + 2, width_ratios=[1] * n + [2.2, 2.2])
    after = f"after {len(demo.history)} steps" + (" (stopped)" if demo.stopped else "")
    for r, (images, title) in enumerate(((demo.targets, "target"), (demo.before, "converted, untrained"),
                                         (demo.after, after))):
        for c in range(n):
            ax = fig.add_subplot(grid[r, c])
            ax.imshow(to_numpy_image(over_checkerboard(images[c])), interpolation="nearest")
            ax.set_axis_off()
            if c == 0:
                ax.set_title(title, fontsize=8, loc="left")
    steps = [h["step"] for h in demo.history]
    handles: dict[str, object] = {}
    for col, prefix, title in ((n, "loss/", "unweighted terms"), (n + 1, "weighted/", "weighted terms (× weight)")):
        ax = fig.add_subplot(grid[:, col])
        for i, key in enumerate(dict.fromkeys(k for h in demo.history for k in h if k.startswith(prefix))):
            values = [abs(h[key]) if key in h else np.nan for h in demo.history]
            line, = ax.plot(steps, values, lw=1.2, color=f"C{i}", label=key.removeprefix(prefix))
            handles.setdefault(key.removeprefix(prefix), line)
        ax.set_yscale("log")
        ax.set_xlabel("step")
        ax.set_ylabel("|value| (log scale)", fontsize=8)
        ax.set_title(title, fontsize=8)
    fig.tight_layout()
    fig.legend(list(handles.values()), list(handles), loc="upper center", bbox_to_anchor=(0.72, 0.0),
               ncol=min(3, max(len(handles), 1)), fontsize=7)
    return fig


@dataclass(frozen=True)
class Suggestion:
    """One thing notebook 03 §8 suggests trying in the panel: the weights it changes from the paper's, and the
    effect it promises (checked by ``tests/test_loss_panel.py`` with the fast preset's fine-tune)."""

    label: str
    changes: dict
    promise: str


#: The §8 suggestions, in the notebook's order. Effects measured with the fast preset (30 steps of batch 4 at
#: 48 px, lr 5e-4, seed 0, LPIPS-Alex) against the paper's weights (mean |α error| 0.69 → 0.46 with the 16-channel `embedded`).
SUGGESTIONS = (
    Suggestion("naive MSE instead of ABMSE", {"reconstruction_loss": "mse"},
               "a short run learns alpha faster (mean |α error| lower by at least 0.1): naive MSE weighs an alpha "
               "error 4Δ², ABMSE ≈ 1Δ² — the same as notebook 04's ablation"),
    Suggestion("prior KL 1 (10⁶ × the paper's)", {"prior_kl": 1.0},
               "the reconstruction suffers: the colour error on visible pixels grows by at least 30 %"),
    Suggestion("GAN from step 10", {"disc_start": 10},
               "the adversarial term and the discriminator's loss appear in the curves from step 10 on (the "
               "adversarial weight is already the paper's 1; at the paper's step 4000 a short run never sees it)"),
    Suggestion("blend p = 1", {"blend_p": 1.0},
               "only opaque images: alpha is not learned (mean |α error| stays above 0.6 instead of ≈ 0.46)"),
)


def loss_weights_panel(rgb_vae: AutoencoderKL, images01: torch.Tensor, steps: int = 20, lr: float = 1e-4,
                       batch_size: int = 4, lpips_model: torch.nn.Module | None = None,
                       seed: int = 0) -> PanelBox:
    """Sliders for every loss weight (log sliders for the KL weights), the reconstruction loss, the blend
    probability, steps and learning rate, all starting at :class:`~alphavae.losses.LossWeights`' paper values;
    *Fine-tune* runs :func:`finetune_demo` in a thread (a progress bar follows the steps, *Stop* ends the run
    after the current step) and draws :func:`show_finetune`. ``panel.run(wait=True)`` clicks it from code."""
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
        "reconstruction_loss": widgets.Dropdown(options=list(RECONSTRUCTION_LOSSES), value=w.reconstruction_loss,
                                                description="which", style=style, layout=layout),
        "perceptual": lin(w.perceptual if lpips_model is not None else 0.0, 0, 2, 0.1, "perceptual"),
        "prior_kl": log(w.prior_kl, -12, 0, "prior KL"),
        "reference_kl": log(w.reference_kl, -18, 0, "reference KL"),
        "adversarial": lin(w.adversarial, 0, 2, 0.1, "adversarial"),
        "disc_start": widgets.IntSlider(value=w.disc_start, min=0, max=max(w.disc_start, 200), step=1,
                                        description="GAN from step", continuous_update=False, style=style,
                                        layout=layout),
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
    stop = widgets.Button(description="Stop", button_style="warning", icon="stop", disabled=True)
    bar = widgets.IntProgress(value=0, min=0, max=steps, description="step 0", style=style)
    status = widgets.Label(value="paper's weights; click Fine-tune")
    out = widgets.Output()
    stop_flag = threading.Event()
    box = PanelBox([widgets.HBox([widgets.VBox(list(controls.values())),
                                  widgets.VBox([*run_controls.values(), widgets.HBox([button, stop]), bar, status])]),
                    out])

    def work(chosen: LossWeights, n_steps: int, rate: float) -> None:
        def progress(step: int, _logs: dict[str, float]) -> None:
            bar.value = step + 1
            bar.description = f"step {step + 1}"

        try:
            demo = finetune_demo(rgb_vae, images01, chosen, steps=n_steps, lr=rate, batch_size=batch_size, seed=seed,
                                 lpips_model=lpips_model, progress=progress, should_stop=stop_flag.is_set)
            fig = show_finetune(demo)
            out.outputs = (figure_output(fig),)  # replaces the old drawing in one step (works from a thread)
            plt.close(fig)
            sc = demo.scores()
            status.value = (f"{len(demo.history)} steps in {demo.seconds:.1f} s" + (" (stopped)" if demo.stopped else "")
                            + f"; |α error| {sc['alpha_error_before']:.3f} → {sc['alpha_error']:.3f}, colour error "
                            f"{sc['colour_error']:.4f}; " + ("; ".join(demo.notes) or "all terms on"))
            box.last = demo
        except Exception as exc:  # shown in the panel, not lost in the thread
            status.value = f"failed: {exc.__class__.__name__}: {exc}"
            raise
        finally:
            button.disabled, stop.disabled = False, True

    def run(_click=None, wait: bool = False) -> None:
        if box.thread is not None and box.thread.is_alive():
            return
        values = {k: c.value for k, c in controls.items()}
        chosen = replace(w, **values)
        stop_flag.clear()
        bar.max, bar.value, bar.description = run_controls["steps"].value, 0, "step 0"
        status.value = f"fine-tuning {run_controls['steps'].value} steps ..."
        button.disabled, stop.disabled = True, False
        box.thread = threading.Thread(target=work, args=(chosen, run_controls["steps"].value, run_controls["lr"].value),
                                      daemon=True)
        box.thread.start()
        if wait:
            box.thread.join()

    button.on_click(run)
    stop.on_click(lambda _click: stop_flag.set())
    box.controls, box.run, box.stop_flag, box.bar, box.status = {**controls, **run_controls}, run, stop_flag, bar, status
    return box
