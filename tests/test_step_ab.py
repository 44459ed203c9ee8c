"""The broadcast upsampling of benchmarks/step_ab.py's ``upsample`` arm computes what ``interpolate`` does."""

import sys
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
from step_ab import ARMS, upsample_nearest2x  # noqa: E402


@pytest.mark.parametrize("layout", [torch.contiguous_format, torch.channels_last])
def test_broadcast_upsampling_matches_interpolate_forward_and_backward(layout):
    x = torch.randn(2, 3, 5, 7, dtype=torch.float64).to(memory_format=layout).requires_grad_()
    ours = upsample_nearest2x(x)
    theirs = F.interpolate(x, scale_factor=2.0, mode="nearest")
    assert torch.equal(ours, theirs)
    assert ours.is_contiguous(memory_format=layout)
    g = torch.randn_like(theirs)
    (ours_grad,) = torch.autograd.grad(ours, x, g)
    (theirs_grad,) = torch.autograd.grad(theirs, x, g)
    torch.testing.assert_close(ours_grad, theirs_grad, rtol=0, atol=1e-12)


def test_upsample_arm_reaches_diffusers_decoder(monkeypatch):
    import step_ab
    from diffusers.models import upsampling
    from diffusers.models.upsampling import Upsample2D
    calls = []
    monkeypatch.setattr(step_ab, "upsample_nearest2x", lambda x: calls.append(x.shape) or upsample_nearest2x(x))
    monkeypatch.setattr(upsampling, "F", upsampling.F)  # restored after the test
    ARMS["upsample"]()
    x = torch.randn(1, 4, 3, 3)
    assert torch.equal(Upsample2D(4, use_conv=False)(x), F.interpolate(x, scale_factor=2.0, mode="nearest"))
    assert calls == [torch.Size([1, 4, 3, 3])]
