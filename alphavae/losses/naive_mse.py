"""Naive 4-channel MSE: the baseline the paper replaces with ABMSE.

    L = Σ_pixels Σ_{R,G,B,α} (x̃ − x̂̃)²  / batch size        (in [-1, 1], method.md §3 reduction)

It treats alpha as a fourth colour and, unlike ABMSE, pays for colour hidden under α = 0, which no
composite ever shows. Default weight 1 (it takes the reconstruction term's place).
"""

from __future__ import annotations

import torch

#: Weight when it is used as the reconstruction term.
DEFAULT_WEIGHT = 1.0


def naive_mse_map(pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Per-pixel squared error ``(B, H, W)`` summed over the four channels; inputs ``(B, 4, H, W)`` in [-1, 1]."""
    if pred.shape != target.shape:
        raise ValueError(f"pred and target shapes differ: {tuple(pred.shape)} vs {tuple(target.shape)}")
    return (pred - target).square().sum(dim=-3)


def naive_mse_loss(pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Summed over all elements, divided by the batch size."""
    return naive_mse_map(pred, target).sum() / pred.shape[0]
