"""``alphavae eval``: the ALPHA metric over two folders of RGBA images paired by name.

A thin layer over :func:`alphavae.metric.folders.evaluate_folders`: prints the table, writes the JSON of the
contract (cli.md) atomically, reports unreadable images by name and exits 1 if there were any.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import torch

from alphavae.cli import CLIError, add_device_option, check_size, resolve_device

EPILOG = """examples:
  alphavae eval --pred runs/recon --target data/rgba-sample
  alphavae eval --pred runs/recon --target data/rgba-sample --metrics psnr,ssim --backgrounds black,white --json eval.json
  alphavae eval --pred runs/recon --target data/rgba-sample --masked --jpeg-quality 75   # the paper's JPEG variant
LPIPS (AlexNet v0.1 by default, --lpips-net vgg on request) needs the ImageNet backbones: `alphavae weights fetch` once."""


def _csv(text: str) -> list[str]:
    return [part.strip() for part in text.split(",") if part.strip()]


def register(subparsers) -> None:
    """Add the ``eval`` parser."""
    p = subparsers.add_parser("eval", help="Score RGBA predictions against targets with the ALPHA metric (9 backgrounds).",
                              epilog=EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--pred", required=True, type=Path, help="folder of predicted images")
    p.add_argument("--target", required=True, type=Path, help="folder of target images (paired by relative path stem)")
    p.add_argument("--metrics", type=_csv, default=["psnr", "ssim", "lpips"], help="comma list of psnr,ssim,lpips")
    p.add_argument("--backgrounds", type=_csv, default=None,
                   help="comma list of gray,black,white,red,green,blue,yellow,cyan,magenta (default all 9)")
    p.add_argument("--size", type=int, help="resize both images so the long side is N (premultiplied; N >= 1)")
    p.add_argument("--json", type=Path, help="write the report as JSON here")
    p.add_argument("--masked", action="store_true", help="also report every metric over pixels where target alpha > 0")
    p.add_argument("--ssim-mode", choices=("luma", "rgb"), default="luma", help="SSIM on BT.601 luma (paper) or per RGB channel")
    p.add_argument("--jpeg-quality", type=int, help="round-trip composites through JPEG (the published pipeline uses 75)")
    p.add_argument("--lpips-net", choices=("alex", "vgg"), default="alex", help="LPIPS backbone (alex: the paper's, as pyiqa's lpips)")
    p.add_argument("--lpips-weights", type=Path, help="folder of the converted backbones (default: the cache `alphavae weights fetch` fills)")
    add_device_option(p)
    p.add_argument("--batch-size", type=int, default=16, help="images per batch (each batch is scored over all backgrounds at once)")
    p.set_defaults(func=run)


def _check_names(flag: str, given: list[str], valid) -> None:
    """At least one name, each one of ``valid``; otherwise a :class:`CLIError` naming ``flag``."""
    unknown = [name for name in given if name not in valid]
    if unknown or not given:
        shown = ",".join(unknown) if unknown else "no names given"
        raise CLIError(f"{flag} {shown}: choose one or more of {','.join(valid)}, comma-separated")


def _lpips_model(args: argparse.Namespace, device: torch.device):
    """LPIPS from an explicit --lpips-weights folder (failing there is an error); else None, and the metric
    loads it from the cache or reports it unavailable with the reason."""
    from alphavae.metric.backbones import lpips_or_reason

    if "lpips" not in args.metrics or args.lpips_weights is None:
        return None
    model, reason = lpips_or_reason(args.lpips_net, device, args.lpips_weights)
    if model is None:
        raise CLIError(f"--lpips-weights {args.lpips_weights}: {reason}")
    return model


def run(args: argparse.Namespace) -> int:
    """Evaluate, print the table, write the JSON; exit 1 if some images were unreadable."""
    from alphavae.blending import BACKGROUNDS
    from alphavae.metric.folders import evaluate_folders
    from alphavae.imageio import atomic_write
    from alphavae.metric.alpha import METRICS

    _check_names("--metrics", args.metrics, METRICS)
    if args.backgrounds is not None:
        _check_names("--backgrounds", args.backgrounds, BACKGROUNDS)
    check_size(args.size, 1)
    if args.batch_size < 1:
        raise CLIError(f"--batch-size must be >= 1, got {args.batch_size}")
    if args.jpeg_quality is not None and not 1 <= args.jpeg_quality <= 100:
        raise CLIError(f"--jpeg-quality must be in 1..100, got {args.jpeg_quality}")
    for flag, folder in (("--pred", args.pred), ("--target", args.target)):
        if not folder.is_dir():
            raise CLIError(f"{flag} {folder}: not a folder")
    device = resolve_device(args.device)
    result = evaluate_folders(
        args.pred, args.target, size=args.size, device=device, batch_size=args.batch_size,
        metrics=tuple(args.metrics), backgrounds=args.backgrounds, ssim_mode=args.ssim_mode, masked=args.masked,
        jpeg_quality=args.jpeg_quality, lpips_model=_lpips_model(args, device), lpips_net=args.lpips_net,
    )
    print(result.report.table())
    for name, reason in result.bad_files.items():
        print(f"alphavae eval: skipped {name}: {reason}", file=sys.stderr)
    if args.json is not None:
        data = result.report.to_dict()
        data["skipped"] = result.bad_files
        text = json.dumps(data, indent=2, allow_nan=False)
        atomic_write(args.json, lambda tmp: Path(tmp).write_text(text + "\n"))
        print(f"wrote {args.json}")
    return 1 if result.bad_files else 0
