"""Perceptual term: LPIPS between composites of the reconstruction and the target (method.md §3, weight 0.5).

    L = ½ · [ LPIPS(A(x̂, black), A(x, black)) + LPIPS(A(x̂, white), A(x, white)) ]

averaged over the batch (LPIPS gives one number per image, so "sum over elements / batch size" is the mean).
The background pair is a parameter: true black and white by default (:data:`BLACK_WHITE`), or
:data:`PUBLISHED_GREY_WHITE`, what the published code computes (its "black" is mid-grey). The LPIPS network
comes from :func:`alphavae.metric.lpips_model.load_lpips`, which needs real AlexNet weights; without them the
objective skips this term and says so — a random backbone is never used as a training loss.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from alphavae.losses.compositing import BLACK_WHITE, PUBLISHED_GREY_WHITE, composite_vae

__all__ = ["DEFAULT_WEIGHT", "BLACK_WHITE", "PUBLISHED_GREY_WHITE", "perceptual_loss"]

#: The paper's weight for the perceptual term.
DEFAULT_WEIGHT = 0.5


def perceptual_loss(pred: torch.Tensor, target: torch.Tensor, lpips_model: nn.Module,
                    backgrounds: Sequence[Sequence[float]] = BLACK_WHITE) -> torch.Tensor:
    """Mean over ``backgrounds`` (RGB in [0, 1]) of the batch-mean LPIPS between composites.

    ``pred``, ``target``: RGBA ``(B, 4, H, W)`` in [-1, 1]; the composites are in [-1, 1], LPIPS' own range.
    """
    if not backgrounds:
        raise ValueError("perceptual_loss needs at least one background")
    total = pred.new_zeros(())
    for b in backgrounds:
        d = lpips_model(composite_vae(pred, b), composite_vae(target, b))
        total = total + d.sum() / pred.shape[0]
    return total / len(backgrounds)
