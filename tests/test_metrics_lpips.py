"""LPIPS loading: the real-weights path (plumbing only, with a locally saved RANDOM AlexNet state dict — never
a reported number) and the unavailable path, which must give None plus a note, never a random backbone."""

from __future__ import annotations

import pytest
import torch
import torchvision

from alphavae.metric import lpips_model as perceptual
from alphavae.metric.alpha import alpha_metric
from alphavae.metric.lpips_model import LPIPSUnavailable, load_lpips, lpips_unavailable_reason


@pytest.fixture
def no_weights_anywhere(monkeypatch, tmp_path):
    """Point every place the loader searches at empty folders."""
    monkeypatch.delenv("ALPHAVAE_LPIPS_WEIGHTS", raising=False)
    monkeypatch.setattr(perceptual, "_hub_checkpoints_dir", lambda: tmp_path / "hub")
    monkeypatch.setattr(perceptual, "_shared_weights_dir", lambda: tmp_path / "shared")


@pytest.fixture
def plumbing_random_alexnet(tmp_path):
    """A torchvision AlexNet state dict with RANDOM weights, saved to a file: tests the loading plumbing only."""
    torch.manual_seed(0)
    model = torchvision.models.alexnet(weights=None)
    path = tmp_path / "plumbing-random-alexnet.pth"
    torch.save(model.state_dict(), path)
    return path, model


def test_unavailable_gives_a_one_line_reason_and_null_lpips(no_weights_anywhere):
    reason = lpips_unavailable_reason()
    assert reason and "\n" not in reason and "alexnet-owt-7be5be79.pth" in reason
    with pytest.raises(LPIPSUnavailable):
        load_lpips()
    x = torch.rand(1, 4, 32, 32)
    report = alpha_metric(x, x.clone(), backgrounds=["gray"])
    assert report.mean["lpips"] is None and report.backgrounds["gray"]["lpips"] is None
    assert any(n.startswith("lpips unavailable") for n in report.notes)


def test_an_explicit_missing_or_wrong_file_is_named(tmp_path, no_weights_anywhere):
    with pytest.raises(LPIPSUnavailable, match="nope.pth"):
        load_lpips(weights=tmp_path / "nope.pth")
    wrong = tmp_path / "wrong.pth"
    torch.save({"features.0.weight": torch.zeros(3)}, wrong)
    with pytest.raises(LPIPSUnavailable, match="wrong.pth"):
        load_lpips(weights=wrong)


def test_plumbing_backbone_weights_are_loaded_from_file_or_env(plumbing_random_alexnet, monkeypatch, no_weights_anywhere):
    path, reference = plumbing_random_alexnet
    model = load_lpips(weights=path)
    assert torch.equal(model.net.slice1._modules["0"].weight, reference.features[0].weight)
    assert torch.equal(model.net.slice5._modules["10"].bias, reference.features[10].bias)
    assert not any(p.requires_grad for p in model.parameters()) and not model.training
    monkeypatch.setenv("ALPHAVAE_LPIPS_WEIGHTS", str(path.parent))
    monkeypatch.setattr(perceptual, "TORCHVISION_FILES", {**perceptual.TORCHVISION_FILES, "alex": path.name})
    assert lpips_unavailable_reason() is None
    assert torch.equal(load_lpips().net.slice3._modules["6"].weight, reference.features[6].weight)


def test_plumbing_lpips_in_the_metric(plumbing_random_alexnet):
    model = load_lpips(weights=plumbing_random_alexnet[0])
    g = torch.Generator().manual_seed(0)
    target = torch.rand(2, 4, 64, 64, generator=g)
    pred = (target + 0.1 * torch.randn(target.shape, generator=g)).clamp(0, 1)
    same = alpha_metric(target, target.clone(), metrics=("lpips",), lpips_model=model, backgrounds=["white"])
    assert same.mean["lpips"] == pytest.approx(0.0, abs=1e-6)
    report = alpha_metric(pred, target, metrics=("lpips",), lpips_model=model, masked=True, backgrounds=["white", "black"])
    over_black = [x[:, :3] * x[:, 3:] for x in (pred, target)]  # c·α + 0·(1 − α)
    direct = model(over_black[0] * 2 - 1, over_black[1] * 2 - 1).flatten()
    assert report.backgrounds["black"]["lpips"] == pytest.approx(float(direct.mean()), rel=1e-4)
    assert report.masked["backgrounds"]["white"]["lpips"] > 0
