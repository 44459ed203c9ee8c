"""Lossless RGBA image I/O: any file → straight-alpha float tensor ``(4, H, W)`` in [0, 1], and back to PNG.

Modes handled: RGBA, RGB (α = 1), L, LA, P with or without transparency, CMYK, 8- and 16-bit PNGs (16-bit
precision is kept by reading those through pypng, because Pillow drops colour PNGs to 8 bits).
Resizing and cropping happen in premultiplied space so colour hidden under α = 0 never bleeds into soft edges.
Every reader shares one pixel budget (:func:`max_pixels`), checked from the file's header before anything is
decoded, so a small file declaring a huge canvas is refused by name instead of eating the machine's memory.
"""

from __future__ import annotations

import os
import secrets
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import png
import torch
import torch.nn.functional as F
from PIL import Image

from alphavae.blending import premultiply, unpremultiply

IMAGE_SUFFIXES = (".png", ".webp", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".gif")

#: Largest image (width × height) any reader decodes: 40 M pixels is a 640 MB float RGBA tensor, well past any
#: image the project uses, well short of exhausting a laptop. :data:`MAX_PIXELS_ENV` overrides it.
MAX_PIXELS = 40_000_000
#: Environment variable that overrides :data:`MAX_PIXELS` (a positive whole number of pixels).
MAX_PIXELS_ENV = "ALPHAVAE_MAX_PIXELS"

#: Held while Pillow's own decompression-bomb limit is switched off in favour of ours (a process-wide setting).
_PILLOW_LIMIT_LOCK = threading.Lock()


class ImageReadError(ValueError):
    """An image file is missing, corrupt or in a form we cannot read; the message names the file."""


def max_pixels() -> int:
    """The pixel budget of every reader: ``$ALPHAVAE_MAX_PIXELS`` if set, else :data:`MAX_PIXELS`.

    A malformed value is a ``ValueError`` naming the variable (not an :class:`ImageReadError`: no file is at fault).
    """
    raw = os.environ.get(MAX_PIXELS_ENV, "").strip()
    if not raw:
        return MAX_PIXELS
    try:
        budget = int(raw)
    except ValueError:
        budget = 0
    if budget < 1:
        raise ValueError(f"${MAX_PIXELS_ENV}={raw!r}: must be a positive whole number of pixels")
    return budget


def _check_budget(path: Path, size: tuple[int, int], budget: int) -> None:
    """Raise :class:`ImageReadError` naming ``path`` if an image of ``size`` (width, height) is over ``budget``."""
    width, height = size
    if width * height > budget:
        raise ImageReadError(f"{path}: {width}x{height} is {width * height:,} pixels, over the budget of {budget:,} "
                             f"(checked from the header; set ${MAX_PIXELS_ENV} to read larger images)")


@contextmanager
def _open_within_budget(path: Path, budget: int) -> Iterator[Image.Image]:
    """``Image.open`` (header only) with ``budget`` checked before any pixel is decoded.

    Pillow's own decompression-bomb limit is switched off while the file is open (under a lock, because it is a
    process-wide setting): it would otherwise pre-empt ours with its own message, or warn about images our
    budget allows.
    """
    with _PILLOW_LIMIT_LOCK:
        pillow_limit = Image.MAX_IMAGE_PIXELS
        Image.MAX_IMAGE_PIXELS = None
        try:
            with Image.open(path) as im:
                _check_budget(path, im.size, budget)
                yield im
        finally:
            Image.MAX_IMAGE_PIXELS = pillow_limit


def _png_bit_depth(path: Path) -> int:
    with path.open("rb") as f:
        head = f.read(26)
    if head[:8] != b"\x89PNG\r\n\x1a\n":
        return 0
    return head[24]


def _read_png16(path: Path) -> torch.Tensor:
    width, height, rows, info = png.Reader(filename=str(path)).asDirect()
    planes = info["planes"]
    data = np.vstack([np.asarray(r, dtype=np.uint16) for r in rows]).reshape(height, width, planes)
    x = torch.from_numpy(data.astype(np.float32) / 65535.0).permute(2, 0, 1)
    if planes == 1:  # L
        return torch.cat([x.expand(3, -1, -1), torch.ones_like(x)])
    if planes == 2:  # LA
        return torch.cat([x[:1].expand(3, -1, -1), x[1:]])
    if planes == 3:
        return torch.cat([x, torch.ones_like(x[:1])])
    return x


def _pil_to_rgba(im: Image.Image) -> torch.Tensor:
    if im.mode in ("I;16", "I;16B", "I;16L", "I"):
        arr = np.asarray(im, dtype=np.float32) / (65535.0 if im.mode.startswith("I;16") or np.asarray(im).max() > 255 else 255.0)
        g = torch.from_numpy(arr)[None]
        return torch.cat([g.expand(3, -1, -1), torch.ones_like(g)])
    if im.mode == "F":
        g = torch.from_numpy(np.array(im, dtype=np.float32))  # a copy: PIL's buffer is read-only
        if torch.isnan(g).any():  # clamping keeps NaN, and a NaN pixel would silently poison every metric
            raise ValueError("the image has NaN pixel values")
        g = g.clamp(0, 1)[None]
        return torch.cat([g.expand(3, -1, -1), torch.ones_like(g)])
    if im.mode == "CMYK":
        im = im.convert("RGB")
    if im.mode != "RGBA":
        im = im.convert("RGBA")  # L, LA, P (+ transparency), RGB, 1, La, RGBa ...
    return torch.from_numpy(np.asarray(im, dtype=np.float32) / 255.0).permute(2, 0, 1).contiguous()


def load_rgba(path: str | os.PathLike) -> torch.Tensor:
    """Read an image file as a straight-alpha RGBA float tensor ``(4, H, W)`` in [0, 1].

    Raises :class:`ImageReadError` naming the file if it is missing, unreadable, or over the pixel budget
    (:func:`max_pixels`, checked from the header before decoding, whichever reader decodes it).
    """
    path = Path(path)
    if path.is_symlink() and not path.exists():
        raise ImageReadError(f"{path}: dangling symbolic link (to {os.readlink(path)})")
    if not path.is_file():
        raise ImageReadError(f"{path}: no such file")
    budget = max_pixels()
    try:
        with _open_within_budget(path, budget) as im:
            if _png_bit_depth(path) == 16:
                return _read_png16(path)
            im.load()
            return _pil_to_rgba(im)
    except ImageReadError:
        raise
    except Exception as exc:  # Pillow and pypng raise many types for corrupt files
        raise ImageReadError(f"{path}: cannot read image ({exc.__class__.__name__}: {exc})") from exc


def to_uint8(image: torch.Tensor) -> np.ndarray:
    """``(C, H, W)`` float in [0, 1] → ``(H, W, C)`` uint8, rounded to nearest."""
    return (image.detach().float().clamp(0, 1).cpu().permute(1, 2, 0).numpy() * 255 + 0.5).astype(np.uint8)


def _new_temp_file(path: Path) -> Path:
    """Create an empty, uniquely named hidden file beside ``path``, mode ``0o666`` less the umask like any
    ``open(..., "w")`` (``tempfile.mkstemp`` makes it 0600, and the rename would keep that)."""
    while True:
        tmp = path.with_name(f".{path.name}.{secrets.token_hex(6)}.tmp")
        try:
            os.close(os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666))
            return tmp
        except FileExistsError:
            continue


def umask_mode(folder: str | os.PathLike) -> None:
    """Give every file in ``folder`` the mode a new file gets (``0o666`` less the umask): safetensors' ``save_file``,
    which diffusers' ``save_pretrained`` calls, makes its files owner-only."""
    umask = os.umask(0)
    os.umask(umask)
    for item in Path(folder).iterdir():
        if item.is_file():
            item.chmod(0o666 & ~umask)


def atomic_write(path: str | os.PathLike, write) -> Path:
    """Call ``write(tmp_path)`` then rename to ``path``: an interrupted run leaves no half-written file.

    The file gets the mode any new file gets (``0o666`` less the umask).
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = _new_temp_file(path)
    try:
        write(str(tmp))
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
    return path


def save_png(image: torch.Tensor, path: str | os.PathLike) -> Path:
    """Save a ``(3|4, H, W)`` float tensor in [0, 1] as an 8-bit PNG (RGBA or RGB), losslessly and atomically."""
    if image.dim() != 3 or image.shape[0] not in (3, 4):
        raise ValueError(f"expected a (3|4, H, W) image, got shape {tuple(image.shape)}")
    arr = to_uint8(image)
    mode = "RGBA" if arr.shape[2] == 4 else "RGB"
    return atomic_write(path, lambda tmp: Image.fromarray(arr, mode).save(tmp, format="PNG"))


def resize_long_side(rgba: torch.Tensor, size: int) -> torch.Tensor:
    """Resize so the long side is ``size``, in premultiplied space (antialiased bicubic for shrinking)."""
    h, w = rgba.shape[-2:]
    scale = size / max(h, w)
    new_hw = (max(1, round(h * scale)), max(1, round(w * scale)))
    return resize_premultiplied(rgba, new_hw)


def resize_premultiplied(rgba: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """Resize an RGBA tensor ``(..., 4, H, W)`` to ``size`` in premultiplied space, so hidden colour cannot bleed."""
    if tuple(rgba.shape[-2:]) == tuple(size):
        return rgba
    batched = rgba if rgba.dim() == 4 else rgba[None]
    pm = F.interpolate(premultiply(batched), size=size, mode="bicubic", antialias=True, align_corners=False)
    out = unpremultiply(pm.clamp(0, 1))
    return out if rgba.dim() == 4 else out[0]


def center_crop(image: torch.Tensor, size: int) -> torch.Tensor:
    """Centre crop ``(..., C, H, W)`` to ``size × size`` (the image must be at least that large)."""
    h, w = image.shape[-2:]
    if h < size or w < size:
        raise ValueError(f"cannot crop {h}x{w} to {size}x{size}")
    top, left = (h - size) // 2, (w - size) // 2
    return image[..., top : top + size, left : left + size]


def pad_to_multiple(rgba: torch.Tensor, multiple: int = 8) -> tuple[torch.Tensor, tuple[int, int]]:
    """Pad bottom/right with transparent pixels to a multiple of ``multiple``; returns the padded image and (H, W)."""
    h, w = rgba.shape[-2:]
    ph, pw = (-h) % multiple, (-w) % multiple
    return F.pad(rgba, (0, pw, 0, ph), value=0.0), (h, w)


def list_images(folder: str | os.PathLike) -> list[Path]:
    """Every image file under ``folder`` (recursively), sorted, as paths.

    Dangling symbolic links with an image suffix are listed too, so that reading them reports them by name
    instead of their silently going missing.
    """
    folder = Path(folder)
    if not folder.is_dir():
        raise NotADirectoryError(f"{folder}: not a folder")
    return sorted(p for p in folder.rglob("*")
                  if p.suffix.lower() in IMAGE_SUFFIXES and (p.is_file() or p.is_symlink() and not p.exists()))
