"""The optimiser and learning-rate schedule every trainer uses: AdamW, and one warm-up + decay schedule.

One function each, so the RGBA trainer, RGB pretraining and the generator cannot drift apart: AdamW (fused
kernels on a GPU), and diffusers' ``get_scheduler`` by name (``cosine``: linear warm-up, then half a cosine
to 0, as the paper trains; ``constant_with_warmup``, ``linear``, … for experiments).
"""

from __future__ import annotations

from collections.abc import Iterable

import torch
from diffusers.optimization import get_scheduler

#: The paper's AdamW betas for the RGBA fine-tune (docs/method.md §3.7).
PAPER_BETAS = (0.5, 0.9)


def adamw(params: Iterable[torch.nn.Parameter], lr: float, betas: tuple[float, float] = (0.9, 0.999),
          weight_decay: float = 0.01) -> torch.optim.AdamW:
    """AdamW over ``params``; the fused implementation when they are on a GPU."""
    params = list(params)
    fused = bool(params) and all(p.is_cuda for p in params)
    return torch.optim.AdamW(params, lr=lr, betas=tuple(betas), weight_decay=weight_decay, fused=fused or None)


def lr_schedule(optimizer: torch.optim.Optimizer, name: str, warmup_steps: int, steps: int):
    """The named schedule (diffusers' ``get_scheduler``) over ``steps`` steps after ``warmup_steps`` of warm-up."""
    return get_scheduler(name, optimizer, num_warmup_steps=warmup_steps, num_training_steps=steps)
