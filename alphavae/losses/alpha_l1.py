"""An L1 term on alpha alone: not in the paper; the decoder fine-tune for generation uses it (method.md §3.9).

    L_α = Σ_pixels |α̃ − α̂̃|  / batch size        (in [-1, 1], method.md §3 reduction)

ABMSE sees alpha only through composites, as a squared error weighted by how far the colour is from the
backgrounds' moments: a small alpha error (a haze of α ≈ 0.02 over a transparent area, an opaque interior at 0.97)
costs almost nothing, and a decoder trained on it alone leaves such pixels soft (benchmarks/NOTES.md, stop 23:
"Where the remaining soft alpha lies"). An absolute error pays for every alpha error in proportion, small ones
included, and its optimum under uncertainty is the median, not the mean: crisp rather than hazy alpha when the
decoder cannot tell (a generator's latents are a little off). Default weight 0: the paper's objective.
"""

from __future__ import annotations

import torch

#: Default weight: off (the paper's objective has no such term).
DEFAULT_WEIGHT = 0.0


def alpha_l1_loss(pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Σ |α̂ − α| over pixels (the alpha channel of ``(B, 4, H, W)`` in [-1, 1]), divided by the batch size."""
    if pred.shape != target.shape:
        raise ValueError(f"pred and target shapes differ: {tuple(pred.shape)} vs {tuple(target.shape)}")
    return (pred[:, 3] - target[:, 3]).abs().sum() / pred.shape[0]
