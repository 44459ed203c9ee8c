"""Pretraining the project's own small RGB VAE (the ``embedded`` model) on real photos.

AlphaVAE starts from a *pretrained* RGB VAE. Hub VAEs cannot be reached offline, so the project makes its
own, of Stable Diffusion's family: a diffusers ``AutoencoderKL`` with 4 resolution levels (3 downsamplings,
factor 8), 4 latent channels, a diagonal-Gaussian (KL) posterior, GroupNorm ResNet blocks, a mid-block with
attention and the quant convs, only narrower. The recipe is SD's: reconstruction L1 + LPIPS (only when real
backbone weights exist, else skipped and said so) + a small KL to N(0, I), each summed over its elements
and divided by the batch size; AdamW with warm-up and cosine decay, bf16 autocast on a GPU, a fixed seed,
checkpoint/resume. Training images are random crops at several scales of the photos in a folder; a few
photos are held out for evaluation (:func:`split_photos`). The latent ``scaling_factor`` is 1 / std of the
latents over training crops, as SD computes it, and is stored in the saved config.

Run ``python -m alphavae.vae.pretrain --help``; the exact command behind the shipped weights is in
``data/models/embedded-vae/MODEL_CARD.md``. Quality is measured by :mod:`alphavae.vae_quality`.
"""

from __future__ import annotations

import argparse
import json
import math
import random
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import torch
import torch.nn.functional as F
from diffusers import AutoencoderKL
from safetensors.torch import save_file
from tqdm.auto import tqdm

from alphavae.blending import to_vae_range
from alphavae.imageio import list_images, load_rgba
from alphavae.vae.loading import torch_device

#: Every ``HELDOUT_EVERY``-th photo (sorted by path, counting from 1) is held out for evaluation.
HELDOUT_EVERY = 6


@dataclass
class PretrainConfig:
    """Everything that defines a pretraining run (saved with every checkpoint and in the model card)."""

    photos: str
    output: str
    steps: int = 4000
    batch_size: int = 32
    crop: int = 128
    scales: tuple[float, ...] = (1.0, 0.7, 0.5, 0.35, 0.25)
    colour_augment: bool = True
    lr: float = 8e-4
    warmup: int = 300
    weight_decay: float = 0.01
    kl_weight: float = 1e-6
    lpips_weight: float = 1.0
    block_out_channels: tuple[int, ...] = (32, 64, 128, 128)
    layers_per_block: int = 1
    latent_channels: int = 4
    norm_num_groups: int = 8
    seed: int = 0
    checkpoint_every: int = 500
    max_minutes: float | None = None
    device: str = "auto"
    notes: list[str] = field(default_factory=list)


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


def load_perceptual(weight: float, device: torch.device):
    """LPIPS (AlexNet) with real backbone weights, or ``(None, reason)`` when the term must be skipped."""
    if weight <= 0:
        return None, "LPIPS term off (weight 0)"
    from alphavae.metric.lpips_model import LPIPSUnavailable, load_lpips

    try:
        return load_lpips("alex", device=device), None
    except LPIPSUnavailable as exc:
        return None, f"LPIPS term skipped: {exc}"


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


def lr_lambda(step: int, warmup: int, total: int) -> float:
    """Linear warm-up then cosine decay to 10% of the peak learning rate."""
    if step < warmup:
        return (step + 1) / warmup
    progress = min(1.0, (step - warmup) / max(1, total - warmup))
    return 0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * progress))


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
    save_file(weights, folder / "diffusion_pytorch_model.safetensors", metadata={"format": "pt"})
    return folder


def _checkpoint_path(config: PretrainConfig) -> Path:
    return Path(config.output) / "checkpoint.pt"


def save_checkpoint(config: PretrainConfig, vae, optimizer, scheduler, step: int, generator: torch.Generator) -> Path:
    """Everything needed to resume exactly: weights, optimiser, schedule, step, the sampler's RNG state."""
    path = _checkpoint_path(config)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    torch.save(
        {
            "config": asdict(config),
            "step": step,
            "model": vae.state_dict(),
            "optimizer": optimizer.state_dict(),
            "scheduler": scheduler.state_dict(),
            "generator": generator.get_state(),
            "torch_rng": torch.get_rng_state(),
            "cuda_rng": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
        },
        tmp,
    )
    tmp.replace(path)
    return path


def train(config: PretrainConfig, resume: bool = False) -> Path:
    """Run (or resume) pretraining; returns the folder of the final fp16 model (``OUTPUT/embedded-vae``)."""
    device = torch_device(config.device)
    random.seed(config.seed)
    torch.manual_seed(config.seed)
    generator = torch.Generator().manual_seed(config.seed)

    train_files, held_out = split_photos(list_images(config.photos))
    crops = PhotoCrops(train_files, config.crop, tuple(config.scales), device, config.colour_augment)
    vae = build_vae(config).to(device).train()
    optimizer = torch.optim.AdamW(vae.parameters(), lr=config.lr, betas=(0.9, 0.999), weight_decay=config.weight_decay)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda s: lr_lambda(s, config.warmup, config.steps))
    lpips_model, lpips_note = load_perceptual(config.lpips_weight, device)
    config.notes = [f"held-out photos: {', '.join(p.name for p in held_out) or 'none'}"] + ([lpips_note] if lpips_note else [])

    step = 0
    if resume and _checkpoint_path(config).is_file():
        state = torch.load(_checkpoint_path(config), map_location=device, weights_only=False)
        vae.load_state_dict(state["model"])
        optimizer.load_state_dict(state["optimizer"])
        scheduler.load_state_dict(state["scheduler"])
        generator.set_state(state["generator"])
        torch.set_rng_state(state["torch_rng"])
        if state["cuda_rng"] and torch.cuda.is_available():
            torch.cuda.set_rng_state_all(state["cuda_rng"])
        step = state["step"]
        print(f"resumed from {_checkpoint_path(config)} at step {step}")
    for note in config.notes:
        print(note)

    autocast = torch.autocast("cuda", dtype=torch.bfloat16, enabled=device.type == "cuda")
    start = time.monotonic()
    logs: dict[str, float] = {}
    progress = tqdm(total=config.steps, initial=step, desc="pretrain", dynamic_ncols=True)
    while step < config.steps:
        batch = crops.sample(config.batch_size, generator)
        with autocast:
            loss, logs = vae_loss(vae, batch, config, lpips_model)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        scheduler.step()
        step += 1
        progress.update(1)
        if step % 50 == 0:
            progress.set_postfix(l1=f"{logs['l1_per_px']:.4f}", kl=f"{logs['kl']:.0f}")
        out_of_time = config.max_minutes is not None and time.monotonic() - start > 60 * config.max_minutes
        if step % config.checkpoint_every == 0 or step == config.steps or out_of_time:
            save_checkpoint(config, vae, optimizer, scheduler, step, generator)
        if out_of_time and step < config.steps:
            progress.close()
            print(f"stopped after {config.max_minutes} min at step {step}; continue with --resume")
            return _checkpoint_path(config)
    progress.close()

    vae.eval()
    crops.colour_augment = False  # the latent statistics of the photos as they are
    scale = latent_scaling_factor(vae, crops, n_batches=16, batch_size=32, generator=torch.Generator().manual_seed(config.seed + 1))
    vae.register_to_config(scaling_factor=scale, shift_factor=None)
    final = save_fp16(vae, Path(config.output) / "embedded-vae")
    summary = {"config": asdict(config), "steps_done": step, "scaling_factor": scale, "final_logs": logs,
               "minutes_this_run": (time.monotonic() - start) / 60}
    (Path(config.output) / "pretrain_summary.json").write_text(json.dumps(summary, indent=2))
    print(json.dumps({k: summary[k] for k in ("steps_done", "scaling_factor", "final_logs")}))
    return final


def _parser() -> argparse.ArgumentParser:
    defaults = PretrainConfig(photos="", output="")
    parser = argparse.ArgumentParser(
        prog="python -m alphavae.vae.pretrain",
        description="Pretrain the small SD-family RGB VAE (the `embedded` model) on a folder of photos.",
        epilog="example: python -m alphavae.vae.pretrain --photos ../shared/data/rgb-photos --output runs/pretrain --steps 4000",
    )
    parser.add_argument("--photos", required=True, help="folder of RGB photos (every 6th, sorted, is held out)")
    parser.add_argument("--output", required=True, help="folder for checkpoint.pt, the summary and embedded-vae/")
    parser.add_argument("--resume", action="store_true", help="continue from OUTPUT/checkpoint.pt if it exists")
    for name in ("steps", "batch_size", "crop", "warmup", "layers_per_block", "latent_channels", "norm_num_groups", "seed", "checkpoint_every"):
        parser.add_argument(f"--{name.replace('_', '-')}", type=int, default=getattr(defaults, name))
    for name in ("lr", "weight_decay", "kl_weight", "lpips_weight"):
        parser.add_argument(f"--{name.replace('_', '-')}", type=float, default=getattr(defaults, name))
    parser.add_argument("--block-out-channels", type=int, nargs="+", default=list(defaults.block_out_channels))
    parser.add_argument("--scales", type=float, nargs="+", default=list(defaults.scales))
    parser.add_argument("--no-colour-augment", dest="colour_augment", action="store_false",
                        help="train on the photos' own colours only (no channel permutation / inversion)")
    parser.add_argument("--max-minutes", type=float, default=None, help="stop (with a checkpoint) after this long")
    parser.add_argument("--device", default="auto", help="auto | cpu | cuda")
    return parser


def main(argv: list[str] | None = None) -> int:
    """Command-line entry: parse, train, print where the model went."""
    args = vars(_parser().parse_args(argv))
    resume = args.pop("resume")
    if not Path(args["photos"]).is_dir():
        print(f"--photos {args['photos']}: not a folder", file=sys.stderr)
        return 2
    config = PretrainConfig(**{**args, "block_out_channels": tuple(args["block_out_channels"]), "scales": tuple(args["scales"])})
    print(f"saved {train(config, resume=resume)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
