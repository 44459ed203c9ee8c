"""Blend augmentation: with probability p an RGBA training image is replaced by its opaque composite over a
random solid colour from {0, ½, 1}³ (α = 1), so the RGBA VAE stays a good RGB VAE (method.md §3.6, p = 0.3).
"""

from __future__ import annotations

import itertools

import torch

from alphavae.blending import composite

#: The paper's probability of replacing an image by an opaque composite.
BLEND_P = 0.3
#: The 27 solid colours {0, ½, 1}³, RGB in [0, 1].
GRID_COLOURS = torch.tensor(list(itertools.product((0.0, 0.5, 1.0), repeat=3)))


def blend_augment(x01: torch.Tensor, p: float = BLEND_P, generator: torch.Generator | None = None,
                  colours: torch.Tensor = GRID_COLOURS) -> torch.Tensor:
    """A copy of the batch ``(B, 4, H, W)`` in [0, 1] where each image, independently with probability ``p``,
    becomes [A(x, b); α = 1] for a colour b drawn uniformly from ``colours``. ``generator`` (CPU) makes the
    draws reproducible.
    """
    if not 0.0 <= p <= 1.0:
        raise ValueError(f"blend probability p={p} must be in [0, 1]")
    n = x01.shape[0]
    chosen = (torch.rand(n, generator=generator) < p).to(x01.device)
    picks = torch.randint(len(colours), (n,), generator=generator)
    b = colours[picks].to(x01).view(n, 3, 1, 1)
    blended = torch.cat([composite(x01, b), torch.ones_like(x01[:, 3:4])], dim=1)
    return torch.where(chosen.view(n, 1, 1, 1), blended, x01)
