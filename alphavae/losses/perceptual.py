"""Perceptual term: LPIPS between composites of the reconstruction and the target (method.md §3, weight 0.5).

    L = ½ · [ LPIPS(A(x̂, black), A(x, black)) + LPIPS(A(x̂, white), A(x, white)) ]

averaged over the batch (LPIPS gives one number per image, so "sum over elements / batch size" is the mean).
Under the paper's reductions that term is tiny: the reconstruction term is summed over 4·H·W elements (10³–10⁴
per image at 256 px), LPIPS is one number below 1, so it steers about 10⁻⁵ of the loss (docs/method.md §3.8).
``reduction="per_pixel"`` is the variant that gives it a real share, as taming's ``LPIPSWithDiscriminator``
(behind SD's VAE) does: the LPIPS value is added to every element of the 3·H·W composite before the sum, i.e.
multiplied by 3·H·W.
The background pair is a parameter: true black and white by default (:data:`BLACK_WHITE`), or
:data:`PUBLISHED_GREY_WHITE`, what the published code computes (its "black" is mid-grey). The LPIPS network
comes from :func:`alphavae.metric.backbones.load_lpips` (ImageNet weights from ``alphavae weights fetch``); the
trainers refuse a positive weight without them — a random backbone is never used as a training loss.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from alphavae.losses.compositing import BLACK_WHITE, PUBLISHED_GREY_WHITE, composite_vae

__all__ = ["DEFAULT_WEIGHT", "BLACK_WHITE", "PUBLISHED_GREY_WHITE", "REDUCTIONS", "perceptual_loss"]

#: The paper's weight for the perceptual term.
DEFAULT_WEIGHT = 0.5
#: How LPIPS enters the sum: "image_mean" (the paper: one number per image) or "per_pixel" (taming's).
REDUCTIONS = ("image_mean", "per_pixel")


def perceptual_loss(pred: torch.Tensor, target: torch.Tensor, lpips_model: nn.Module,
                    backgrounds: Sequence[Sequence[float]] = BLACK_WHITE, reduction: str = "image_mean") -> torch.Tensor:
    """Mean over ``backgrounds`` (RGB in [0, 1]) of the batch-mean LPIPS between composites (``"image_mean"``), or
    of LPIPS added to each of the composite's 3·H·W elements before the sum (``"per_pixel"``).

    ``pred``, ``target``: RGBA ``(B, 4, H, W)`` in [-1, 1]; the composites are in [-1, 1], LPIPS' own range.
    """
    if not backgrounds:
        raise ValueError("perceptual_loss needs at least one background")
    if reduction not in REDUCTIONS:
        raise ValueError(f"reduction={reduction!r}: choose from {REDUCTIONS}")
    composites = [(composite_vae(pred, b), composite_vae(target, b)) for b in backgrounds]
    preds, targets = (torch.cat(c) for c in zip(*composites))  # one LPIPS call for every background
    total = lpips_model(preds, targets).sum() / pred.shape[0]
    scale = 3 * pred.shape[-2] * pred.shape[-1] if reduction == "per_pixel" else 1
    return scale * total / len(backgrounds)
