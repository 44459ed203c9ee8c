"""Degradations, the shared plotting helpers and the notebook-01 blending widget (small images, CPU, fast)."""

from __future__ import annotations

import base64

import math

import matplotlib

matplotlib.use("Agg")  # these tests only check figure structure

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402
import torch  # noqa: E402

from alphavae.metric import degradations as D  # noqa: E402
from alphavae.notebook import blending_panel as widgets, plotting  # noqa: E402
from alphavae.blending import BACKGROUNDS, composite  # noqa: E402


@pytest.fixture(autouse=True)
def _close_figures():
    yield
    plt.close("all")


def _image(size: int = 32, seed: int = 0) -> torch.Tensor:
    """A soft blob of random colour; bright red hidden under α = 0."""
    g = torch.Generator().manual_seed(seed)
    yy, xx = torch.meshgrid(torch.linspace(-1, 1, size), torch.linspace(-1, 1, size), indexing="ij")
    alpha = ((0.8 - torch.hypot(yy, xx)) * 4).clamp(0, 1)
    colour = torch.rand(3, size, size, generator=g)
    colour = torch.where(alpha == 0, torch.tensor([1.0, 0, 0]).view(3, 1, 1), colour)
    return torch.cat([colour, alpha[None]])


def _composites(x: torch.Tensor) -> torch.Tensor:
    return torch.stack([composite(x, rgb) for rgb in BACKGROUNDS.values()])


@pytest.mark.parametrize("kind", D.DEGRADATIONS)
def test_zero_strength_is_identity(kind):
    x = _image()
    assert torch.equal(D.degrade(x, kind, 0.0), x)
    y = D.degrade(x, kind, 0.7)
    assert y.shape == x.shape and 0 <= y.min() and y.max() <= 1


def test_degrade_rejects_bad_arguments():
    with pytest.raises(ValueError, match="unknown degradation"):
        D.degrade(_image(), "smudge")
    with pytest.raises(ValueError, match="strength"):
        D.degrade(_image(), "blur", 1.5)


def test_blur_keeps_alpha_mass_and_hides_hidden_colour():
    x = _image(48)
    y = D.blur(x, 1.5)
    assert y[3].sum().item() == pytest.approx(x[3].sum().item(), rel=0.01)  # blob far from the border
    soft = (y[3] > 0.02) & (x[3] == 0)  # pixels made visible by the blur
    assert soft.any()
    reference = D.blur(torch.cat([torch.where(x[3:] == 0, 0.0, x[:3]), x[3:]]), 1.5)
    torch.testing.assert_close(y[:3][:, soft], reference[:3][:, soft])  # hidden red has no influence


def test_jpeg_high_quality_is_close_and_batched():
    x = _image()
    ramp = torch.linspace(0, 1, 32)
    x[:3] = torch.stack([ramp.view(1, -1).expand(32, 32), ramp.view(-1, 1).expand(32, 32), torch.full((32, 32), 0.3)])
    errors = [(D.jpeg(x, q) - x).abs().mean().item() for q in (100, 50, 5)]
    assert errors[0] < 0.01 and errors[0] < errors[1] < errors[2]
    batch = torch.stack([x, _image(seed=1)])
    torch.testing.assert_close(D.jpeg(batch, 50)[0], D.jpeg(x, 50))


def test_noise_is_seeded():
    x = torch.full((4, 64, 64), 0.5)
    torch.testing.assert_close(D.noise(x, 0.05, seed=3), D.noise(x, 0.05, seed=3))
    assert not torch.equal(D.noise(x, 0.05, seed=3), D.noise(x, 0.05, seed=4))
    assert (D.noise(x, 0.05) - x).std().item() == pytest.approx(0.05, rel=0.1)


def test_harden_alpha():
    y = D.harden_alpha(_image(), 1.0)
    assert set(y[3].unique().tolist()) <= {0.0, 1.0}
    torch.testing.assert_close(D.harden_alpha(_image(), 0.5)[3], (_image()[3] + (_image()[3] >= 0.5).float()) / 2)


def test_repaint_hidden_is_invisible():
    x = _image()
    y = D.repaint_hidden(x, (0.0, 1.0, 0.0))
    assert not torch.equal(x, y)  # the stored RGBA changed ...
    torch.testing.assert_close(_composites(y), _composites(x), rtol=0, atol=0)  # ... no composite did


def test_scale_alpha():
    x = _image()
    y = D.scale_alpha(x, 2.0)
    torch.testing.assert_close(y[3], (x[3] * 2).clamp(0, 1))
    assert torch.equal(y[:3], x[:3])


@pytest.mark.parametrize("name", ["white", "black", "gray", "magenta"])
def test_camouflaged_alpha_error_is_exact_on_one_background_only(name):
    x = _image()
    y = D.camouflaged_alpha_error(x, BACKGROUNDS[name], 0.5)
    assert (y[3] >= x[3]).all() and (y[3] > x[3]).any() and 0 <= y.min() and y.max() <= 1
    # independent check of the composite over the chosen background, in numpy float64
    b = np.array(BACKGROUNDS[name]).reshape(3, 1, 1)
    xa, ya = x.double().numpy(), y.double().numpy()
    np.testing.assert_allclose(ya[:3] * ya[3] + b * (1 - ya[3]), xa[:3] * xa[3] + b * (1 - xa[3]), atol=1e-6)
    other = "black" if name != "black" else "white"
    ob = np.array(BACKGROUNDS[other]).reshape(3, 1, 1)
    assert np.abs((ya[:3] * ya[3] + ob * (1 - ya[3])) - (xa[:3] * xa[3] + ob * (1 - xa[3]))).max() > 0.1


def test_blend_and_score_matches_an_independent_psnr():
    x = _image(48)
    result = widgets.blend_and_score(x, alpha_scale=0.8, background="yellow", degradation="noise", strength=0.4)
    pred = D.scale_alpha(D.noise(x, 0.04, seed=0), 0.8).double().numpy()
    b = np.array(BACKGROUNDS["yellow"]).reshape(3, 1, 1)
    xa = x.double().numpy()
    mse = np.mean((pred[:3] * pred[3] + b * (1 - pred[3]) - (xa[:3] * xa[3] + b * (1 - xa[3]))) ** 2)
    assert result.scores["psnr"] == pytest.approx(10 * math.log10(1 / mse), abs=0.01)
    assert result.scores["mean_psnr"] == pytest.approx(np.mean([v["psnr"] for v in result.report.backgrounds.values()]))
    assert set(result.scores) == {"psnr", "ssim", "mean_psnr", "mean_ssim", "alpha_psnr", "sad", "grad"}
    assert "over yellow" in widgets.describe(result)


def test_blend_and_score_identity_and_hidden_colour_are_perfect():
    for kind in ("none", "hidden_colour"):
        result = widgets.blend_and_score(_image(), degradation=kind, strength=1.0)
        assert math.isinf(result.scores["psnr"]) and result.scores["ssim"] == pytest.approx(1.0)
        assert "∞ dB" in widgets.describe(result)
    with pytest.raises(ValueError, match="background"):
        widgets.blend_and_score(_image(), background="purple")


def test_show_blend_draws_four_panels():
    fig = widgets.show_blend(widgets.blend_and_score(_image()))
    assert len(fig.axes) == 5 and "PSNR" in fig._suptitle.get_text()  # four panels and the error map's colour bar
    assert fig.axes[-1].get_label() == "<colorbar>" and fig.axes[-1].get_ylabel()
    assert fig.get_figwidth() * fig.dpi >= 500 and fig.dpi >= 110


def test_widget_wires_every_control(monkeypatch):
    calls = []
    real = widgets.blend_and_score

    def spy(*args, **kwargs):
        calls.append(args)
        return real(*args, **kwargs)

    monkeypatch.setattr(widgets, "blend_and_score", spy)
    images = [_image(seed=i) for i in range(2)]
    box = widgets.blending_widget(images, names=["a", "b"])
    assert len(calls) == 1  # the first drawing, with the defaults
    out = box.children[-1]
    assert [o["output_type"] for o in out.outputs] == ["display_data"]  # drawn into the widget, no frontend needed
    first = out.outputs[0]["data"]["image/png"]
    assert base64.b64decode(first).startswith(b"\x89PNG")
    controls = [c for row in box.children[:-1] for c in row.children]
    assert all(getattr(c, "continuous_update", False) is False for c in controls if hasattr(c, "continuous_update"))
    by_name = {c.description: c for c in controls}
    by_name["image"].value = 1
    by_name["alpha scale"].value = 0.5
    by_name["background"].value = "cyan"
    by_name["degradation"].value = "jpeg"
    by_name["strength"].value = 0.25
    assert len(calls) == 6
    assert len(out.outputs) == 1 and out.outputs[0]["data"]["image/png"] != first  # replaced, not appended
    target, alpha_scale, background, kind, strength = calls[-1]
    assert torch.equal(target, images[1]) and (alpha_scale, background, kind, strength) == (0.5, "cyan", "jpeg", 0.25)


def test_plotting_helpers():
    x = _image()
    assert len(plotting.show_rgba([x, x[:3], x], titles=["a", "b", "c"], ncols=2).axes) == 4
    assert len(plotting.show_rgba(x, background="white").axes) == 1
    fig = plotting.show_backgrounds(torch.stack([x, x]), row_titles=["one", "two"])
    assert len(fig.axes) == 2 * 10
    assert [a.get_title() for a in fig.axes[:10]] == ["checkerboard", *BACKGROUNDS]
    assert len(plotting.show_channels(x).axes) == 4
    torch.testing.assert_close(plotting.displayable(x, "black"), x[:3] * x[3:])
    with pytest.raises(ValueError, match="shape"):
        plotting.displayable(x[:2])
    fig = plotting.metric_bars({"blur": {"gray": 30.0, "black": math.inf, "white": None}})
    assert [t.get_text() for t in fig.axes[0].get_xticklabels()] == ["gray", "black", "white"]
    assert len(plotting.metric_bars({"a": {"gray": 1.0}, "b": {"gray": 2.0}}).axes[0].patches) == 2
    assert plotting.to_numpy_image(x[3:]).shape == (32, 32)


def test_loss_plot_smooths_with_a_running_mean_over_the_raw_values():
    from alphavae.notebook.training_plots import plot_loss_terms

    log = [{"step": 10 * i, "loss/reconstruction": float(v)} for i, v in enumerate([4, 2, 6, 2, 4, 8])]
    raw, mean = plot_loss_terms(log, smooth=3).axes[0].lines
    assert list(raw.get_ydata()) == [4, 2, 6, 2, 4, 8] and raw.get_alpha() < 1
    assert list(mean.get_xdata()) == [20, 30, 40, 50] and np.allclose(mean.get_ydata(), [4, 10 / 3, 4, 14 / 3])
    assert len(plot_loss_terms(log).axes[0].lines) == 1  # no smoothing: the values alone
    schedule = [{"step": e["step"], "lr": e["loss/reconstruction"]} for e in log]
    assert len(plot_loss_terms(schedule, smooth=3).axes[0].lines) == 1  # a schedule is drawn as logged
    plt.close("all")
