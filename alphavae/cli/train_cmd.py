"""``alphavae train``: run the RGBA VAE trainer from a JSON config, or the whole ablation.

A thin layer over :func:`alphavae.training.trainer.train` and :func:`alphavae.training.ablation.run_ablation`.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from alphavae.cli import CLIError

EPILOG = """examples:
  alphavae train --config configs/toy.json --output runs/toy
  alphavae train --config configs/toy.json --output runs/toy --resume
  alphavae train --config configs/toy.json --output runs/toy-seed1 --seed 1
  alphavae train --ablation configs/ablation.json --output runs/ablation --results results --jobs 6
  alphavae train --ablation configs/ablation.json --output runs/ablation --jobs 7 --seeds 0 1 2
  alphavae train --ablation configs/ablation.json --output runs/ablation --seeds 1 --variants main no_gan
multi-GPU (same global batch, DDP through accelerate):
  accelerate launch --num_processes 2 -m alphavae train --config configs/main.json --output runs/main"""


def register(subparsers) -> None:
    """Add the ``train`` parser."""
    p = subparsers.add_parser("train", help="Train an RGBA VAE from a pretrained RGB VAE (JSON config), or run the ablation.",
                              epilog=EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
    what = p.add_mutually_exclusive_group(required=True)
    what.add_argument("--config", type=Path, help="training config (JSON, see configs/)")
    what.add_argument("--ablation", type=Path, help="ablation config (JSON): train every variant, then write the table")
    p.add_argument("--output", type=Path, help="run folder (default: runs/<config name>)")
    p.add_argument("--resume", action="store_true", help="continue from the newest checkpoint in --output")
    p.add_argument("--steps", type=int, help="override the config's number of steps")
    p.add_argument("--seed", type=int, help="--config: override the config's seed")
    p.add_argument("--seeds", type=int, nargs="+", metavar="SEED",
                   help="ablation: train every variant once per seed (replaces the ablation config's 'seeds')")
    p.add_argument("--variants", nargs="+", metavar="NAME",
                   help="ablation: only these variants (runs already scored elsewhere are read from their score.json)")
    p.add_argument("--results", type=Path, default=Path("results"), help="ablation: where ablation.md/.json go")
    p.add_argument("--jobs", type=int, default=1, help="ablation: runs (variant, seed) trained at the same time (one process each)")
    p.add_argument("--lpips-net", choices=("alex", "vgg"),
                   help="override the config's LPIPS backbone of the perceptual term (alex where VGG16's weights cannot travel)")
    p.add_argument("--device", choices=("auto", "cpu", "cuda"), default="auto", help="cpu forces the CPU")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    """Train one config, or the ablation."""
    from alphavae.training.config import load_config

    if args.seed is not None and args.ablation is not None:
        raise CLIError("--seed: applies to --config; an ablation takes --seeds (one run per variant and seed)")
    if args.seeds is not None and args.config is not None:
        raise CLIError("--seeds: applies to --ablation; one training run takes --seed")
    if args.variants is not None and args.config is not None:
        raise CLIError("--variants: applies to --ablation; --config is one variant already")
    overrides = {}
    if args.steps is not None:
        overrides["steps"] = args.steps
    if args.seed is not None:
        overrides["seed"] = args.seed
    if args.lpips_net is not None:
        overrides["lpips_net"] = args.lpips_net
    if args.device == "cpu":
        overrides["device"] = "cpu"
    if args.device == "cuda":
        import torch

        if not torch.cuda.is_available():
            raise CLIError("--device cuda: no CUDA GPU is available here (use --device auto or cpu)")
    if args.ablation is not None:
        from alphavae.training.ablation import run_ablation

        output = args.output or Path("runs") / args.ablation.stem
        report = run_ablation(args.ablation, output, args.results, jobs=args.jobs, overrides=overrides, seeds=args.seeds,
                              variants=args.variants)
        print(report)
        return 0
    from alphavae.training.trainer import TrainingDiverged, train

    config = load_config(args.config, **overrides)
    output = args.output or Path("runs") / args.config.stem
    try:
        result = train(config, output, resume=args.resume)
    except TrainingDiverged as exc:
        print(f"alphavae train: stopped: {exc}", file=sys.stderr)
        return 1
    print(f"trained {result.steps} steps; model: {result.model_dir} (fp16 copy: {result.fp16_dir})")
    for note in result.notes:
        print(f"note: {note}")
    return 0
