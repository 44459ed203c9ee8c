"""Lossless RGBA image I/O: any file → straight-alpha float tensor ``(4, H, W)`` in [0, 1], and back to PNG.

Modes handled: RGBA, RGB (α = 1), L, LA, P with or without transparency, CMYK, 8- and 16-bit PNGs (16-bit
precision is kept by reading those through pypng, because Pillow drops colour PNGs to 8 bits).
Resizing and cropping happen in premultiplied space so colour hidden under α = 0 never bleeds into soft edges.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

import numpy as np
import png
import torch
import torch.nn.functional as F
from PIL import Image

from alphavae.blending import premultiply, unpremultiply

IMAGE_SUFFIXES = (".png", ".webp", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".gif")


class ImageReadError(ValueError):
    """An image file is missing, corrupt or in a form we cannot read; the message names the file."""


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
        g = torch.from_numpy(np.asarray(im, dtype=np.float32)).clamp(0, 1)[None]
        return torch.cat([g.expand(3, -1, -1), torch.ones_like(g)])
    if im.mode == "CMYK":
        im = im.convert("RGB")
    if im.mode != "RGBA":
        im = im.convert("RGBA")  # L, LA, P (+ transparency), RGB, 1, La, RGBa ...
    return torch.from_numpy(np.asarray(im, dtype=np.float32) / 255.0).permute(2, 0, 1).contiguous()


def load_rgba(path: str | os.PathLike) -> torch.Tensor:
    """Read an image file as a straight-alpha RGBA float tensor ``(4, H, W)`` in [0, 1].

    Raises :class:`ImageReadError` naming the file if it is missing or unreadable.
    """
    path = Path(path)
    if not path.is_file():
        raise ImageReadError(f"{path}: no such file")
    try:
        if _png_bit_depth(path) == 16:
            return _read_png16(path)
        with Image.open(path) as im:
            im.load()
            return _pil_to_rgba(im)
    except ImageReadError:
        raise
    except Exception as exc:  # Pillow and pypng raise many types for corrupt files
        raise ImageReadError(f"{path}: cannot read image ({exc.__class__.__name__}: {exc})") from exc


def to_uint8(image: torch.Tensor) -> np.ndarray:
    """``(C, H, W)`` float in [0, 1] → ``(H, W, C)`` uint8, rounded to nearest."""
    return (image.detach().float().clamp(0, 1).cpu().permute(1, 2, 0).numpy() * 255 + 0.5).astype(np.uint8)


def atomic_write(path: str | os.PathLike, write) -> Path:
    """Call ``write(tmp_path)`` then rename to ``path``: an interrupted run leaves no half-written file."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    try:
        write(tmp)
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
    """Every image file under ``folder`` (recursively), sorted, as paths."""
    folder = Path(folder)
    if not folder.is_dir():
        raise NotADirectoryError(f"{folder}: not a folder")
    return sorted(p for p in folder.rglob("*") if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)
