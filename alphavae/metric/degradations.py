"""Controlled damage to an RGBA image: stand-in "predictions" to see what the ALPHA metric rewards and punishes.

Each function takes straight-alpha RGBA ``(..., 4, H, W)`` in [0, 1] and returns a new tensor of the same
shape. :func:`degrade` maps one ``strength`` in [0, 1] to each kind's parameter, for sliders.
Two of them are built to teach a point: :func:`repaint_hidden` changes only colour under α = 0 (invisible,
so every composite and every ALPHA score is unchanged), and :func:`camouflaged_alpha_error` changes alpha
and colour together so that the composite over *one* background is exactly the target's (that background
alone would call it perfect; the others do not).
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
from torchvision.transforms.v2.functional import gaussian_blur

from alphavae.blending import background_tensor, premultiply, unpremultiply
from alphavae.metric.alpha import jpeg_roundtrip

#: The kinds :func:`degrade` knows, in the order a widget lists them.
DEGRADATIONS = ("none", "blur", "jpeg", "noise", "hard_alpha", "hidden_colour")
#: The noise degradation's standard deviation at strength 1.
NOISE_STD = 0.1


def _batched(fn):
    """Let a function written for ``(N, 4, H, W)`` also take a single ``(4, H, W)`` image."""

    def wrapper(rgba: torch.Tensor, *args, **kwargs) -> torch.Tensor:
        if rgba.dim() == 3:
            return fn(rgba[None], *args, **kwargs)[0]
        return fn(rgba, *args, **kwargs)

    wrapper.__name__, wrapper.__doc__ = fn.__name__, fn.__doc__
    return wrapper


@_batched
def blur(rgba: torch.Tensor, sigma: float) -> torch.Tensor:
    """Gaussian blur of colour and alpha with standard deviation ``sigma`` pixels, in premultiplied space
    (so hidden colour does not bleed in)."""
    if sigma <= 0:
        return rgba.clone()
    size = 2 * math.ceil(3 * sigma) + 1
    return unpremultiply(gaussian_blur(premultiply(rgba), [size, size], [sigma, sigma]).clamp(0, 1))


@_batched
def jpeg(rgba: torch.Tensor, quality: int) -> torch.Tensor:
    """Store colour and alpha each as a JPEG of ``quality`` (1–100) and read them back (8-bit)."""
    colour = jpeg_roundtrip(rgba[:, :3], quality)
    alpha = jpeg_roundtrip(rgba[:, 3:4].expand(-1, 3, -1, -1), quality).mean(1, keepdim=True)
    return torch.cat([colour, alpha], dim=1)


@_batched
def noise(rgba: torch.Tensor, std: float, seed: int = 0) -> torch.Tensor:
    """Add Gaussian noise of standard deviation ``std`` to all four channels (seeded), clamped to [0, 1]."""
    generator = torch.Generator().manual_seed(seed)
    return (rgba + std * torch.randn(rgba.shape, generator=generator).to(rgba)).clamp(0, 1)


def harden_alpha(rgba: torch.Tensor, amount: float) -> torch.Tensor:
    """Move alpha toward a hard 0/1 cut-out (``amount`` 1: α rounded at ½): soft edges and shadows lost."""
    alpha = rgba[..., 3:4, :, :]
    hard = (alpha >= 0.5).to(alpha)
    return torch.cat([rgba[..., :3, :, :], alpha + amount * (hard - alpha)], dim=-3)


def repaint_hidden(rgba: torch.Tensor, colour: Sequence[float] = (1.0, 0.0, 1.0), amount: float = 1.0) -> torch.Tensor:
    """Blend the colour *under α = 0* toward ``colour``: invisible, so composites are unchanged (a naive
    per-channel RGBA error still counts it)."""
    hidden = rgba[..., 3:4, :, :] == 0
    target = background_tensor(colour, rgba)
    painted = rgba[..., :3, :, :] + amount * (target - rgba[..., :3, :, :])
    return torch.cat([torch.where(hidden, painted, rgba[..., :3, :, :]), rgba[..., 3:4, :, :]], dim=-3)


def scale_alpha(rgba: torch.Tensor, factor: float) -> torch.Tensor:
    """Multiply alpha by ``factor`` (clamped to [0, 1]); colour untouched."""
    return torch.cat([rgba[..., :3, :, :], (rgba[..., 3:4, :, :] * factor).clamp(0, 1)], dim=-3)


def camouflaged_alpha_error(rgba: torch.Tensor, background: Sequence[float], amount: float = 0.5) -> torch.Tensor:
    """A wrong prediction that is *exact* over ``background`` b: alpha raised on visible pixels,
    α' = α + amount·(1 − α), and colour chosen so that c'·α' + b·(1 − α') = c·α + b·(1 − α), i.e.
    c' = b + (α/α')·(c − b) — a mix of c and b, so it stays in [0, 1]. Over any other background it is off.
    """
    colour, alpha = rgba[..., :3, :, :], rgba[..., 3:4, :, :]
    b = background_tensor(background, rgba)
    visible = alpha > 0
    new_alpha = torch.where(visible, alpha + amount * (1 - alpha), alpha)
    ratio = torch.where(visible, alpha / new_alpha.clamp_min(1e-12), torch.ones_like(alpha))
    new_colour = torch.where(visible, b + ratio * (colour - b), colour)
    return torch.cat([new_colour.clamp(0, 1), new_alpha], dim=-3)


def degrade(rgba: torch.Tensor, kind: str = "blur", strength: float = 0.5, seed: int = 0) -> torch.Tensor:
    """Apply one :data:`DEGRADATIONS` kind at ``strength`` in [0, 1] (0 leaves the image unchanged):
    blur σ = 3·strength px; JPEG quality 100 − 95·strength; noise std :data:`NOISE_STD`·strength; hard_alpha and
    hidden_colour blend by strength."""
    if kind not in DEGRADATIONS:
        raise ValueError(f"unknown degradation {kind!r}; choose from {list(DEGRADATIONS)}")
    if not 0 <= strength <= 1:
        raise ValueError(f"strength must be in [0, 1], got {strength}")
    if kind == "none" or strength == 0:
        return rgba.clone()
    if kind == "blur":
        return blur(rgba, 3 * strength)
    if kind == "jpeg":
        return jpeg(rgba, round(100 - 95 * strength))
    if kind == "noise":
        return noise(rgba, NOISE_STD * strength, seed)
    if kind == "hard_alpha":
        return harden_alpha(rgba, strength)
    return repaint_hidden(rgba, amount=strength)
