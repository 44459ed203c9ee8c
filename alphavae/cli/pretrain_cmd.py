"""``alphavae pretrain``: pretrain the project's small SD-family RGB VAE (the ``embedded`` model) on photos.

A thin layer over :func:`alphavae.vae.pretrain.train`; every option is a field of
:class:`alphavae.vae.pretrain.PretrainConfig` (its defaults are the recipe's).
"""

from __future__ import annotations

import argparse
from dataclasses import fields
from pathlib import Path

from alphavae.cli import CLIError

EPILOG = """examples:
  alphavae pretrain --photos $ALPHAVAE_SHARED_DATA/rgb-photos --output runs/pretrain --steps 4000
  alphavae pretrain --photos $ALPHAVAE_SHARED_DATA/rgb-photos --output runs/pretrain --resume
  alphavae pretrain --photos DIR/rgb-corpus --output runs/rgb --latent-channels 16 --lpips-net alex --adversarial-weight 0.5 --disc-start 3000
LPIPS-VGG (the perceptual term, on by default) needs `alphavae weights fetch` once; --lpips-weight 0 turns it off.
The PatchGAN term is off unless --adversarial-weight > 0; it starts at --disc-start. scripts/gpu_pretrain_rgb.sh is the GPU run."""

_INTS = ("steps", "batch_size", "crop", "warmup", "layers_per_block", "latent_channels", "norm_num_groups", "seed",
         "log_every", "checkpoint_every", "keep_checkpoints", "disc_start")
_FLOATS = ("lr", "weight_decay", "kl_weight", "lpips_weight", "adversarial_weight")


def register(subparsers) -> None:
    """Add the ``pretrain`` parser."""
    from alphavae.vae.pretrain_config import PretrainConfig

    defaults = PretrainConfig(photos="", output="")
    p = subparsers.add_parser("pretrain", help="Pretrain the small RGB VAE (the `embedded` model) on a folder of photos.",
                              epilog=EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--photos", required=True, type=Path, help="folder (any depth) of RGB images, e.g. rgb-corpus; every 6th group of related images is held out")
    p.add_argument("--output", required=True, type=Path, help="run folder: checkpoints/, log.jsonl, embedded-vae/")
    p.add_argument("--resume", action="store_true", help="continue from the newest checkpoint in --output")
    for name in _INTS:
        p.add_argument(f"--{name.replace('_', '-')}", type=int, default=getattr(defaults, name))
    for name in _FLOATS:
        p.add_argument(f"--{name.replace('_', '-')}", type=float, default=getattr(defaults, name))
    p.add_argument("--lr-schedule", default=defaults.lr_schedule, help="diffusers schedule name (default cosine)")
    p.add_argument("--lpips-net", choices=("alex", "vgg"), default=defaults.lpips_net, help="LPIPS backbone of the perceptual term")
    p.add_argument("--block-out-channels", type=int, nargs="+", default=list(defaults.block_out_channels))
    p.add_argument("--scales", type=float, nargs="+", default=list(defaults.scales))
    p.add_argument("--no-colour-augment", dest="colour_augment", action="store_false",
                   help="train on the photos' own colours only (no channel permutation / inversion)")
    p.add_argument("--max-minutes", type=float, default=None, help="stop (with a checkpoint) after this long")
    p.add_argument("--device", choices=("auto", "cpu", "cuda"), default="auto", help="where to train (auto: cuda if present)")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    """Check the inputs, train, say where the model went."""
    import torch

    from alphavae.vae.pretrain import PretrainConfig, train

    if not args.photos.is_dir():
        raise CLIError(f"--photos {args.photos}: not a folder")
    if args.device == "cuda" and not torch.cuda.is_available():
        raise CLIError("--device cuda: no CUDA GPU is available here (use --device auto or cpu)")
    for name in ("steps", "batch_size", "crop", "log_every", "checkpoint_every", "keep_checkpoints"):
        if getattr(args, name) < 1:
            raise CLIError(f"--{name.replace('_', '-')} must be >= 1, got {getattr(args, name)}")
    known = {f.name for f in fields(PretrainConfig)}
    values = {k: v for k, v in vars(args).items() if k in known}
    config = PretrainConfig(**{**values, "photos": str(args.photos), "output": str(args.output),
                               "block_out_channels": tuple(args.block_out_channels), "scales": tuple(args.scales)})
    print(f"saved {train(config, resume=args.resume)}")
    return 0
