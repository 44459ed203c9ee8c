"""Pretraining the project's own small RGB VAE (the ``embedded`` model) on real photos.

AlphaVAE starts from a *pretrained* RGB VAE. Hub VAEs cannot be reached offline, so the project makes its
own, of Stable Diffusion's family: a diffusers ``AutoencoderKL`` with 4 resolution levels (3 downsamplings,
factor 8), 4 latent channels, a diagonal-Gaussian (KL) posterior, GroupNorm ResNet blocks, a mid-block with
attention and the quant convs, only narrower. The recipe is SD's: reconstruction L1 + LPIPS (only when real
weights, fetched by ``alphavae weights fetch``; a positive weight without them is an error) + a small KL to
N(0, I), each summed over its elements and divided by the batch size; AdamW with warm-up and cosine decay, bf16
autocast on a GPU, a fixed seed, and the checkpoints, loop and lock every trainer shares (exact resume). Training images are random crops at several scales of the photos in a folder; a few
photos are held out for evaluation (:func:`split_photos`). The latent ``scaling_factor`` is 1 / std of the
latents over training crops, as SD computes it, and is stored in the saved config.

Run ``alphavae pretrain --help``; the exact command behind the shipped weights is in
``data/models/embedded-vae/MODEL_CARD.md``. Quality is measured by ``benchmarks/embedded_vae_quality.py``.
"""

from __future__ import annotations

import json
import random
import time
from dataclasses import asdict
from pathlib import Path

import torch
import torch.nn.functional as F
from diffusers import AutoencoderKL
from safetensors.torch import save

from alphavae.blending import to_vae_range
from alphavae.imageio import list_images, load_rgba
from alphavae.metric.backbones import lpips_or_reason
from alphavae.training.checkpoint import (
    latest_checkpoint,
    load_checkpoint,
    rng_state,
    save_checkpoint,
    set_rng_state,
)
from alphavae.training.loop import LoopPlan, RunLog, run_lock, run_steps
from alphavae.training.optim import adamw, lr_schedule
from alphavae.vae.loading import torch_device
from alphavae.vae.pretrain_config import PretrainConfig

#: Every ``HELDOUT_EVERY``-th photo (sorted by path, counting from 1) is held out for evaluation.
HELDOUT_EVERY = 6


def build_vae(config: PretrainConfig) -> AutoencoderKL:
    """A fresh SD-family ``AutoencoderKL`` (RGB in and out), sized by ``config``."""
    levels = len(config.block_out_channels)
    return AutoencoderKL(
        in_channels=3,
        out_channels=3,
        down_block_types=("DownEncoderBlock2D",) * levels,
        up_block_types=("UpDecoderBlock2D",) * levels,
        block_out_channels=tuple(config.block_out_channels),
        layers_per_block=config.layers_per_block,
        latent_channels=config.latent_channels,
        norm_num_groups=config.norm_num_groups,
        sample_size=256,
    )


def split_photos(files: list[Path], every: int = HELDOUT_EVERY) -> tuple[list[Path], list[Path]]:
    """Sorted files → (training, held-out): every ``every``-th file is held out, so the split is stable."""
    files = sorted(files)
    held = [f for i, f in enumerate(files, start=1) if i % every == 0]
    return [f for f in files if f not in held], held


def load_photo(path: Path) -> torch.Tensor:
    """A photo as RGB ``(3, H, W)`` in [0, 1] (any alpha is dropped: these are opaque photos)."""
    return load_rgba(path)[:3]


class PhotoCrops:
    """Random square crops at several scales from a few photos kept whole in memory (on ``device``).

    Each photo is resized once per scale (antialiased bicubic); a crop is a random window of one scaled copy,
    flipped left-right half the time. With ``colour_augment`` the colour channels are also randomly permuted
    and, with probability 0.2, inverted: a handful of photos then cover far more colours (a VAE must encode
    any colour, and the RGBA composites it will see are often saturated). Sampling is driven by
    ``generator`` so a resumed run continues exactly.
    """

    def __init__(self, files: list[Path], crop: int, scales: tuple[float, ...], device: torch.device, colour_augment: bool = False):
        if not files:
            raise ValueError("no training photos")
        self.crop, self.colour_augment = crop, colour_augment
        self.levels: list[torch.Tensor] = []
        for path in files:
            photo = load_photo(path)[None]
            for s in scales:
                h, w = round(photo.shape[-2] * s), round(photo.shape[-1] * s)
                if min(h, w) >= crop:
                    scaled = F.interpolate(photo, size=(h, w), mode="bicubic", antialias=True, align_corners=False)
                    self.levels.append(scaled.clamp(0, 1)[0].to(device))
        if not self.levels:
            raise ValueError(f"every photo is smaller than the crop size {crop} at every scale")

    def sample(self, batch_size: int, generator: torch.Generator) -> torch.Tensor:
        """A batch ``(B, 3, crop, crop)`` in [0, 1]."""
        which = torch.randint(len(self.levels), (batch_size,), generator=generator).tolist()
        corner = torch.rand(batch_size, 2, generator=generator).tolist()
        flip = (torch.rand(batch_size, generator=generator) < 0.5).tolist()
        perms = torch.rand(batch_size, 3, generator=generator).argsort(1)
        invert = torch.rand(batch_size, generator=generator) < 0.2
        crops = []
        for i, (u, v) in zip(which, corner):
            image = self.levels[i]
            top = int(u * (image.shape[-2] - self.crop + 1))
            left = int(v * (image.shape[-1] - self.crop + 1))
            crops.append(image[:, top : top + self.crop, left : left + self.crop])
        batch = torch.stack(crops)
        batch = torch.where(torch.tensor(flip, device=batch.device).view(-1, 1, 1, 1), batch.flip(-1), batch)
        if self.colour_augment:
            batch = batch.gather(1, perms.to(batch.device).view(-1, 3, 1, 1).expand_as(batch))
            batch = torch.where(invert.to(batch.device).view(-1, 1, 1, 1), 1 - batch, batch)
        return batch


def load_perceptual(config: PretrainConfig, device: torch.device):
    """LPIPS-``config.lpips_net`` on the fetched ImageNet backbone, or None when its weight is 0.

    A positive weight without the weights is an error naming ``alphavae weights fetch`` (never a random backbone).
    """
    if config.lpips_weight <= 0:
        return None
    model, reason = lpips_or_reason(config.lpips_net, device)
    if model is None:
        raise ValueError(f"--lpips-weight {config.lpips_weight}: {reason}; or pass --lpips-weight 0")
    return model


def vae_loss(vae: AutoencoderKL, x01: torch.Tensor, config: PretrainConfig, lpips_model=None) -> tuple[torch.Tensor, dict[str, float]]:
    """SD's VAE objective on a batch in [0, 1]: (L1 + w·LPIPS) summed per image + kl_weight · KL, over the batch."""
    x = to_vae_range(x01)
    posterior = vae.encode(x).latent_dist
    recon = vae.decode(posterior.sample()).sample
    batch = x.shape[0]
    l1 = (recon.float() - x.float()).abs().sum() / batch
    kl = posterior.kl().float().sum() / batch
    loss = l1 + config.kl_weight * kl
    logs = {"l1_per_px": l1.item() / x[0].numel(), "kl": kl.item()}
    if lpips_model is not None:
        perceptual = lpips_model(recon.float(), x.float()).sum() / batch
        loss = loss + config.lpips_weight * perceptual * x[0].numel()  # SD broadcasts LPIPS over every element
        logs["lpips"] = perceptual.item()
    logs["loss"] = loss.item()
    return loss, logs


@torch.no_grad()
def latent_scaling_factor(vae: AutoencoderKL, crops: PhotoCrops, n_batches: int, batch_size: int, generator: torch.Generator) -> float:
    """1 / std of posterior samples over training crops (Stable Diffusion's ``scale_by_std``)."""
    latents = [vae.encode(to_vae_range(crops.sample(batch_size, generator))).latent_dist.sample().float() for _ in range(n_batches)]
    return float(1.0 / torch.cat(latents).std())


def save_fp16(vae: AutoencoderKL, folder: str | Path) -> Path:
    """Save ``vae`` as fp16 safetensors in diffusers layout (``config.json`` + weights) without touching it."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    vae.save_config(folder)
    weights = {name: t.detach().to("cpu", torch.float16).contiguous() for name, t in vae.state_dict().items()}
    (folder / "diffusion_pytorch_model.safetensors").write_bytes(save(weights, metadata={"format": "pt"}))  # umask mode
    return folder


def train(config: PretrainConfig, resume: bool = False) -> Path:
    """Run (or resume) pretraining; returns the final fp16 model folder (``OUTPUT/embedded-vae``), or the
    checkpoint folder when ``max_minutes`` stopped it first (continue with ``resume=True``)."""
    output = Path(config.output)
    with run_lock(output):
        return _train(config, output, resume)


def _train(config: PretrainConfig, output: Path, resume: bool) -> Path:
    device = torch_device(config.device)
    random.seed(config.seed)
    torch.manual_seed(config.seed)
    generator = torch.Generator().manual_seed(config.seed)

    train_files, held_out = split_photos(list_images(config.photos))
    crops = PhotoCrops(train_files, config.crop, tuple(config.scales), device, config.colour_augment)
    vae = build_vae(config).to(device).train()
    optimizer = adamw(vae.parameters(), config.lr, weight_decay=config.weight_decay)
    scheduler = lr_schedule(optimizer, config.lr_schedule, config.warmup, config.steps)
    lpips_model = load_perceptual(config, device)
    config.notes = [f"held-out photos: {', '.join(p.name for p in held_out) or 'none'}"]

    ckpt_root = output / "checkpoints"
    found = latest_checkpoint(ckpt_root) if resume else None
    step = 0
    if found is not None:
        shared, local = load_checkpoint(found)
        vae.load_state_dict(shared["model"])
        optimizer.load_state_dict(shared["optimizer"])
        scheduler.load_state_dict(shared["scheduler"])
        set_rng_state(local["rng"], {"crops": generator})
        step = int(shared["step"])
        print(f"resumed from {found} at step {step}")
    for note in config.notes:
        print(note)
    log = RunLog(output / "log.jsonl", step if found is not None else None)
    autocast = torch.autocast("cuda", dtype=torch.bfloat16, enabled=device.type == "cuda")
    began = time.monotonic()
    last: dict[str, float] = {}

    def one_step(_: int) -> dict[str, float]:
        with autocast:
            loss, logs = vae_loss(vae, crops.sample(config.batch_size, generator), config, lpips_model)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        scheduler.step()
        return logs

    def write_log(done: int, logs: dict[str, float]) -> str:
        last.update(logs)
        log.write({"step": done, **logs, "lr": scheduler.get_last_lr()[0]})
        return f"l1={logs['l1_per_px']:.4f} kl={logs['kl']:.0f}"

    def checkpoint(done: int) -> None:
        state = lambda: {"step": done, "model": vae.state_dict(), "optimizer": optimizer.state_dict(),
                         "scheduler": scheduler.state_dict(), "config": asdict(config)}
        save_checkpoint(ckpt_root, done, state, {"rng": rng_state({"crops": generator})}, config.keep_checkpoints)

    plan = LoopPlan(config.steps, config.log_every, config.checkpoint_every, max_minutes=config.max_minutes)
    step = run_steps(plan, step, one_step, write_log, checkpoint, "pretrain")
    if step < config.steps:
        print(f"stopped after {config.max_minutes} min at step {step}; continue with --resume")
        return latest_checkpoint(ckpt_root)

    vae.eval()
    crops.colour_augment = False  # the latent statistics of the photos as they are
    scale = latent_scaling_factor(vae, crops, n_batches=16, batch_size=32, generator=torch.Generator().manual_seed(config.seed + 1))
    vae.register_to_config(scaling_factor=scale, shift_factor=None)
    final = save_fp16(vae, output / "embedded-vae")
    summary = {"config": asdict(config), "steps_done": step, "scaling_factor": scale, "final_logs": last,
               "minutes_this_run": (time.monotonic() - began) / 60}
    (output / "pretrain_summary.json").write_text(json.dumps(summary, indent=2))
    print(json.dumps({k: summary[k] for k in ("steps_done", "scaling_factor", "final_logs")}))
    return final
