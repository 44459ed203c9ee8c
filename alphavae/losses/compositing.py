"""Compositing in the VAE's [-1, 1] range, where every loss term works.

A VAE sees and returns all four channels as x̃ = 2x − 1. Compositing is linear in colour, so the composite
of x̃'s colour over b̃ = 2b − 1 with the *true* alpha α = (α̃ + 1) / 2 is exactly the [-1, 1] image of the
[0, 1] composite A(x, b) = c·α + b·(1 − α). (Multiplying by α̃ itself, or treating 0 as black, is the
published code's mistake: 0 in [-1, 1] is mid-grey.)
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

from alphavae.blending import composite, constant, to_vae_range

#: True black and true white, the default pair for the perceptual and reference-KL terms (method.md §3).
BLACK_WHITE: tuple[tuple[float, float, float], ...] = ((0.0, 0.0, 0.0), (1.0, 1.0, 1.0))
#: What the published code effectively uses: its "black" is 0 in [-1, 1] space, i.e. mid-grey.
PUBLISHED_GREY_WHITE: tuple[tuple[float, float, float], ...] = ((0.5, 0.5, 0.5), (1.0, 1.0, 1.0))


def check_rgba_pair(pred: torch.Tensor, target: torch.Tensor) -> None:
    """Raise ``ValueError`` unless ``pred`` and ``target`` are both RGBA ``(B, 4, H, W)`` of one shape: what the
    terms that composite or premultiply need."""
    if pred.shape != target.shape or pred.shape[-3] != 4:
        raise ValueError(f"pred and target must both be (B, 4, H, W); got {tuple(pred.shape)} and {tuple(target.shape)}")


def alpha01(x: torch.Tensor) -> torch.Tensor:
    """The alpha channel of a ``(..., 4, H, W)`` image in [-1, 1], mapped back to [0, 1] (not clamped)."""
    return (x[..., 3:4, :, :] + 1) / 2


def composite_vae(x: torch.Tensor, background: Sequence[float] | torch.Tensor) -> torch.Tensor:
    """A(x, b) in [-1, 1]: ``x`` is RGBA in [-1, 1], ``background`` an RGB colour in [0, 1].

    ``background`` may also be a tensor broadcastable to ``(..., 3, 1, 1)`` (e.g. ``(N, 1, 3, 1, 1)`` for N
    backgrounds at once, giving ``(N, B, 3, H, W)``).
    """
    b = background.to(x) if isinstance(background, torch.Tensor) else constant(background, x)
    b = to_vae_range(b.view(3, 1, 1) if b.dim() == 1 else b)
    return composite(torch.cat([x[..., :3, :, :], alpha01(x)], dim=-3), b)


def opaque(rgb: torch.Tensor) -> torch.Tensor:
    """An RGB image in [-1, 1] as an RGBA image with α = 1 (alpha channel +1 in [-1, 1])."""
    return torch.cat([rgb, torch.ones_like(rgb[..., :1, :, :])], dim=-3)


#: How close to a bound (in [-1, 1]) a target alpha counts as saturated: half an 8-bit step (the premultiplied
#: resize leaves some opaque pixels at 0.9999999).
SATURATION_TOLERANCE = 1 / 255


def hold_saturated_alpha(pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """``pred`` (RGBA, [-1, 1]) with its alpha held at the bound wherever ``target``'s alpha sits at that bound
    (fully transparent or fully opaque, within :data:`SATURATION_TOLERANCE`) and ``pred``'s overshoots it;
    elsewhere unchanged. Colour is never held.

    Every output is clamped to [0, 1] before anyone sees it, so overshooting a saturated alpha is no error, yet a
    loss on the raw output penalises it as one. A decoder trained that way centres such pixels on the bound, and
    some fall inside and read as soft alpha (measured, benchmarks/NOTES.md "Stop 20": 12 % of the transparent and
    34 % of the opaque pixels of the RGBA VAE shipped until stop 23, trained without it). Held, the overshoot costs
    nothing and gets no gradient, so saturated pixels may settle past the bound and clamp to exact 0 or 1.
    Undershoot, the error the clamp keeps, is penalised as before (``LossWeights.free_alpha_overshoot``, method.md §3.1).
    """
    a, t = pred[..., 3:4, :, :], target[..., 3:4, :, :]
    low, high = t <= SATURATION_TOLERANCE - 1, t >= 1 - SATURATION_TOLERANCE
    held = torch.where(low & (a < -1), -1.0, torch.where(high & (a > 1), 1.0, a))
    return torch.cat([pred[..., :3, :, :], held], dim=-3)
