"""Build ``rgba-extra``: a second RGBA training set of real transparent game sprites and icons from Debian packages.

``rgba-train`` is openclipart clip art only, and the VAE's out-of-domain score on game sprites (``ood-rgba``) lags its
clip-art score; this set widens what it sees. One command (``apt-get download`` needs no root; about 290 MB):

    python scripts/rebuild_rgba_extra.py --out /work/corpus/rgba-extra
    # offline, from already downloaded .deb files or unpacked package trees (repeatable):
    python scripts/rebuild_rgba_extra.py --out DIR --package-dir pingus-data=/path/to/tree-or.deb

The packages are those of the RGB corpus's ``SOURCES`` (``scripts/rebuild_rgb_corpus.py``) whose rules give kind
``sprite`` or ``icon``, and of each only the images those rules call so (an icon package: one file per icon name, the
largest, as the corpus takes them). Processing and keep rule are the out-of-domain set's
(``scripts/rebuild_ood_rgba.py``): rgba-train's conversion to lossless WebP, real transparency, short side ≥ 48, no
animation strips, no exact pixel duplicates (over the whole set). Each package offers its kept images in seeded
rank, at most :data:`PER_PACKAGE`; the packages take turns, one image each in name order, until the next image
would take the set past ``--max-mb``, so every package gets an equal share of the budget.

Never taken: the reserved packages (:data:`alphavae.training.debian_sources.RESERVED`), the out-of-domain package and
``openclipart-png`` (listing one is refused), and files named after a reserved package. Two runs write identical
files. ``OUT/<package>/<name>.webp``; ``manifest.csv`` has rgba-train's columns (package, path inside it, declared
licence); ``packages.csv`` gives each package's version and image count.
"""

from __future__ import annotations

import argparse
import csv
import sys
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path, PurePosixPath
from typing import NoReturn, TypeVar

import numpy as np
from PIL import Image

from alphavae.imageio import atomic_write
from alphavae.training import debian_sources as deb
from alphavae.training.openclipart import PACKAGE as OPENCLIPART
from alphavae.training.openclipart import Entry, FetchError, convert, save_rgba, soft_alpha, write_manifest

sys.path.insert(0, str(Path(__file__).resolve().parent))
import rebuild_ood_rgba as ood  # noqa: E402  (the out-of-domain set's keep rule and duplicate test)
import rebuild_rgb_corpus as corpus  # noqa: E402  (the RGB corpus's package table)

T = TypeVar("T")
Rules = tuple[tuple[str, str | None], ...]

#: The kinds of the corpus's package rules this set takes.
KINDS = ("sprite", "icon")
#: package → path rules (the corpus's), for every package whose rules give one of :data:`KINDS`.
PACKAGES = {package: rules for package, rules in corpus.SOURCES.items() if any(kind in KINDS for _, kind in rules)}
PER_PACKAGE = 200
MAX_MB = 8.0
#: Packages no training set may use besides :data:`~alphavae.training.debian_sources.RESERVED`.
NOT_TRAINING = (deb.OOD_PACKAGE, OPENCLIPART)


def candidates(package: str, tree: Path, rules: Rules, log: Callable[[str], None]) -> list[str]:
    """The image paths of ``package`` this set may take, in seeded rank: the corpus's choice
    (:func:`rebuild_rgb_corpus.chosen_files`) of the kinds in :data:`KINDS`."""
    files = corpus.chosen_files(package, tree, rules, KINDS, log=log)
    return sorted((path for path, _, _ in files), key=lambda path: deb.rank(package, path))


def kept_images(package: str, tree: Path, rules: Rules, seen: set[str], per_package: int,
                log: Callable[[str], None]) -> Iterator[tuple[str, np.ndarray]]:
    """``(path, RGBA array)`` of the package's candidates that pass the keep rule, in seeded rank, at most
    ``per_package``, lazily; ``seen`` holds the pixel hashes of the whole set so far (a duplicate is dropped)."""
    taken = 0
    for path in candidates(package, tree, rules, log):
        if taken == per_package:
            return
        try:
            arr = convert(tree / path)
        except (OSError, ValueError, Image.DecompressionBombError) as exc:
            log(f"skipped {package}:{path} ({exc})")
            continue
        digest = ood.pixel_digest(arr)
        if ood.kept(arr) and digest not in seen:
            seen.add(digest)
            taken += 1
            yield path, arr


def take_turns(streams: dict[str, Iterator[T]]) -> Iterator[tuple[str, T]]:
    """``(key, item)``: one item of each stream in turn, in the dict's order, until every stream is empty."""
    streams = dict(streams)
    while streams:
        for key in list(streams):
            item = next(streams[key], None)
            if item is None:
                del streams[key]
            else:
                yield key, item


def output_name(package: str, path: str) -> str:
    """``<package>/<stem>-<8 hex of the path>.webp``: the RGB corpus's file name, one folder per package."""
    return f"{package}/{PurePosixPath(corpus.output_name('', package, path, '')).name}"


def write_packages(rows: list[tuple[str, str, int]], out: Path) -> Path:
    """``out/packages.csv``: package, version, images (the manifest's columns are rgba-train's, without a version)."""

    def write(tmp: str) -> None:
        with open(tmp, "w", newline="") as f:
            writer = csv.writer(f, lineterminator="\n")
            writer.writerow(("package", "version", "images"))
            writer.writerows(rows)

    return atomic_write(out / "packages.csv", write)


def build(out: Path, trees: dict[str, Path], *, sources: dict[str, Rules] = PACKAGES, per_package: int = PER_PACKAGE,
          max_mb: float = MAX_MB, log: Callable[[str], None] = print) -> list[Entry]:
    """Make the set in ``out`` from unpacked package ``trees`` (one per package of ``sources``); returns its entries."""
    deb.refuse_reserved([*sources, *trees], also=NOT_TRAINING)
    seen: set[str] = set()
    streams = {p: kept_images(p, trees[p], sources[p], seen, per_package, log) for p in sorted(sources)}
    entries, total = [], 0
    for package, (path, arr) in take_turns(streams):
        name = output_name(package, path)
        size = save_rgba(arr, out / name).stat().st_size
        if total + size > max_mb * 1e6:
            (out / name).unlink()
            break
        total += size
        entries.append(Entry(name, package, path, corpus.license_of(trees[package], package, path),
                             arr.shape[1], arr.shape[0], soft_alpha(arr)))
    entries.sort(key=lambda e: e.file)
    write_manifest(entries, out)
    counts = [(p, deb.package_version(trees[p], p), sum(e.package == p for e in entries)) for p in sorted(sources)]
    write_packages(counts, out)
    return entries


def main(argv: list[str] | None = None) -> int:
    """Command-line entry."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, required=True, help="a new or empty folder for the images and manifests")
    parser.add_argument("--package-dir", action="append", default=[], metavar="PACKAGE=PATH",
                        help="an unpacked package tree or its .deb instead of apt-get download (repeatable)")
    parser.add_argument("--workdir", type=Path, default=None, help="where to download and unpack (default: a temp dir)")
    parser.add_argument("--per-package", type=int, default=PER_PACKAGE, help="most images from one package")
    parser.add_argument("--max-mb", type=float, default=MAX_MB, help="most megabytes of images in all")
    args = parser.parse_args(argv)
    given = corpus.parse_package_dirs(args.package_dir, parser)

    def fail(message: str) -> NoReturn:
        parser.exit(2, f"{parser.prog}: error: {message}\n")

    if args.per_package <= 0:
        fail(f"--per-package {args.per_package}: must be at least 1")
    if args.max_mb <= 0:
        fail(f"--max-mb {args.max_mb}: must be > 0")

    try:
        deb.refuse_reserved(given, also=NOT_TRAINING)
    except deb.ReservedPackageError as exc:
        fail(str(exc))
    unknown = sorted(set(given) - set(PACKAGES))
    if unknown:
        fail(f"--package-dir {unknown[0]}: not a package of rgba-extra (those are {', '.join(sorted(PACKAGES))})")
    if args.out.exists() and (not args.out.is_dir() or any(args.out.iterdir())):
        fail(f"{args.out}: not an empty folder; rgba-extra is written into a new or empty folder (no stale images)")
    try:
        with tempfile.TemporaryDirectory(prefix="rgba-extra-") as tmp:
            workdir = args.workdir or Path(tmp)
            trees = {p: deb.package_tree(p, given.get(p), workdir) for p in sorted(PACKAGES)}
            entries = build(args.out, trees, per_package=args.per_package, max_mb=args.max_mb)
    except FetchError as exc:
        fail(str(exc))
    for package in sorted(PACKAGES):
        print(f"{package:>28}: {sum(e.package == package for e in entries)}")
    total = sum((args.out / e.file).stat().st_size for e in entries)
    print(f"wrote {len(entries)} images, {total / 1e6:.2f} MB, to {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
