"""Rebuild the real RGB photo set that the embedded VAE was pretrained on, from Debian packages.

The photos (``../shared/data/rgb-photos``, 24 JPEGs, GPL-2+) are wallpapers shipped by two Debian
packages; ``manifest.csv`` names each file's package and path inside it. Anyone with Debian's archive
(``apt-get download`` needs no root) can remake the set exactly as listed:

    python scripts/rebuild_rgb_photos.py --manifest ../shared/data/rgb-photos/manifest.csv --out rgb-photos
    # offline, from already downloaded .deb files or unpacked package trees:
    python scripts/rebuild_rgb_photos.py --manifest M --out DIR --package-dir mate-backgrounds=/path/to/tree

Each listed source is opened with Pillow, converted to RGB, shrunk with Lanczos so the long side is 1024
(never enlarged), and saved as JPEG quality 92 under the manifest's file name; a new manifest with the
measured width and height is written beside them.
"""

from __future__ import annotations

import argparse
import csv
import subprocess
import sys
import tempfile
from pathlib import Path

from PIL import Image

LONG_SIDE = 1024
JPEG_QUALITY = 92
MANIFEST_FIELDS = ("file", "package", "source", "license", "width", "height", "soft_alpha")


def read_manifest(path: Path) -> list[dict[str, str]]:
    """Rows of a ``manifest.csv``; raises naming the file if a column is missing."""
    with path.open(newline="") as f:
        rows = list(csv.DictReader(f))
    missing = {"file", "package", "source", "license"} - set(rows[0] if rows else {})
    if missing:
        raise ValueError(f"{path}: missing column(s) {sorted(missing)}")
    return rows


def unpack_package(package: str, workdir: Path) -> Path:
    """``apt-get download PACKAGE`` then ``dpkg -x``; returns the unpacked tree's root."""
    workdir.mkdir(parents=True, exist_ok=True)
    subprocess.run(["apt-get", "download", package], cwd=workdir, check=True, capture_output=True)
    debs = sorted(workdir.glob(f"{package}_*.deb"))
    if not debs:
        raise FileNotFoundError(f"apt-get download {package} wrote no .deb in {workdir}")
    tree = workdir / package
    subprocess.run(["dpkg", "-x", str(debs[-1]), str(tree)], check=True)
    return tree


def find_source(tree: Path, source: str) -> Path:
    """The file ``source`` (a path as listed in the manifest) inside an unpacked package tree."""
    matches = [p for p in tree.rglob(Path(source).name) if p.as_posix().endswith(source)]
    if not matches:
        raise FileNotFoundError(f"{source}: not found in {tree}")
    return sorted(matches, key=lambda p: len(p.parts))[0]


def shrink_to_jpeg(src: Path, dest: Path) -> tuple[int, int]:
    """Open ``src``, RGB, Lanczos-shrink to long side ``LONG_SIDE``, save JPEG q92; returns (width, height)."""
    with Image.open(src) as im:
        im = im.convert("RGB")
        scale = LONG_SIDE / max(im.size)
        if scale < 1:
            im = im.resize((round(im.width * scale), round(im.height * scale)), Image.Resampling.LANCZOS)
        dest.parent.mkdir(parents=True, exist_ok=True)
        im.save(dest, format="JPEG", quality=JPEG_QUALITY)
        return im.size


def rebuild(manifest: Path, out: Path, trees: dict[str, Path], workdir: Path) -> list[dict[str, str]]:
    """Remake every photo of ``manifest`` in ``out``; packages not in ``trees`` are downloaded into ``workdir``."""
    rows = read_manifest(manifest)
    for package in sorted({r["package"] for r in rows} - set(trees)):
        trees[package] = unpack_package(package, workdir)
    written = []
    for row in rows:
        width, height = shrink_to_jpeg(find_source(trees[row["package"]], row["source"]), out / row["file"])
        written.append({**row, "width": str(width), "height": str(height), "soft_alpha": "0.0"})
    with (out / "manifest.csv").open("w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=MANIFEST_FIELDS)
        writer.writeheader()
        writer.writerows({k: r[k] for k in MANIFEST_FIELDS} for r in written)
    return written


def main(argv: list[str] | None = None) -> int:
    """Command-line entry."""
    parser = argparse.ArgumentParser(description="Rebuild the RGB photo set from the Debian packages its manifest names.")
    parser.add_argument("--manifest", type=Path, required=True, help="manifest.csv listing file, package, source, license")
    parser.add_argument("--out", type=Path, required=True, help="folder to write the JPEGs and manifest into")
    parser.add_argument("--package-dir", action="append", default=[], metavar="PACKAGE=DIR",
                        help="use an already unpacked package tree instead of downloading (repeatable)")
    parser.add_argument("--workdir", type=Path, default=None, help="where to download and unpack (default: a temp dir)")
    args = parser.parse_args(argv)
    trees = {}
    for item in args.package_dir:
        package, _, folder = item.partition("=")
        if not folder or not Path(folder).is_dir():
            parser.error(f"--package-dir {item}: expected PACKAGE=DIR with an existing DIR")
        trees[package] = Path(folder)
    if not args.manifest.is_file():
        parser.error(f"--manifest {args.manifest}: no such file")
    with tempfile.TemporaryDirectory() as tmp:
        rows = rebuild(args.manifest, args.out, trees, args.workdir or Path(tmp))
    print(f"wrote {len(rows)} photos and manifest.csv to {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
