"""Rebuild a real RGBA image set from the Debian package ``openclipart-png``, and choose the shipped sample.

For users without ``../shared/data``: the clip art is public domain, and the package is reachable from any
machine with Debian's archive (``apt-get download`` needs no root). Two sub-commands:

    # the full usable set (~6,000 images, long side 256) as lossless WebP, like ../shared/data/rgba-train
    python scripts/rebuild_openclipart.py build --out rgba-openclipart --size 256 --format webp
    # the sample shipped in data/rgba-sample (a deterministic choice from a built set)
    python scripts/rebuild_openclipart.py sample --src ../shared/data/rgba-train --out data/rgba-sample

``build`` downloads the package (or uses ``--package-dir`` / ``--deb``), opens each PNG with Pillow, turns
P/LA/L modes into RGBA through their transparency, shrinks to long side N with Lanczos in premultiplied space
(Pillow premultiplies RGBA when resampling), zeroes colour where α = 0, keeps images with real transparency
(3–98.5 % of pixels with α > 0, some α = 0) and a short side ≥ 48 px, drops exact duplicates, and writes
``manifest.csv`` (file, package, source, license, width, height, soft_alpha).
"""

from __future__ import annotations

import argparse
import csv
import hashlib
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

PACKAGE = "openclipart-png"
LICENSE = "Public Domain (Creative Commons PD dedication)"
#: Where the package installs its PNGs (``dpkg -x`` keeps this path under the destination).
PNG_ROOT = Path("usr/share/openclipart/png")
MANIFEST_FIELDS = ("file", "package", "source", "license", "width", "height", "soft_alpha")
#: Keep an image if this share of its pixels is visible (α > 0) and some pixel is fully transparent.
VISIBLE_RANGE = (0.03, 0.985)
MIN_SHORT_SIDE = 48


@dataclass(frozen=True)
class Entry:
    """One row of ``manifest.csv``."""

    file: str
    package: str
    source: str
    license: str
    width: int
    height: int
    soft_alpha: float


def download_deb(dest: Path, package: str = PACKAGE) -> Path:
    """``apt-get download PACKAGE`` into ``dest`` (no root needed); returns the ``.deb`` path."""
    dest.mkdir(parents=True, exist_ok=True)
    subprocess.run(["apt-get", "download", package], cwd=dest, check=True)
    debs = sorted(dest.glob(f"{package}_*.deb"))
    if not debs:
        raise FileNotFoundError(f"{dest}: apt-get download {package} wrote no .deb")
    return debs[-1]


def extract_deb(deb: Path, dest: Path) -> Path:
    """``dpkg -x DEB DEST``; returns the folder of the package's PNGs inside ``dest``."""
    if not deb.is_file():
        raise FileNotFoundError(f"{deb}: no such .deb file")
    subprocess.run(["dpkg", "-x", str(deb), str(dest)], check=True)
    root = dest / PNG_ROOT
    if not root.is_dir():
        raise FileNotFoundError(f"{deb}: has no {PNG_ROOT} folder; is it {PACKAGE}?")
    return root


def shrink(im: Image.Image, size: int) -> Image.Image:
    """Lanczos shrink (never enlarge) so the long side is at most ``size``; Pillow resamples RGBA premultiplied."""
    scale = size / max(im.size)
    if scale >= 1:
        return im
    new = (max(1, round(im.width * scale)), max(1, round(im.height * scale)))
    return im.resize(new, Image.Resampling.LANCZOS)


def clean(im: Image.Image) -> np.ndarray:
    """RGBA image → uint8 array with colour zeroed where α = 0 (hidden colour carries no information)."""
    arr = np.array(im, dtype=np.uint8)
    arr[arr[..., 3] == 0, :3] = 0
    return arr


def has_real_transparency(arr: np.ndarray) -> bool:
    """3–98.5 % of pixels visible and at least one fully transparent pixel, short side ≥ 48 px."""
    alpha = arr[..., 3]
    visible = float((alpha > 0).mean())
    return VISIBLE_RANGE[0] <= visible <= VISIBLE_RANGE[1] and bool((alpha == 0).any()) and min(alpha.shape) >= MIN_SHORT_SIDE


def soft_alpha(arr: np.ndarray) -> float:
    """Share of pixels with 0 < α < 1."""
    alpha = arr[..., 3]
    return round(float(((alpha > 0) & (alpha < 255)).mean()), 4)


def convert_tree(png_root: Path, out: Path, size: int = 256, fmt: str = "webp") -> tuple[list[Entry], list[str]]:
    """Convert every PNG under ``png_root`` (category = first folder) into ``out/<category>/<stem>.<fmt>``.

    Returns the manifest entries and the source files skipped (unreadable, no real transparency, duplicate).
    """
    entries: list[Entry] = []
    skipped: list[str] = []
    seen: set[str] = set()
    for src in sorted(png_root.rglob("*.png")):
        rel = src.relative_to(png_root)
        try:
            with Image.open(src) as im:
                # convert() applies tRNS transparency of P/L/RGB images and LA's alpha
                arr = clean(shrink(im.convert("RGBA"), size))
        except (OSError, ValueError) as exc:
            print(f"skipping unreadable {src}: {exc}", file=sys.stderr)
            skipped.append(rel.as_posix())
            continue
        digest = hashlib.sha256(arr.tobytes() + bytes(str(arr.shape), "ascii")).hexdigest()
        if not has_real_transparency(arr) or digest in seen:
            skipped.append(rel.as_posix())
            continue
        seen.add(digest)
        category = rel.parts[0] if len(rel.parts) > 1 else "unsorted"
        name = _unique_name(out / category, rel.stem, fmt)
        (out / category).mkdir(parents=True, exist_ok=True)
        Image.fromarray(arr, "RGBA").save(out / category / name, **_save_options(fmt))
        entries.append(Entry(f"{category}/{name}", PACKAGE, rel.as_posix(), LICENSE, arr.shape[1], arr.shape[0], soft_alpha(arr)))
    return entries, skipped


def _unique_name(folder: Path, stem: str, fmt: str) -> str:
    name, n = f"{stem}.{fmt}", 2
    while (folder / name).exists():
        name, n = f"{stem}-{n}.{fmt}", n + 1
    return name


def _save_options(fmt: str) -> dict:
    if fmt == "webp":
        return {"format": "WEBP", "lossless": True, "quality": 100, "method": 6, "exact": True}
    if fmt == "png":
        return {"format": "PNG", "optimize": True}
    raise ValueError(f"--format {fmt!r}: use png or webp")


def write_manifest(entries: list[Entry], out: Path) -> Path:
    """Write ``out/manifest.csv`` with :data:`MANIFEST_FIELDS`."""
    path = out / "manifest.csv"
    with path.open("w", newline="") as f:
        writer = csv.writer(f, lineterminator="\n")
        writer.writerow(MANIFEST_FIELDS)
        for e in entries:
            writer.writerow([e.file, e.package, e.source, e.license, e.width, e.height, f"{e.soft_alpha:.4f}"])
    return path


def read_manifest(folder: Path) -> list[Entry]:
    """Read ``folder/manifest.csv``."""
    path = folder / "manifest.csv"
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no manifest; point --src at a folder built by this script")
    with path.open(newline="") as f:
        return [
            Entry(r["file"], r["package"], r["source"], r["license"], int(r["width"]), int(r["height"]), float(r["soft_alpha"]))
            for r in csv.DictReader(f)
        ]


def _rank(entry: Entry) -> str:
    return hashlib.sha256(entry.file.encode()).hexdigest()


#: Extra picks by soft-alpha band (share of pixels with 0 < α < 1): near-hard cut-outs, then large soft regions.
SOFT_BANDS = ((0.0, 0.015, 2), (0.2, 0.4, 3), (0.4, 1.01, 3))


def choose_sample(entries: list[Entry], long_side: int = 256) -> list[Entry]:
    """The sample rule: among images whose long side is ``long_side``, the first image of every category in
    sha256-of-path order, then, in the same order, two images from each soft-alpha band of
    :data:`SOFT_BANDS`. Deterministic and independent of file order."""
    ranked = sorted((e for e in entries if max(e.width, e.height) == long_side), key=_rank)
    chosen: dict[str, Entry] = {}
    for e in ranked:
        chosen.setdefault(e.file.split("/")[0], e)
    picked = list(chosen.values())
    for low, high, count in SOFT_BANDS:
        band = [e for e in ranked if low <= e.soft_alpha < high and e not in picked]
        picked += band[:count]
    return sorted(picked, key=lambda e: e.file)


def write_sample(src: Path, out: Path) -> list[Entry]:
    """Copy the chosen images of the set at ``src`` into ``out`` as 8-bit RGBA PNGs, with a manifest."""
    rows = []
    for e in choose_sample(read_manifest(src)):
        with Image.open(src / e.file) as im:
            arr = np.array(im.convert("RGBA"), dtype=np.uint8)
        name = str(Path(e.file).with_suffix(".png"))
        (out / name).parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray(arr, "RGBA").save(out / name, **_save_options("png"))
        rows.append(Entry(name, e.package, e.source, e.license, arr.shape[1], arr.shape[0], soft_alpha(arr)))
    write_manifest(rows, out)
    return rows


def cap_per_category(entries: list[Entry], cap: int) -> Iterator[Entry]:
    """At most ``cap`` images per category (first in sha256-of-path order), so no category dominates."""
    counts: dict[str, int] = {}
    for e in sorted(entries, key=_rank):
        category = e.file.split("/")[0]
        if counts.get(category, 0) < cap:
            counts[category] = counts.get(category, 0) + 1
            yield e


def build(out: Path, size: int, fmt: str, package_dir: Path | None, deb: Path | None, cap: int | None) -> list[Entry]:
    """Download/extract the package as needed, convert it, optionally cap each category, write the manifest."""
    with tempfile.TemporaryDirectory(prefix="openclipart-") as tmp:
        if package_dir is None:
            deb = deb or download_deb(Path(tmp))
            package_dir = extract_deb(deb, Path(tmp) / "root")
        entries, skipped = convert_tree(package_dir, out, size, fmt)
    if cap is not None:
        keep = set(cap_per_category(entries, cap))
        for e in entries:
            if e not in keep:
                (out / e.file).unlink()
        entries = [e for e in entries if e in keep]
    write_manifest(entries, out)
    print(f"{len(entries)} images written to {out} ({len(skipped)} skipped)")
    return entries


def main(argv: list[str] | None = None) -> int:
    """Command line: ``build`` or ``sample`` (see the module docstring)."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    b = sub.add_parser("build", help="convert openclipart-png into an RGBA image folder with a manifest")
    b.add_argument("--out", type=Path, required=True)
    b.add_argument("--size", type=int, default=256, help="long side in pixels (images are only shrunk)")
    b.add_argument("--format", default="webp", choices=("webp", "png"))
    b.add_argument("--package-dir", type=Path, help=f"an already extracted {PNG_ROOT} folder (no download)")
    b.add_argument("--deb", type=Path, help="an already downloaded .deb (no download)")
    b.add_argument("--cap", type=int, help="at most this many images per category")
    s = sub.add_parser("sample", help="choose the shipped sample from a built set")
    s.add_argument("--src", type=Path, required=True)
    s.add_argument("--out", type=Path, required=True)
    args = parser.parse_args(argv)
    if args.command == "build":
        if args.out.exists() and any(args.out.iterdir()):
            parser.error(f"--out {args.out}: folder is not empty")
        if shutil.which("dpkg") is None and args.package_dir is None:
            parser.error("dpkg not found: extract the package yourself and pass --package-dir")
        build(args.out, args.size, args.format, args.package_dir, args.deb, args.cap)
    else:
        rows = write_sample(args.src, args.out)
        print(f"{len(rows)} images written to {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
