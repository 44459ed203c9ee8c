"""The ``alphavae`` command line (contract: ``docs/cli.md``): a thin layer over the package.

Each command lives in its own module with ``register(subparsers)``, which adds its parser and sets
``func``. Bad input ends with one line naming the file or argument and exit status 2; a folder command
that met some unreadable images finishes the rest and returns 1.
"""

from __future__ import annotations

import argparse
import importlib
import math
import sys
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import torch

from alphavae.training.loop import RunLocked

#: Command modules, in the order ``--help`` lists them.
COMMANDS = ("eval", "reconstruct", "convert", "train", "generate", "pretrain", "generator", "weights", "data")

#: What ``--device`` accepts, in every command that has it (cli.md); ``auto`` is CUDA when present.
DEVICES = ("auto", "cpu", "cuda")


class CLIError(Exception):
    """Bad input: the message names the file or argument. Exit status 2."""


class _Parser(argparse.ArgumentParser):
    """argparse, but a usage error is one line (no usage dump), still exit status 2."""

    def error(self, message: str) -> None:  # type: ignore[override]
        self.exit(2, f"{self.prog}: error: {message}\n")


def add_device_option(parser: argparse.ArgumentParser) -> None:
    """Add ``--device auto|cpu|cuda`` (default auto); anything else is a one-line usage error naming ``--device``."""
    parser.add_argument("--device", choices=DEVICES, default="auto", help="where to compute (auto: cuda if present)")


def resolve_device(choice: str) -> torch.device:
    """``--device`` → a ``torch.device``; ``cuda`` where no CUDA device is available is a :class:`CLIError`."""
    import torch

    if choice == "cuda" and not torch.cuda.is_available():
        raise CLIError("--device cuda: no CUDA device is available (use --device auto or cpu)")
    return torch.device("cuda" if choice == "cuda" or (choice == "auto" and torch.cuda.is_available()) else "cpu")


def check_size(size: int | None, minimum: int) -> None:
    """``--size`` must be at least ``minimum`` and, squared, within the pixel budget every image reader has
    (:func:`alphavae.imageio.max_pixels`): a huge ``--size`` would otherwise build the image a bomb would."""
    from alphavae.imageio import MAX_PIXELS_ENV, max_pixels

    if size is None:
        return
    largest = math.isqrt(max_pixels())
    if not minimum <= size <= largest:
        raise CLIError(f"--size {size}: must be in {minimum}..{largest} (the long side, in pixels; "
                       f"the upper bound is the ${MAX_PIXELS_ENV} pixel budget)")


def build_parser() -> argparse.ArgumentParser:
    """The top-level parser with one sub-parser per command module."""
    parser = _Parser(prog="alphavae", description="AlphaVAE: RGBA VAEs, the ALPHA metric and transparent generation.")
    sub = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)
    for name in COMMANDS:
        importlib.import_module(f"alphavae.cli.{name}_cmd").register(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Entry point of the ``alphavae`` script; returns the exit status."""
    args = build_parser().parse_args(argv)
    try:
        return int(args.func(args) or 0)
    except (CLIError, RunLocked, FileNotFoundError, NotADirectoryError, ValueError, OSError) as exc:
        print(f"alphavae {args.command}: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"alphavae {args.command}: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
