"""Rebuild the RGBA training set ``rgba-train`` anywhere, from Debian's ``openclipart-png`` package.

The project trains on exactly 1,342 clip-art images, listed in ``data/rgba-train-manifest.csv`` (shipped with
the package). The package holds about 6,000 more usable images; those are reserved for independent evaluation,
so this module converts only the sources the manifest names and never the rest of the package.

:func:`fetch_rgba_train` (the ``alphavae data fetch`` command) gets the package (``apt-get download``, which
needs no root, or a given ``.deb``, or an already extracted tree), extracts it (``dpkg-deb -x``, or plain
Python ar + tar where dpkg is absent), converts every listed source into ``DIR/rgba-train/<file>`` and checks
each written image's width, height and soft_alpha against the manifest.

The conversion is the one that made the reference copy (``../shared/data/rgba-train``; decoded pixels equal):
Pillow opens the PNG and converts P/LA/L modes to RGBA through their transparency; the long side is shrunk to
256 (never enlarged) by Pillow's premultiplied ``reduce`` by ``int(factor / 2)`` when the shrink factor is ≥ 4
(``reducing_gap=2.0``, as ``Image.thumbnail`` does) and then Lanczos; colour is zeroed where α = 0; the result
is saved as lossless WebP (exact pixels; :data:`WEBP_OPTIONS`).
"""

from __future__ import annotations

import csv
import io
import os
import posixpath
import shutil
import subprocess
import tarfile
import tempfile
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import BinaryIO

import numpy as np
from PIL import Image

from alphavae.imageio import atomic_write
from alphavae.paths import data_dir

PACKAGE = "openclipart-png"
LICENSE = "Public Domain (Creative Commons PD dedication)"
#: Where the package installs its PNGs; a manifest's ``source`` is a path below it.
PNG_ROOT = PurePosixPath("usr/share/openclipart/png")
MANIFEST_FIELDS = ("file", "package", "source", "license", "width", "height", "soft_alpha")
#: The name of the set's folder inside ``alphavae data fetch --dir DIR``.
SET_NAME = "rgba-train"
LONG_SIDE = 256
#: Shrink by whole-pixel box averaging first when the factor is at least twice this (Pillow's ``reducing_gap``).
REDUCING_GAP = 2.0
#: Lossless WebP keeping the colour under α = 0 as written (zero). Decoded pixels are exact at any ``method``;
#: 4 encodes in 0.06 s per image, 6 (what made the reference copy, byte for byte) in 0.6 s for files 3.5 % smaller.
WEBP_OPTIONS = {"format": "WEBP", "lossless": True, "quality": 100, "method": 4, "exact": True}


class FetchError(Exception):
    """The package, a source in it, or a converted image is not what the manifest says; the message names it."""


@dataclass(frozen=True)
class Entry:
    """One row of a ``manifest.csv``."""

    file: str
    package: str
    source: str
    license: str
    width: int
    height: int
    soft_alpha: float


@dataclass(frozen=True)
class FetchResult:
    """What :func:`fetch_rgba_train` did: the set's folder, images converted now, images already there."""

    folder: Path
    written: int
    kept: int


def shipped_manifest() -> Path:
    """``data/rgba-train-manifest.csv``: the 1,342 images of ``rgba-train`` and where each comes from."""
    return data_dir() / "rgba-train-manifest.csv"


def read_manifest(path: Path) -> list[Entry]:
    """Rows of a ``manifest.csv``; a file path that leaves its folder is refused, naming the manifest."""
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no such manifest")
    with path.open(newline="") as f:
        entries = [
            Entry(r["file"], r["package"], r["source"], r["license"], int(r["width"]), int(r["height"]), float(r["soft_alpha"]))
            for r in csv.DictReader(f)
        ]
    for e in entries:
        for name in (e.file, e.source):
            if PurePosixPath(name).is_absolute() or ".." in PurePosixPath(name).parts:
                raise ValueError(f"{path}: {name!r} leaves its folder")
    return entries


def write_manifest(entries: list[Entry], folder: Path) -> Path:
    """Write ``folder/manifest.csv`` with :data:`MANIFEST_FIELDS` (soft_alpha to 4 decimals), atomically."""

    def write(tmp: str) -> None:
        with open(tmp, "w", newline="") as f:
            writer = csv.writer(f, lineterminator="\n")
            writer.writerow(MANIFEST_FIELDS)
            for e in entries:
                writer.writerow([e.file, e.package, e.source, e.license, e.width, e.height, f"{e.soft_alpha:.4f}"])

    return atomic_write(folder / "manifest.csv", write)


def soft_alpha(arr: np.ndarray) -> float:
    """Share of pixels with 0 < α < 1 of an ``(H, W, 4)`` uint8 array, rounded to 4 decimals."""
    alpha = arr[..., 3]
    return round(float(((alpha > 0) & (alpha < 255)).mean()), 4)


def shrink(im: Image.Image, size: int = LONG_SIDE) -> Image.Image:
    """Shrink (never enlarge) an RGBA image so its long side is ``size``: premultiplied reduce, then Lanczos."""
    scale = size / max(im.size)
    if scale >= 1:
        return im
    new = (max(1, round(im.width * scale)), max(1, round(im.height * scale)))
    return im.resize(new, Image.Resampling.LANCZOS, reducing_gap=REDUCING_GAP)


def convert(src: Path, size: int = LONG_SIDE) -> np.ndarray:
    """A package PNG → ``(H, W, 4)`` uint8 straight-alpha array, long side ``size``, colour zeroed where α = 0."""
    with warnings.catch_warnings():
        # a few sources are ~170 Mpixel posters from a trusted package, not decompression bombs
        warnings.simplefilter("ignore", Image.DecompressionBombWarning)
        with Image.open(src) as im:
            arr = np.array(shrink(im.convert("RGBA"), size), dtype=np.uint8)
    arr[arr[..., 3] == 0, :3] = 0
    return arr


def save_rgba(arr: np.ndarray, path: Path) -> Path:
    """Save an RGBA uint8 array losslessly and atomically: ``.webp`` (exact pixels) or ``.png``."""
    suffix = path.suffix.lower()
    if suffix == ".webp":
        options = WEBP_OPTIONS
    elif suffix == ".png":
        options = {"format": "PNG", "optimize": True}
    else:
        raise ValueError(f"{path}: save as .webp or .png")
    return atomic_write(path, lambda tmp: Image.fromarray(arr, "RGBA").save(tmp, **options))


def load_rgba_array(path: Path) -> np.ndarray:
    """Decode an image file as an ``(H, W, 4)`` uint8 RGBA array."""
    with Image.open(path) as im:
        return np.array(im.convert("RGBA"), dtype=np.uint8)


def mismatch(path: Path, entry: Entry) -> str | None:
    """How the image at ``path`` differs from its manifest row (missing, unreadable, size, soft_alpha), or None."""
    try:
        arr = load_rgba_array(path)
    except FileNotFoundError:
        return f"{path}: missing"
    except (OSError, ValueError) as exc:
        return f"{path}: unreadable ({exc})"
    if arr.shape[:2] != (entry.height, entry.width) or soft_alpha(arr) != round(entry.soft_alpha, 4):
        return (f"{path}: {arr.shape[1]}×{arr.shape[0]}, soft_alpha {soft_alpha(arr):.4f}; "
                f"the manifest says {entry.width}×{entry.height}, {entry.soft_alpha:.4f}")
    return None


def download_deb(dest: Path, package: str = PACKAGE) -> Path:
    """``apt-get download PACKAGE`` into ``dest`` (no root needed); returns the ``.deb``."""
    if shutil.which("apt-get") is None:
        raise FetchError(f"apt-get not found: download {package}_*.deb from https://packages.debian.org/{package} "
                         "and pass --deb FILE")
    dest.mkdir(parents=True, exist_ok=True)
    done = subprocess.run(["apt-get", "download", package], cwd=dest, stderr=subprocess.PIPE, text=True)
    errors = [line for line in done.stderr.splitlines() if line.startswith("E:")]
    debs = sorted(dest.glob(f"{package}_*.deb"))
    if done.returncode != 0 or not debs:
        why = errors[-1] if errors else f"exit status {done.returncode}"
        raise FetchError(f"apt-get download {package} failed ({why}); pass --deb FILE or --package-dir DIR instead")
    return debs[-1]


def extract_deb(deb: Path, dest: Path) -> Path:
    """Extract a ``.deb`` into ``dest`` (``dpkg-deb -x``, else plain Python); returns its PNG folder."""
    if not deb.is_file():
        raise FileNotFoundError(f"{deb}: no such .deb file")
    dpkg_deb = shutil.which("dpkg-deb")
    if dpkg_deb is None:
        _extract_png_tree(deb, dest)
    else:
        done = subprocess.run([dpkg_deb, "-x", str(deb), str(dest)], stderr=subprocess.PIPE, text=True)
        if done.returncode != 0:
            raise FetchError(f"{deb}: dpkg-deb -x failed ({' '.join(done.stderr.split())})")
    if not (dest / PNG_ROOT).is_dir():
        raise FetchError(f"{deb}: has no {PNG_ROOT} folder; is it {PACKAGE}?")
    return dest / PNG_ROOT


def png_root(package_dir: Path) -> Path:
    """The PNG folder of an extracted package: ``package_dir/usr/share/openclipart/png``, or ``package_dir``
    itself when it is that folder."""
    if (package_dir / PNG_ROOT).is_dir():
        return package_dir / PNG_ROOT
    if package_dir.is_dir():
        return package_dir
    raise NotADirectoryError(f"{package_dir}: not a folder")


class _Slice(io.RawIOBase):
    """The next ``size`` bytes of a binary file, as a readable stream (one member of an ar archive)."""

    def __init__(self, f: BinaryIO, size: int) -> None:
        self._f, self._left = f, size

    def readable(self) -> bool:
        return True

    def readinto(self, buffer) -> int:
        n = self._f.readinto(memoryview(buffer)[: min(len(buffer), self._left)]) or 0
        self._left -= n
        return n


def _extract_png_tree(deb: Path, dest: Path) -> None:
    """Plain-Python ``dpkg-deb -x`` for the PNG folder only: find ``data.tar.*`` in the ar archive, stream it,
    write regular files, then copy the targets of links (no link is created, no path leaves :data:`PNG_ROOT`)."""
    links: dict[str, str] = {}
    with deb.open("rb") as f:
        if f.read(8) != b"!<arch>\n":
            raise FetchError(f"{deb}: not a .deb (no ar archive header)")
        while len(header := f.read(60)) == 60:
            name, size = header[:16].decode().strip().rstrip("/"), int(header[48:58].decode())
            if not name.startswith("data.tar"):
                f.seek(size + size % 2, os.SEEK_CUR)
                continue
            try:
                with tarfile.open(fileobj=io.BufferedReader(_Slice(f, size)), mode="r|*") as tar:
                    for member in tar:
                        rel = posixpath.normpath(member.name)
                        if not PurePosixPath(rel).is_relative_to(PNG_ROOT) or ".." in PurePosixPath(rel).parts:
                            continue
                        if member.isfile():
                            (dest / rel).parent.mkdir(parents=True, exist_ok=True)
                            with tar.extractfile(member) as src, (dest / rel).open("wb") as out:
                                shutil.copyfileobj(src, out)
                        elif member.issym() or member.islnk():  # a symlink is relative to its folder
                            base = posixpath.dirname(rel) if member.issym() else ""
                            target = posixpath.normpath(posixpath.join(base, member.linkname))
                            if PurePosixPath(target).is_relative_to(PNG_ROOT):
                                links[rel] = target
            except (tarfile.TarError, EOFError) as exc:
                raise FetchError(f"{deb}: cannot read its {name} ({exc}); install dpkg, or extract the package "
                                 "yourself and pass --package-dir") from exc
            break
        else:
            raise FetchError(f"{deb}: no data.tar member; is it a .deb?")
    while links:  # a link may point at a link: copy those whose target exists, until no more can be
        ready = {rel: target for rel, target in links.items() if (dest / target).is_file()}
        if not ready:
            break
        for rel, target in ready.items():
            (dest / rel).parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(dest / target, dest / rel)
            del links[rel]


def fetch_rgba_train(
    dest: Path,
    *,
    deb: Path | None = None,
    package_dir: Path | None = None,
    manifest: Path | None = None,
    log: Callable[[str], None] | None = None,
) -> FetchResult:
    """Write the images of ``manifest`` (default: :func:`shipped_manifest`) into ``dest/rgba-train``, with its
    ``manifest.csv``.

    Images already there and matching the manifest are kept, and when all are, nothing is downloaded. The package
    comes from ``package_dir`` (an extracted tree), else ``deb``, else ``apt-get download``. Only the manifest's
    sources are converted. Every write is atomic; each image written is checked against its row.
    """
    manifest = manifest or shipped_manifest()
    entries = read_manifest(manifest)
    say = log or (lambda message: None)
    folder = dest / SET_NAME
    todo = [e for e in entries if mismatch(folder / e.file, e) is not None]
    if todo:
        with tempfile.TemporaryDirectory(prefix="alphavae-openclipart-") as tmp:
            if package_dir is not None:
                origin, root = package_dir, png_root(package_dir)
            else:
                if deb is None:
                    say(f"downloading {PACKAGE} (about 130 MB) with apt-get download")
                    deb = download_deb(Path(tmp))
                say(f"extracting {deb.name}")
                origin, root = deb, extract_deb(deb, Path(tmp) / "root")
            missing = [e.source for e in todo if not (root / e.source).is_file()]
            if missing:
                more = f" (and {len(missing) - 1} more of the manifest's sources)" if len(missing) > 1 else ""
                raise FetchError(f"{origin}: has no {missing[0]}{more}; is it {PACKAGE}?")
            for i, e in enumerate(todo, 1):
                try:
                    arr = convert(root / e.source)
                except (OSError, ValueError, Image.DecompressionBombError) as exc:
                    raise FetchError(f"{origin}: {e.source} is unreadable ({exc})") from exc
                save_rgba(arr, folder / e.file)
                if (why := mismatch(folder / e.file, e)) is not None:
                    raise FetchError(why)
                if i % 100 == 0 or i == len(todo):
                    say(f"converted {i}/{len(todo)}")
    atomic_write(folder / "manifest.csv", lambda tmp: shutil.copyfile(manifest, tmp))
    return FetchResult(folder, written=len(todo), kept=len(entries) - len(todo))
