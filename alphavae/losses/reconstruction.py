"""Alpha-blended reconstruction (ABMSE): the expected composite error over random backgrounds, in closed form.

With P = c·α − ĉ·α̂ (per colour channel) and Δ = α − α̂, the composite error over a background b is
A(x, b) − A(x̂, b) = P − b·Δ, so its expected square over a background distribution is

    E_b ‖A(x, b) − A(x̂, b)‖² = Σ_pixels,channels [ P² − 2·E[b]·P·Δ + E[b²]·Δ² ].

Only the first two moments of the distribution enter, per channel, so one pass costs what an MSE costs and
equals the average over infinitely many sampled backgrounds. Colour where α = α̂ = 0 has no effect (P = Δ = 0
there), unlike in a naive 4-channel MSE. The paper works in [-1, 1] with ImageNet's pixel moments
(:data:`IMAGENET_MOMENTS`, the default); :func:`moments_of` gives the moments of any set of colours.
Reduction (method.md §3): summed over all elements, divided by the batch size. Default weight 1.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch

from alphavae.blending import BACKGROUNDS, constant, to_vae_range
from alphavae.losses.augmentation import GRID_COLOURS
from alphavae.losses.compositing import alpha01, check_rgba_pair, composite_vae

#: The paper's weight for the reconstruction term.
DEFAULT_WEIGHT = 1.0


@dataclass(frozen=True)
class BackgroundMoments:
    """E[b] and E[b²] of a background distribution, per colour channel (R, G, B), in the [-1, 1] range."""

    mean: tuple[float, float, float]
    second: tuple[float, float, float]

    def __post_init__(self) -> None:
        for m, s in zip(self.mean, self.second):
            if s < m * m - 1e-6:
                raise ValueError(f"inconsistent moments: E[b²]={s} < E[b]²={m * m:.6f} (variance cannot be negative)")

    def as_tensors(self, like: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``(E[b], E[b²])`` as ``(3, 1, 1)`` tensors on ``like``'s device and dtype."""
        return constant(self.mean, like).view(3, 1, 1), constant(self.second, like).view(3, 1, 1)


def moments_of(colours: torch.Tensor | Sequence[Sequence[float]], weights: torch.Tensor | Sequence[float] | None = None) -> BackgroundMoments:
    """Moments in [-1, 1] of a distribution over RGB colours given in [0, 1]: a ``(K, 3)`` set of colours
    with probabilities ``weights`` (uniform if None, normalised otherwise), or K samples of any distribution.
    """
    c = to_vae_range(torch.as_tensor(colours, dtype=torch.float64).reshape(-1, 3))
    w = torch.ones(len(c), dtype=torch.float64) if weights is None else torch.as_tensor(weights, dtype=torch.float64).reshape(-1)
    if len(w) != len(c) or bool((w < 0).any()) or float(w.sum()) <= 0:
        raise ValueError(f"weights must be {len(c)} non-negative numbers with a positive sum")
    w = w / w.sum()
    mean = (w[:, None] * c).sum(0)
    second = (w[:, None] * c * c).sum(0)
    return BackgroundMoments(tuple(mean.tolist()), tuple(second.tolist()))


#: ImageNet pixel moments in [-1, 1] (R, G, B), the paper's default background distribution.
IMAGENET_MOMENTS = BackgroundMoments(mean=(-0.0357, -0.0811, -0.1797), second=(0.3163, 0.3060, 0.3634))
#: Uniform over the 27 colours {0, ½, 1}³ (the blend augmentation's colours).
GRID_MOMENTS = moments_of(GRID_COLOURS)
#: Uniform over the 9 canonical backgrounds of the ALPHA metric.
CANONICAL_MOMENTS = moments_of(list(BACKGROUNDS.values()))


def abmse_map(pred: torch.Tensor, target: torch.Tensor, moments: BackgroundMoments = IMAGENET_MOMENTS) -> torch.Tensor:
    """Per-pixel expected squared composite error ``(B, H, W)``, summed over colour channels.

    ``pred`` and ``target`` are RGBA ``(B, 4, H, W)`` in [-1, 1] (the VAE's range).
    """
    check_rgba_pair(pred, target)
    a, a_hat = alpha01(target), alpha01(pred)
    p = target[..., :3, :, :] * a - pred[..., :3, :, :] * a_hat
    d = a - a_hat
    e_b, e_b2 = moments.as_tensors(pred)
    return (p * p - 2 * e_b * p * d + e_b2 * d * d).sum(dim=-3)


def abmse_loss(pred: torch.Tensor, target: torch.Tensor, moments: BackgroundMoments = IMAGENET_MOMENTS) -> torch.Tensor:
    """The ABMSE term: :func:`abmse_map` summed over all elements and divided by the batch size."""
    return abmse_map(pred, target, moments).sum() / pred.shape[0]


def sampled_composite_loss(pred: torch.Tensor, target: torch.Tensor, backgrounds: torch.Tensor,
                           chunk: int = 64) -> torch.Tensor:
    """The Monte-Carlo counterpart of :func:`abmse_loss`: one loss per sampled background.

    ``backgrounds`` is ``(N, 3)`` in [0, 1]; returns ``(N,)``: Σ ‖A(x, b) − A(x̂, b)‖² / batch size for each b,
    compositing explicitly (``chunk`` backgrounds at a time, to bound memory). Their mean converges to
    :func:`abmse_loss` with the backgrounds' moments.
    """
    b = torch.as_tensor(backgrounds, dtype=pred.dtype, device=pred.device).view(-1, 1, 3, 1, 1)
    losses = []
    for part in b.split(chunk):
        err = composite_vae(target, part) - composite_vae(pred, part)
        losses.append(err.square().flatten(1).sum(1) / pred.shape[0])
    return torch.cat(losses)
