"""A minimal fine-tuning loop over a few images held in memory: the objective in action, on a CPU, in seconds.

It is the paper's training step stripped to its bones — blend augmentation, the generator step, AdamW with the
paper's betas (0.5, 0.9), and from ``disc_start`` a discriminator step — with no data loader, schedule,
mixed precision or checkpoints. Notebook 03 calls it to show what each loss weight does; the full trainer
(:mod:`alphavae.training.trainer`, ``alphavae train``) is the one for real runs.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from diffusers import AutoencoderKL

from alphavae.losses import AlphaVAEObjective, blend_augment
from alphavae.training.optim import PAPER_BETAS, adamw


def finetune_steps(vae: AutoencoderKL, images01: torch.Tensor, objective: AlphaVAEObjective, steps: int,
                   lr: float = 1e-4, batch_size: int = 4, seed: int = 0,
                   callback: Callable[[int, dict[str, float]], None] | None = None) -> list[dict[str, float]]:
    """Fine-tune the RGBA ``vae`` in place for ``steps`` steps on ``images01`` ``(N, 4, H, W)`` in [0, 1].

    Each step draws ``batch_size`` images (seeded by ``seed``), applies the blend augmentation with
    ``objective.weights.blend_p`` and takes one AdamW step on the objective's generator loss; from
    ``disc_start`` on, the objective's discriminator (if any) takes one step too. Returns one log dict per
    step (the objective's logs plus ``step``); ``callback(step, logs)`` is called after each. The model is
    left in eval mode with gradients off.
    """
    if images01.dim() != 4 or images01.shape[1] != 4:
        raise ValueError(f"images01 must be (N, 4, H, W) RGBA in [0, 1], got shape {tuple(images01.shape)}")
    if steps < 1 or batch_size < 1:
        raise ValueError(f"steps ({steps}) and batch_size ({batch_size}) must be at least 1")
    device = next(vae.parameters()).device
    images01 = images01.to(device)
    generator = torch.Generator().manual_seed(seed)
    vae.train().requires_grad_(True)
    optimizer = adamw(vae.parameters(), lr, PAPER_BETAS)
    disc = objective.discriminator
    disc_optimizer = adamw(disc.parameters(), lr, PAPER_BETAS) if disc is not None else None
    history: list[dict[str, float]] = []
    try:
        for step in range(steps):
            pick = torch.randint(len(images01), (min(batch_size, len(images01)),), generator=generator)
            x01 = blend_augment(images01[pick.to(device)], objective.weights.blend_p, generator)
            loss, logs, recon = objective.generator_step(vae, x01, step)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            if disc_optimizer is not None and objective.active("adversarial", step):
                d_loss, d_logs = objective.discriminator_step(recon, x01, step)
                disc_optimizer.zero_grad(set_to_none=True)
                d_loss.backward()
                disc_optimizer.step()
                logs.update(d_logs)
            logs["step"] = float(step)
            history.append(logs)
            if callback is not None:
                callback(step, logs)
    finally:
        vae.eval().requires_grad_(False)
    return history
