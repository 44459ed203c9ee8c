"""Blend augmentation: with probability p an RGBA training image is replaced by its opaque composite over a
random solid colour from {0, ½, 1}³ (α = 1), so the RGBA VAE stays a good RGB VAE (method.md §3.6, p = 0.3).
"""

from __future__ import annotations

import itertools

import torch

from alphavae.blending import composite, constant

#: The paper's probability of replacing an image by an opaque composite.
BLEND_P = 0.3
#: The 27 solid colours {0, ½, 1}³, RGB in [0, 1].
GRID_COLOURS = torch.tensor(list(itertools.product((0.0, 0.5, 1.0), repeat=3)))


def blend_choices(n: int, p: float = BLEND_P, generator: torch.Generator | None = None,
                  n_colours: int = len(GRID_COLOURS)) -> tuple[torch.Tensor, torch.Tensor]:
    """The random part of :func:`blend_augment` for ``n`` images: (which are blended ``(n,)`` bool, colour
    index ``(n,)``), drawn on ``generator``'s device. Drawn for a whole global batch and sliced per process,
    they make N processes augment exactly as one does."""
    if not 0.0 <= p <= 1.0:
        raise ValueError(f"blend probability p={p} must be in [0, 1]")
    device = generator.device if generator is not None else None
    chosen = torch.rand(n, generator=generator, device=device) < p
    return chosen, torch.randint(n_colours, (n,), generator=generator, device=device)


def blend_augment(x01: torch.Tensor, p: float = BLEND_P, generator: torch.Generator | None = None,
                  colours: torch.Tensor = GRID_COLOURS,
                  choices: tuple[torch.Tensor, torch.Tensor] | None = None) -> torch.Tensor:
    """A copy of the batch ``(B, 4, H, W)`` in [0, 1] where each image, independently with probability ``p``,
    becomes [A(x, b); α = 1] for a colour b drawn uniformly from ``colours``. ``generator`` makes the draws
    reproducible; ``choices`` (from :func:`blend_choices`) gives them instead.
    """
    n = x01.shape[0]
    chosen, picks = choices if choices is not None else blend_choices(n, p, generator, len(colours))
    palette = constant(colours.tolist(), x01) if colours.device != x01.device else colours.to(x01)
    b = palette[picks.to(x01.device)].view(n, 3, 1, 1)
    blended = torch.cat([composite(x01, b), torch.ones_like(x01[:, 3:4])], dim=1)
    return torch.where(chosen.to(x01.device).view(n, 1, 1, 1), blended, x01)
