"""The optimiser, learning-rate schedule and weight average every trainer uses: AdamW, one warm-up + decay
schedule, and the EMA's state after a resume.

One function each, so the RGBA trainer, RGB pretraining and the generator cannot drift apart: AdamW (fused
kernels on a GPU), and diffusers' ``get_scheduler`` by name (``cosine``: linear warm-up, then half a cosine
to 0, as the paper trains; ``constant_with_warmup``, ``linear``, … for experiments).

A step recorded as a CUDA graph (:mod:`alphavae.training.graphs`) needs a *capturable* AdamW: its step count
and learning rate live on the GPU, so replaying the graph reads the rate the schedule last wrote (the
schedule fills the tensor in place) instead of the number that was current when the graph was recorded.
"""

from __future__ import annotations

from collections.abc import Iterable

import torch
from diffusers.optimization import get_scheduler
from diffusers.training_utils import EMAModel

#: The paper's AdamW betas for the RGBA fine-tune (docs/method.md §3.7).
PAPER_BETAS = (0.5, 0.9)


def adamw(params: Iterable[torch.nn.Parameter], lr: float, betas: tuple[float, float] = (0.9, 0.999),
          weight_decay: float = 0.01, capturable: bool = False) -> torch.optim.AdamW:
    """AdamW over ``params``; the fused implementation when they are on a GPU; ``capturable``: safe to record
    in a CUDA graph (its rate becomes a tensor when :func:`lr_schedule` attaches the schedule)."""
    params = list(params)
    fused = bool(params) and all(p.is_cuda for p in params)
    return torch.optim.AdamW(params, lr=lr, betas=tuple(betas), weight_decay=weight_decay, fused=fused or None,
                             capturable=capturable)


def settle_groups(optimizer: torch.optim.Optimizer, capturable: bool, scheduler=None) -> None:
    """Put ``optimizer``'s groups (and ``scheduler``'s rates) in the form the step needs, after building or loading.

    ``load_state_dict`` takes every hyperparameter from the saved state, so a checkpoint written by a graphed run
    (rate tensors) resumes an eager one and back only after this: capturable → the rate a 0-dim tensor on the
    parameters' device and ``capturable`` on; otherwise plain numbers and ``capturable`` off. And each parameter's
    moments take its memory layout: a checkpoint stores them contiguous, a compiled network's parameters are
    channels_last, and CUDA's fused AdamW refuses the mix ("params, grads, exp_avgs, and exp_avg_sqs must have same
    … layout", the first step of every resumed GPU run, found on an H100). Values are unchanged.
    """
    for param, state in optimizer.state.items():
        for key, value in state.items():
            if torch.is_tensor(value) and value.shape == param.shape and value.stride() != param.stride():
                state[key] = torch.empty_like(param, dtype=value.dtype).copy_(value)
    for group in optimizer.param_groups:
        device = group["params"][0].device if group["params"] else torch.device("cpu")
        for key in ("lr", "initial_lr"):
            if key not in group:
                continue
            value = float(group[key])
            group[key] = torch.tensor(value, device=device) if capturable and key == "lr" else value
        group["capturable"] = capturable
    if scheduler is not None:
        scheduler.base_lrs = [float(lr) for lr in scheduler.base_lrs]
        scheduler._last_lr = [float(lr) for lr in scheduler.get_last_lr()]


def settle_ema(ema: EMAModel, parameters: Iterable[torch.nn.Parameter]) -> None:
    """After ``ema.load_state_dict``: each shadow weight on its parameter's device, with its dtype and layout.

    diffusers' ``EMAModel`` keeps the checkpoint's tensors as loaded (on the CPU, contiguous), so the first step
    of a resumed GPU run would subtract a GPU parameter from a CPU shadow. Values are unchanged."""
    ema.shadow_params = [torch.empty_like(p).copy_(s) for s, p in zip(ema.shadow_params, parameters, strict=True)]


def lr_schedule(optimizer: torch.optim.Optimizer, name: str, warmup_steps: int, steps: int):
    """The named schedule (diffusers' ``get_scheduler``) over ``steps`` steps after ``warmup_steps`` of warm-up.

    Its base rates are plain numbers even for a capturable optimiser: from rate tensors the schedule would compute
    each step's rate on the GPU and read it back to the host (a synchronisation per step) to fill the rate tensor.
    """
    scheduler = get_scheduler(name, optimizer, num_warmup_steps=warmup_steps, num_training_steps=steps)
    settle_groups(optimizer, bool(optimizer.defaults.get("capturable")), scheduler)
    return scheduler

