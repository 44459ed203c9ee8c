"""Rebuild the out-of-domain RGBA evaluation set ``ood-rgba`` from one Debian package no training set uses.

The package is :data:`alphavae.training.debian_sources.OOD_PACKAGE` (``hedgewars-data``: the sprites, theme
objects and map art of the Hedgewars game, drawn for a game rather than as clip art). The RGB corpus refuses it,
``rgba-train`` is openclipart only, so every image here is unseen in training. One command:

    python scripts/rebuild_ood_rgba.py --out /work/corpus/ood-rgba
    python scripts/rebuild_ood_rgba.py --out DIR --package-dir /path/to/tree-or.deb   # offline

Processing is rgba-train's (:func:`alphavae.training.openclipart.convert`: RGBA through the file's transparency,
long side 256 by premultiplied reduce + Lanczos, colour zeroed where α = 0; lossless WebP). Kept, as for
rgba-train, if the image has real transparency (3–98.5 % of pixels with α > 0 and some α = 0) and a short side
≥ 48 px; also dropped: animation strips (aspect ratio over :data:`MAX_ASPECT`) and exact pixel duplicates. Of those,
:data:`COUNT` are chosen by seeded rank of their path. ``manifest.csv`` has rgba-train's columns.
"""

from __future__ import annotations

import argparse
import hashlib
import sys
import tempfile
from pathlib import Path, PurePosixPath

import numpy as np
from PIL import Image

from alphavae.training import debian_sources as deb
from alphavae.training.openclipart import Entry, convert, save_rgba, soft_alpha, write_manifest

COUNT = 300
MIN_SIDE = 48
MAX_ASPECT = 4.0
#: Share of pixels with α > 0 an image must have (rgba-train's rule).
COVERAGE = (0.03, 0.985)


def kept(arr: np.ndarray) -> bool:
    """rgba-train's rule: 3–98.5 % of pixels with α > 0, some α = 0, short side ≥ 48; and not a strip."""
    alpha = arr[..., 3]
    height, width = alpha.shape
    cover = float((alpha > 0).mean())
    return (COVERAGE[0] <= cover <= COVERAGE[1] and bool((alpha == 0).any()) and min(height, width) >= MIN_SIDE
            and max(height, width) <= MAX_ASPECT * min(height, width))


def pixel_digest(arr: np.ndarray) -> str:
    """SHA-256 of an image's shape and pixels: equal digests are exact pixel duplicates."""
    return hashlib.sha256(str(arr.shape).encode() + arr.tobytes()).hexdigest()


def output_name(path: str) -> str:
    """``<parent folder>/<stem>.webp`` below the package's data folder, flattened to one level."""
    p = PurePosixPath(path)
    return f"{p.parent.name}/{p.stem}-{deb.rank(path)[:6]}.webp"


def build(out: Path, tree: Path, package: str = deb.OOD_PACKAGE, count: int = COUNT, log=print) -> list[Entry]:
    """Convert the kept PNGs of the unpacked ``tree``, choose ``count`` by rank, write them and ``manifest.csv``."""
    deb.refuse_reserved([package])
    candidates, seen = [], set()
    files = [f for f in deb.image_files(tree) if f.suffix.lower() == ".png"]
    for file in sorted(files, key=lambda f: deb.rank(f.relative_to(tree).as_posix())):
        if len(candidates) == count:
            break
        try:
            arr = convert(file)
        except (OSError, ValueError, Image.DecompressionBombError) as exc:
            log(f"skipped {file} ({exc})")
            continue
        digest = pixel_digest(arr)
        if kept(arr) and digest not in seen:
            seen.add(digest)
            candidates.append((file.relative_to(tree).as_posix(), arr))
    entries = []
    for path, arr in sorted(candidates):
        name = output_name(path)
        save_rgba(arr, out / name)
        entries.append(Entry(name, package, path, deb.declared_license(tree, package, path),
                             arr.shape[1], arr.shape[0], soft_alpha(arr)))
    write_manifest(entries, out)
    return entries


def main(argv: list[str] | None = None) -> int:
    """Command-line entry."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, required=True, help="folder to write the images and manifest.csv into")
    parser.add_argument("--package-dir", type=Path, default=None,
                        help=f"an unpacked {deb.OOD_PACKAGE} tree or its .deb instead of apt-get download")
    parser.add_argument("--workdir", type=Path, default=None, help="where to download and unpack (default: a temp dir)")
    parser.add_argument("--count", type=int, default=COUNT, help="how many images to keep")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="ood-rgba-") as tmp:
        tree = deb.package_tree(deb.OOD_PACKAGE, args.package_dir, args.workdir or Path(tmp))
        entries = build(args.out, tree, count=args.count)
    total = sum((args.out / e.file).stat().st_size for e in entries)
    print(f"wrote {len(entries)} images, {total / 1e6:.1f} MB, to {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
