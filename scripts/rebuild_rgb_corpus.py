"""Rebuild the RGB pretraining corpus ``rgb-corpus`` from Debian packages: photos, art, sprites, textures, icons,
and clip art composited over photographs.

One command (``apt-get download`` needs no root; about 600 MB of packages):

    python scripts/rebuild_rgb_corpus.py --out /work/corpus/rgb-corpus
    # offline, from already downloaded .deb files or unpacked package trees (repeatable):
    python scripts/rebuild_rgb_corpus.py --out DIR --package-dir mate-backgrounds=/path/to/tree --package-dir moka-icon-theme=moka.deb

The packages and what each gives are :data:`SOURCES` (path rules, first match wins; the photo/art split of the
wallpaper packages was checked by eye on a contact sheet). Rules, in order:

* every regular PNG/JPEG/WebP of a listed package (links and ``usr/share/doc`` skipped) is opened as RGBA; an
  image with any α < 255 is cut to the box of its α > 0 pixels and composited (c·α + b·(1−α)) over a flat colour
  drawn from a seed of its path; then shrunk with Lanczos to long side :data:`LONG_SIDE` (never enlarged);
* icons: one file per icon name (file stem, ``@2x`` aside) per icon package, the largest;
* a game image (``sprite``) with no transparency and a short side ≥ 256 counts as ``art`` (backgrounds, title art);
* each photo also gives :data:`PHOTO_CROPS` square crops (a seeded 25–60 % of its short side) at 256 × 256;
* dropped: short side < :data:`MIN_SIDE` after processing, near-flat images (grey std < :data:`MIN_STD`), exact
  pixel duplicates and images whose 64-bit difference hash equals an earlier one's (the same wallpaper at
  several sizes); at most :data:`MAX_PER_PACKAGE` images per package, chosen by seeded rank;
* clip-art composites: :data:`COMPOSITES` images of the *training* split of ``rgba-train``
  (``configs/split-rgba-train.json``; the held-out images are never used, the RGB VAE is evaluated on them),
  each over a seeded crop of one of the corpus photographs;
* everything is stored as lossy WebP quality :data:`WEBP_QUALITY` (fine for RGB pretraining, several times smaller
  than lossless); if the total passes ``--max-mb``, the images last in seeded rank are dropped until it fits.

Never taken: :data:`alphavae.training.debian_sources.RESERVED` (kept for independent evaluation), files named after
one (:data:`~alphavae.training.debian_sources.RESERVED_NAMES`, e.g. an icon theme's ``apps/wesnoth.png``), the out-of-domain
RGBA package (:data:`~alphavae.training.debian_sources.OOD_PACKAGE`) and ``openclipart-png`` itself; listing one is
refused. The output is deterministic: two runs write identical files. ``manifest.csv`` beside the images (committed
as ``data/rgb-corpus-manifest.csv``) gives each file's package, version, source, declared licence, kind and size.
"""

from __future__ import annotations

import argparse
import csv
import fnmatch
import hashlib
import random
import sys
import tempfile
import time
from collections.abc import Callable, Collection, Iterator
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

import numpy as np
import torch
from PIL import Image

from alphavae.blending import composite
from alphavae.imageio import atomic_write
from alphavae.paths import shared_data_dir, shipped_config
from alphavae.training import debian_sources as deb
from alphavae.training.openclipart import LICENSE as OPENCLIPART_LICENSE, PACKAGE as OPENCLIPART, load_rgba_array
from alphavae.training.openclipart import read_manifest, shrink
from alphavae.training.splits import read_split, split_files

LONG_SIDE = 256
MIN_SIDE = 64
MIN_STD = 6.0
PHOTO_CROPS = 8
MAX_PER_PACKAGE = 300
COMPOSITES = 600
WEBP_QUALITY = 80
#: Long side of the copies of the photographs that clip art is composited over.
POOL_SIDE = 1024
KINDS = ("photo", "art", "sprite", "texture", "icon", "clipart-composite")
MANIFEST_FIELDS = ("file", "package", "version", "source", "license", "kind", "width", "height",
                   "clipart", "photo", "crop")

_PLASMA_PHOTOS = ("BytheWater", "ColdRipple", "ColorfulCups", "DarkestHour", "EveningGlow", "FallenLeaf", "Grey",
                  "Kite", "OneStandsOut", "Path", "summer_1am")
_ICONS = (("*/scalable/*", None), ("*", "icon"))
#: package → (glob on the path inside the package, kind or None to skip); first match wins.
SOURCES: dict[str, tuple[tuple[str, str | None], ...]] = {
    "mate-backgrounds": (("*/nature/*", "photo"), ("*", "art")),
    "plasma-workspace-wallpapers": (*((f"*/{n}/contents/images/*", "photo") for n in _PLASMA_PHOTOS),
                                    ("*/screenshot.*", None), ("*", "art")),
    "lomiri-wallpapers": (("*", "art"),),
    "lomiri-wallpapers-16.04": (("*/analogpattern*", "art"), ("*/greentock*", "art"), ("*/umang*", "art"),
                                ("*", "photo")),
    "lomiri-wallpapers-20.04": (("*/Kleiber*", "photo"), ("*/Infinite-Sea*", "photo"), ("*", "art")),
    "ukui-wallpapers": (("*", "art"),),
    "sway-backgrounds": (("*", "art"),),
    "gnome-backgrounds": (("*", "art"),),
    "desktop-base": (("*", "art"),),
    "xfdesktop4-data": (("*", "art"),),
    **{f"debian-edu-artwork-{t}": (("*", "art"),) for t in ("buster", "emerald", "homeworld", "softwaves", "spacefun")},
    "tuxpaint-data": (("*/starters/*", "art"), ("*/templates/*", "art"), ("*", "sprite")),
    "neverball-data": (("*/shot-*", "art"), ("*", "texture")),
    "extremetuxracer-data": (("*/terrains/*", "texture"), ("*/textures/*", "texture"), ("*", "sprite")),
    "pingus-data": (("*/textures/*", "texture"), ("*", "sprite")),
    **{p: (("*", "sprite"),) for p in ("btanks-data", "freeciv-data", "freedroid-data", "frozen-bubble-data",
                                        "lincity-ng-data", "tuxmath-data", "berusky-data")},
    **{p: _ICONS for p in ("moka-icon-theme", "faenza-icon-theme", "mate-icon-theme", "gnome-icon-theme",
                           "elementary-xfce-icon-theme")},
}
#: Licences of packages whose debian/copyright is not machine-readable, as that file states them.
LICENSE_OVERRIDES: dict[str, tuple[tuple[str, str], ...]] = {
    "gnome-backgrounds": (("*/adwaita*", "CC-BY-SA-3.0"), ("*", "GPL-2+")),
    "pingus-data": (("*", "GPL-2+"),),
}


@dataclass(frozen=True)
class Source:
    """One image of a package and what the corpus makes of it."""

    package: str
    version: str
    path: str
    file: Path
    kind: str
    license: str


@dataclass
class Item:
    """One corpus image before it is written: its manifest row and its pixels."""

    row: dict[str, str]
    rgb: np.ndarray


def kind_of(rules: tuple[tuple[str, str | None], ...], path: str) -> str | None:
    """The kind the first matching rule gives ``path`` (None: skip); documentation folders are always skipped."""
    if path.startswith("usr/share/doc/"):
        return None
    return next((kind for pattern, kind in rules if fnmatch.fnmatchcase(path, pattern)), None)


def license_of(tree: Path, package: str, path: str) -> str:
    """The licence for ``path``: :data:`LICENSE_OVERRIDES` where the copyright file is prose, else DEP-5."""
    for pattern, licence in LICENSE_OVERRIDES.get(package, ()):
        if fnmatch.fnmatchcase(path, pattern):
            return licence
    return deb.declared_license(tree, package, path)


def icon_name(path: str) -> str:
    """The icon's name: its file stem without a ``@2x`` scale suffix."""
    return PurePosixPath(path).stem.removesuffix("@2x")


def chosen_files(package: str, tree: Path, rules: tuple[tuple[str, str | None], ...], kinds: Collection[str] = KINDS,
                 min_side: int = 0, log: Callable[[str], None] | None = None) -> list[tuple[str, Path, str]]:
    """``(path, file, kind)`` of the images of an unpacked package ``tree`` that ``rules`` give one of ``kinds``, not
    named after a reserved package, short side ≥ ``min_side``; of icons one file per icon name, the largest (then
    the shortest path). An image PIL cannot open is skipped with a line to ``log``, or raises without one."""
    chosen: dict[str, tuple[tuple[int, int], str, Path, str]] = {}
    for file in deb.image_files(tree):
        path = file.relative_to(tree).as_posix()
        kind = kind_of(rules, path)
        if kind not in kinds or deb.names_reserved(path):
            continue
        try:
            with Image.open(file) as im:
                width, height = im.size
        except OSError as exc:
            if log is None:
                raise
            log(f"skipped {package}:{path} ({exc})")
            continue
        if min(width, height) < min_side:
            continue
        key, size = (f"icon:{icon_name(path)}" if kind == "icon" else path), (width * height, -len(path))
        if key not in chosen or size > chosen[key][0]:
            chosen[key] = (size, path, file, kind)
    return [(path, file, kind) for _, path, file, kind in chosen.values()]


def list_sources(package: str, tree: Path, rules: tuple[tuple[str, str | None], ...]) -> list[Source]:
    """The images of one package the corpus may use (:func:`chosen_files`, short side ≥ :data:`MIN_SIDE`), at most
    :data:`MAX_PER_PACKAGE` by seeded rank, in path order."""
    version = deb.package_version(tree, package)
    files = chosen_files(package, tree, rules, min_side=MIN_SIDE)
    picked = sorted(files, key=lambda f: deb.rank(package, f[0]))[:MAX_PER_PACKAGE]
    return [Source(package, version, path, file, kind, license_of(tree, package, path))
            for path, file, kind in sorted(picked, key=lambda f: f[0])]


def flat_colour(*keys: str) -> torch.Tensor:
    """A seeded flat background colour, ``(3, 1, 1)`` in [0, 1]."""
    rng = random.Random(deb.rank(*keys))
    return torch.tensor([rng.random() for _ in range(3)]).view(3, 1, 1)


def flatten(rgba: np.ndarray, *keys: str) -> np.ndarray:
    """An RGBA uint8 array → RGB uint8: cut to its α > 0 box and composited over :func:`flat_colour` if any
    α < 255, else its colour as it is."""
    alpha = rgba[..., 3]
    if alpha.min() == 255:
        return rgba[..., :3].copy()
    ys, xs = np.nonzero(alpha)
    if len(ys) == 0:
        return rgba[:0, :0, :3].copy()
    rgba = rgba[ys.min(): ys.max() + 1, xs.min(): xs.max() + 1]
    t = torch.from_numpy(rgba).permute(2, 0, 1).float() / 255
    rgb = composite(t, flat_colour(*keys))
    return (rgb.permute(1, 2, 0).numpy() * 255).round().astype(np.uint8)


def resize_rgb(rgb: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """Lanczos-resize an RGB uint8 array to ``size`` (width, height)."""
    return np.array(Image.fromarray(rgb).resize(size, Image.Resampling.LANCZOS))


def photo_crops(rgb: np.ndarray, count: int, *keys: str) -> Iterator[tuple[tuple[int, int, int, int], np.ndarray]]:
    """``count`` seeded square crops (side 25–60 % of the short side, at least :data:`LONG_SIDE`), each at
    ``LONG_SIDE`` × ``LONG_SIDE``, with their box ``(x, y, w, h)`` in ``rgb``'s pixels."""
    rng = random.Random(deb.rank("crops", *keys))
    height, width = rgb.shape[:2]
    short = min(height, width)
    for _ in range(count if short >= 2 * LONG_SIDE else 0):
        side = max(LONG_SIDE, round(short * rng.uniform(0.25, 0.6)))
        x, y = rng.randrange(width - side + 1), rng.randrange(height - side + 1)
        yield (x, y, side, side), resize_rgb(rgb[y: y + side, x: x + side], (LONG_SIDE, LONG_SIDE))


def shrink_rgb(rgb: np.ndarray, size: int = LONG_SIDE) -> np.ndarray:
    """Shrink (never enlarge) an RGB array so its long side is ``size``, as rgba-train's :func:`shrink` does."""
    return np.array(shrink(Image.fromarray(rgb), size))


def render(source: Source) -> tuple[str, list[tuple[str, str, np.ndarray]]]:
    """The kind and the images one source gives: ``[(name suffix, crop box, RGB array)]``, full image first."""
    with Image.open(source.file) as im:
        rgba = np.array(im.convert("RGBA"), dtype=np.uint8)
    rgb = flatten(rgba, source.package, source.path)
    kind = source.kind
    if kind == "sprite" and rgba[..., 3].min() == 255 and min(rgb.shape[:2]) >= 256:
        kind = "art"
    out = [("", "", shrink_rgb(rgb))] if rgb.size else []
    if kind == "photo":
        out += [(f"-crop{i}", ",".join(map(str, box)), crop)
                for i, (box, crop) in enumerate(photo_crops(rgb, PHOTO_CROPS, source.package, source.path))]
    return kind, out


def dhash(rgb: np.ndarray) -> int:
    """64-bit difference hash of an image (grey 9 × 8, left-right brightness steps)."""
    grey = np.array(Image.fromarray(rgb).convert("L").resize((9, 8), Image.Resampling.BILINEAR), dtype=np.int16)
    bits = (grey[:, 1:] > grey[:, :-1]).flatten()
    return int("".join("1" if b else "0" for b in bits), 2)


def output_name(kind: str, package: str, path: str, suffix: str) -> str:
    """``kind/package/<stem><suffix>-<8 hex of the path>.webp``: readable and unique."""
    stem = "".join(c if c.isalnum() or c in "-_." else "_" for c in PurePosixPath(path).stem)[:40]
    return f"{kind}/{package}/{stem}{suffix}-{deb.rank(package, path)[:8]}.webp"


def package_items(sources: list[Source], seen: set, log) -> Iterator[Item]:
    """The corpus images of the listed sources, with the drop rules applied (``seen``: hashes so far)."""
    for i, source in enumerate(sources, 1):
        if i % 200 == 0:
            log(f"  {source.package}: {i}/{len(sources)}")
        try:
            kind, images = render(source)
        except (OSError, ValueError, Image.DecompressionBombError) as exc:
            log(f"  skipped {source.package}:{source.path} ({exc})")
            continue
        for suffix, crop, rgb in images:
            if min(rgb.shape[:2]) < MIN_SIDE or np.asarray(Image.fromarray(rgb).convert("L")).std() < MIN_STD:
                continue
            keys = {("px", hashlib.sha256(str(rgb.shape).encode() + rgb.tobytes()).hexdigest())}
            if not suffix:
                keys.add(("dhash", dhash(rgb)))
            if keys & seen:
                if not suffix:
                    break  # a duplicate photo gives no crops either
                continue
            seen |= keys
            row = {"file": output_name(kind, source.package, source.path, suffix), "package": source.package,
                   "version": source.version, "source": source.path, "license": source.license, "kind": kind,
                   "width": str(rgb.shape[1]), "height": str(rgb.shape[0]), "clipart": "", "photo": "",
                   "crop": crop}
            yield Item(row, rgb)


def composite_sources(rgba_train: Path, split: dict) -> list[Path]:
    """The clip art composites may use: the *training* split of ``rgba-train`` only, never a held-out image."""
    train, heldout = split_files(rgba_train, split)
    leaked = set(train) & set(heldout)
    if leaked:
        raise ValueError(f"{rgba_train}: {sorted(leaked)[0]} is both training and held-out")
    return train


def photo_pool(sources: list[Source]) -> list[tuple[Source, float, np.ndarray]]:
    """The photographs clip art goes over: (source, scale to source pixels, RGB copy with long side :data:`POOL_SIDE`)."""
    pool = []
    for source in sources:
        with Image.open(source.file) as im:
            rgb = flatten(np.array(im.convert("RGBA"), dtype=np.uint8), source.package, source.path)
        small = shrink_rgb(rgb, POOL_SIDE)
        pool.append((source, rgb.shape[1] / small.shape[1], small))
    return pool


def composite_items(clipart: list[Path], rgba_train: Path, pool: list, count: int = COMPOSITES) -> Iterator[Item]:
    """``count`` clip-art images (by seeded rank), each composited over a seeded crop of a pool photograph of the
    clip art's aspect (25–100 % of the largest such crop), resized to the clip art's size."""
    entries = {e.file: e for e in read_manifest(rgba_train / "manifest.csv")}
    picked = sorted(clipart, key=lambda p: deb.rank("composite", p.relative_to(rgba_train).as_posix()))[:count]
    for path in sorted(picked):
        rel = path.relative_to(rgba_train).as_posix()
        rng = random.Random(deb.rank("composite-photo", rel))
        photo, scale, rgb = pool[rng.randrange(len(pool))]
        art = load_rgba_array(path)
        height, width = art.shape[:2]
        fit = min(rgb.shape[1] / width, rgb.shape[0] / height) * rng.uniform(0.25, 1.0)
        w, h = max(1, round(width * fit)), max(1, round(height * fit))
        x, y = rng.randrange(rgb.shape[1] - w + 1), rng.randrange(rgb.shape[0] - h + 1)
        background = torch.from_numpy(resize_rgb(rgb[y: y + h, x: x + w], (width, height))).permute(2, 0, 1) / 255
        out = composite(torch.from_numpy(art).permute(2, 0, 1).float() / 255, background.float())
        crop = ",".join(str(round(v * scale)) for v in (x, y, w, h))
        entry = entries.get(rel)
        yield Item({"file": f"clipart-composite/{Path(rel).with_suffix('.webp').as_posix()}", "package": OPENCLIPART,
                    "version": "", "source": entry.source if entry else rel,
                    "license": f"{entry.license if entry else OPENCLIPART_LICENSE}; photo: {photo.license}",
                    "kind": "clipart-composite", "width": str(width), "height": str(height),
                    "clipart": f"rgba-train/{rel}", "photo": f"{photo.package}:{photo.path}", "crop": crop},
                   (out.permute(1, 2, 0).numpy() * 255).round().astype(np.uint8))


def write_item(item: Item, out: Path) -> int:
    """Save one image as lossy WebP (atomically); returns its size in bytes."""
    path = out / item.row["file"]
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write(path, lambda tmp: Image.fromarray(item.rgb).save(tmp, format="WEBP", quality=WEBP_QUALITY, method=6))
    return path.stat().st_size


def fit_budget(rows: list[dict[str, str]], sizes: dict[str, int], out: Path, max_bytes: int) -> list[dict[str, str]]:
    """Drop (and delete) the images last in seeded rank until the corpus is at most ``max_bytes``."""
    total = sum(sizes.values())
    by_rank = sorted(rows, key=lambda r: deb.rank("budget", r["file"]))
    while total > max_bytes and by_rank:
        row = by_rank.pop()
        total -= sizes[row["file"]]
        (out / row["file"]).unlink()
    keep = {r["file"] for r in by_rank}
    return [r for r in rows if r["file"] in keep]


def write_manifest(rows: list[dict[str, str]], out: Path) -> Path:
    """``out/manifest.csv`` with :data:`MANIFEST_FIELDS`, rows sorted by file, atomically."""

    def write(tmp: str) -> None:
        with open(tmp, "w", newline="") as f:
            writer = csv.DictWriter(f, fieldnames=MANIFEST_FIELDS, lineterminator="\n")
            writer.writeheader()
            writer.writerows(sorted(rows, key=lambda r: r["file"]))

    return atomic_write(out / "manifest.csv", write)


def build(out: Path, trees: dict[str, Path], rgba_train: Path, split: dict, *, sources=SOURCES,
          composites: int = COMPOSITES, max_mb: float = 18.0, log=print) -> list[dict[str, str]]:
    """Make the corpus in ``out`` from unpacked package ``trees`` (one per package of ``sources``) and the training
    split of ``rgba_train``; returns the manifest rows."""
    deb.refuse_reserved([*sources, *trees], also=(deb.OOD_PACKAGE, OPENCLIPART))
    clipart = composite_sources(rgba_train, split) if composites else []
    rows, sizes, seen, photos = [], {}, set(), []
    for package in sorted(sources):
        listed = list_sources(package, trees[package], sources[package])
        log(f"{package}: {len(listed)} sources")
        for item in package_items(listed, seen, log):
            sizes[item.row["file"]] = write_item(item, out)
            rows.append(item.row)
        kept = {r["source"] for r in rows if r["package"] == package and r["kind"] == "photo" and not r["crop"]}
        photos += [s for s in listed if s.path in kept]
    if clipart and photos:
        for item in composite_items(clipart, rgba_train, photo_pool(photos), composites):
            sizes[item.row["file"]] = write_item(item, out)
            rows.append(item.row)
    rows = fit_budget(rows, sizes, out, int(max_mb * 1e6))
    write_manifest(rows, out)
    return rows


def parse_package_dirs(items: list[str], parser: argparse.ArgumentParser) -> dict[str, Path]:
    """``PACKAGE=DIR`` or ``PACKAGE=FILE.deb`` options → {package: path}; a reserved package is refused."""
    given = {}
    for item in items:
        package, _, where = item.partition("=")
        if not where or not Path(where).exists():
            parser.error(f"--package-dir {item}: expected PACKAGE=DIR or PACKAGE=FILE.deb that exists")
        given[package] = Path(where)
    return given


def main(argv: list[str] | None = None) -> int:
    """Command-line entry."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, required=True, help="folder to write the corpus and manifest.csv into")
    parser.add_argument("--rgba-train", type=Path, default=None,
                        help="the rgba-train set (default: ALPHAVAE_SHARED_DATA or ../shared/data)/rgba-train")
    parser.add_argument("--split", type=Path, default=None, help="held-out split (default: configs/split-rgba-train.json)")
    parser.add_argument("--package-dir", action="append", default=[], metavar="PACKAGE=PATH",
                        help="an unpacked package tree or its .deb instead of apt-get download (repeatable)")
    parser.add_argument("--workdir", type=Path, default=None, help="where to download and unpack (default: a temp dir)")
    parser.add_argument("--max-mb", type=float, default=18.0, help="drop the last images by seeded rank past this size")
    args = parser.parse_args(argv)
    given = parse_package_dirs(args.package_dir, parser)
    try:
        deb.refuse_reserved([*SOURCES, *given], also=(deb.OOD_PACKAGE, OPENCLIPART))
    except deb.ReservedPackageError as exc:
        parser.error(str(exc))
    rgba_train = args.rgba_train or shared_data_dir() / "rgba-train"
    split = read_split(args.split or shipped_config("split-rgba-train"))
    start = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="rgb-corpus-") as tmp:
        workdir = args.workdir or Path(tmp)
        trees = {p: deb.package_tree(p, given.get(p), workdir) for p in sorted(SOURCES)}
        rows = build(args.out, trees, rgba_train, split, max_mb=args.max_mb)
    total = sum((args.out / r["file"]).stat().st_size for r in rows)
    for kind in KINDS:
        print(f"{kind:>18}: {sum(r['kind'] == kind for r in rows)}")
    print(f"wrote {len(rows)} images, {total / 1e6:.1f} MB, to {args.out} in {time.monotonic() - start:.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
