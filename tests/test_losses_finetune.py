"""The small fine-tuning loop and notebook 03's helpers: reproducible, learning, and consistent with the losses."""

from __future__ import annotations

import matplotlib

matplotlib.use("Agg")

import pytest
import torch
from diffusers import AutoencoderKL

from alphavae.vae.conversion import convert_to_rgba
from alphavae.training.finetune import finetune_steps
from alphavae.notebook.loss_panel import (finetune_demo, loss_maps, loss_weights_panel, monte_carlo_curve, show_finetune,
                                   show_loss_maps, show_monte_carlo)
from alphavae.losses import GRID_MOMENTS, AlphaVAEObjective, LossWeights, PatchDiscriminator, abmse_loss

TINY = dict(block_out_channels=(8, 16), down_block_types=("DownEncoderBlock2D",) * 2,
            up_block_types=("UpDecoderBlock2D",) * 2, layers_per_block=1, norm_num_groups=4, latent_channels=4)


pytestmark = pytest.mark.usefixtures("one_thread")


def _rgb() -> AutoencoderKL:
    torch.manual_seed(0)
    return AutoencoderKL(**TINY).eval().requires_grad_(False)


def _images(n: int = 4, size: int = 16) -> torch.Tensor:
    """Opaque discs on a transparent canvas, colours seeded."""
    g = torch.Generator().manual_seed(3)
    yy, xx = torch.meshgrid(torch.arange(size), torch.arange(size), indexing="ij")
    disc = (((yy - size / 2) ** 2 + (xx - size / 2) ** 2) < (size / 3) ** 2).float()
    colour = torch.rand(n, 3, 1, 1, generator=g).expand(n, 3, size, size)
    return torch.cat([colour * disc, disc.expand(n, 1, size, size)], dim=1)


def test_finetune_steps_is_reproducible_and_learns_alpha():
    images = _images()
    runs = []
    for _ in range(2):
        vae = convert_to_rgba(_rgb())
        obj = AlphaVAEObjective(LossWeights(blend_p=0.0), sample_posterior=False)
        runs.append((vae, finetune_steps(vae, images, obj, steps=25, lr=3e-3, batch_size=4, seed=1)))
    (vae, history), (_, again) = runs
    assert history == again
    assert [h["step"] for h in history] == list(range(25))
    first, last = history[0]["loss/reconstruction"], history[-1]["loss/reconstruction"]
    assert last < 0.5 * first, (first, last)
    assert not vae.training and not any(p.requires_grad for p in vae.parameters())


def test_finetune_steps_runs_the_discriminator_from_disc_start():
    vae = convert_to_rgba(_rgb())
    disc = PatchDiscriminator(base_channels=8)
    before = [p.clone() for p in disc.parameters()]
    obj = AlphaVAEObjective(LossWeights(disc_start=2), discriminator=disc)
    history = finetune_steps(vae, _images(size=32), obj, steps=3, lr=1e-3, seed=0)
    assert ["disc/loss" in h for h in history] == [False, False, True]
    assert "adaptive_weight" in history[2] and any(not torch.equal(a, b) for a, b in zip(before, disc.parameters()))


def test_finetune_steps_rejects_bad_input():
    vae = convert_to_rgba(_rgb())
    with pytest.raises(ValueError, match="RGBA"):
        finetune_steps(vae, torch.rand(2, 3, 16, 16), AlphaVAEObjective(), steps=1)


def test_loss_maps_agree_with_the_losses():
    target = _images(1)[0]
    pred = target.clone()
    pred[3] = 1.0  # what the untrained conversion says: opaque everywhere
    pred[:3] = torch.rand(3, 16, 16, generator=torch.Generator().manual_seed(0))
    maps = loss_maps(pred, target)
    assert maps["ABMSE"].sum().item() == pytest.approx(abmse_loss(pred[None] * 2 - 1, target[None] * 2 - 1).item(), rel=1e-5)
    transparent = target[3] == 0
    both = pred.clone()
    both[3][transparent] = 0.0
    m2 = loss_maps(both, target)
    assert torch.all(m2["|∂ ABMSE / ∂ĉ|"][transparent] == 0) and m2["|∂ naive MSE / ∂ĉ|"][transparent].sum() > 0
    assert show_loss_maps(pred, target, maps) is not None


def test_monte_carlo_curve_converges_on_the_closed_form():
    target = _images(2)
    pred = target.flip(-1).roll(3, -2)
    g = torch.Generator().manual_seed(0)
    from alphavae.losses import GRID_COLOURS

    samples = GRID_COLOURS[torch.randint(len(GRID_COLOURS), (3000,), generator=g)]
    curve = monte_carlo_curve(pred, target, samples, GRID_MOMENTS, "grid")
    assert abs(curve.mean[-1] - curve.analytic) < 4 * curve.se[-1]
    assert curve.se[-1] < curve.se[99]
    assert show_monte_carlo([curve]) is not None


def _walk(widget):
    yield widget
    for child in getattr(widget, "children", ()):
        yield from _walk(child)


def test_finetune_demo_and_panel_run_headless():
    rgb = _rgb()
    demo = finetune_demo(rgb, _images(size=16), LossWeights(adversarial=0, reference_kl=1e-2), steps=2, lr=1e-3)
    assert demo.before.shape == demo.after.shape == demo.targets.shape == (4, 4, 16, 16)
    assert torch.all(demo.before[:, 3] == 1)  # the untrained conversion is opaque
    assert any("perceptual skipped" in n for n in demo.notes) and "loss/reference_kl" in demo.history[0]
    assert show_finetune(demo) is not None and not demo.stopped
    assert set(demo.scores()) == {"alpha_error_before", "alpha_error", "colour_error", "reconstruction"}
    panel = loss_weights_panel(rgb, _images(size=16), steps=2)
    assert "VBox(" not in repr(panel)  # a stored notebook shows a note, not the widget's repr
    button = next(w for w in _walk(panel) if getattr(w, "description", None) == "Fine-tune")
    button.click()  # runs in a thread: the kernel stays free to hear Stop
    panel.thread.join(120)
    assert "2 steps in" in panel.status.value and panel.bar.value == 2
    out = panel.children[-1]
    assert [o["output_type"] for o in out.outputs] == ["display_data"] and "image/png" in out.outputs[0]["data"]


def test_panel_defaults_are_the_papers_weights():
    panel = loss_weights_panel(_rgb(), _images(size=16), steps=2, lpips_model=torch.nn.Identity())
    paper = LossWeights()
    for name in ("reconstruction", "reconstruction_loss", "perceptual", "prior_kl", "reference_kl", "adversarial",
                 "disc_start", "blend_p"):
        assert panel.controls[name].value == pytest.approx(getattr(paper, name)), name


def test_stop_ends_the_fine_tune_after_the_current_step():
    calls = []
    demo = finetune_demo(_rgb(), _images(size=16), LossWeights(adversarial=0), steps=10, lr=1e-3,
                         progress=lambda step, logs: calls.append(step), should_stop=lambda: len(calls) >= 3)
    assert demo.stopped and len(demo.history) == 3 and calls == [0, 1, 2]
    assert demo.after.shape == demo.targets.shape  # the model so far is still reconstructed and drawn
    assert any("3 steps (stopped)" in a.get_title(loc="left") for a in show_finetune(demo).axes)
