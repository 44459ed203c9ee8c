"""``alphavae data fetch``: rebuild the RGBA training set ``rgba-train`` from Debian's ``openclipart-png``.

A thin layer over :func:`alphavae.training.openclipart.fetch_rgba_train`: exactly the 1,342 images the shipped
manifest lists (the rest of the package is reserved for evaluation), idempotent, checked against the manifest.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from alphavae.cli import CLIError

EPILOG = """examples:
  alphavae data fetch --dir ~/alphavae-data && export ALPHAVAE_SHARED_DATA=~/alphavae-data
  alphavae data fetch --dir DIR --deb openclipart-png_1%3a0.18+dfsg-19_all.deb   # no download
  alphavae data fetch --dir DIR --package-dir ROOT   # ROOT/usr/share/openclipart/png, as dpkg-deb -x made it"""


def register(subparsers) -> None:
    """Add ``data fetch``."""
    p = subparsers.add_parser("data", help="Rebuild the RGBA training set rgba-train from Debian's openclipart-png.")
    sub = p.add_subparsers(dest="data_command", required=True, parser_class=type(p))
    f = sub.add_parser("fetch", help="Download openclipart-png (about 130 MB) and convert the 1,342 images of rgba-train.",
                       epilog=EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
    f.add_argument("--dir", type=Path, required=True, metavar="DIR", help="writes DIR/rgba-train; then export ALPHAVAE_SHARED_DATA=DIR")
    source = f.add_mutually_exclusive_group()
    source.add_argument("--deb", type=Path, metavar="FILE", help="an already downloaded openclipart-png .deb (no download)")
    source.add_argument("--package-dir", type=Path, metavar="DIR", help="an already extracted package (no download)")
    f.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    """Fetch, convert and check; a failure is one line naming the option or file."""
    from alphavae.training.openclipart import FetchError, fetch_rgba_train

    if args.dir.exists() and not args.dir.is_dir():
        raise CLIError(f"--dir {args.dir}: not a folder")
    if args.deb is not None and not args.deb.is_file():
        raise CLIError(f"--deb {args.deb}: no such file")
    if args.package_dir is not None and not args.package_dir.is_dir():
        raise CLIError(f"--package-dir {args.package_dir}: not a folder")
    try:
        result = fetch_rgba_train(args.dir, deb=args.deb, package_dir=args.package_dir, log=lambda line: print(line, flush=True))
    except FetchError as exc:
        raise CLIError(str(exc)) from exc
    print(f"{result.folder}: {result.written + result.kept} images ({result.written} written, {result.kept} already there); "
          f"export ALPHAVAE_SHARED_DATA={args.dir}")
    return 0
