"""Alpha blending: straight vs premultiplied colour, compositing over backgrounds, the 9 canonical backgrounds.

An RGBA image here is a float tensor ``(..., 4, H, W)`` in [0, 1] with *straight* colour c and alpha α.
Compositing over a solid background b is A(x, b) = c·α + b·(1 − α) (method.md, notation).
"""

from __future__ import annotations

import functools
from collections.abc import Mapping, Sequence

import torch

#: The 9 canonical solid backgrounds of the ALPHA metric (method.md §1), RGB in [0, 1].
BACKGROUNDS: dict[str, tuple[float, float, float]] = {
    "gray": (128 / 255, 128 / 255, 128 / 255),
    "black": (0.0, 0.0, 0.0),
    "white": (1.0, 1.0, 1.0),
    "red": (1.0, 0.0, 0.0),
    "green": (0.0, 1.0, 0.0),
    "blue": (0.0, 0.0, 1.0),
    "yellow": (1.0, 1.0, 0.0),
    "cyan": (0.0, 1.0, 1.0),
    "magenta": (1.0, 0.0, 1.0),
}


def resolve_backgrounds(names: Sequence[str] | Mapping[str, Sequence[float]] | None = None) -> dict[str, tuple[float, ...]]:
    """Return ``{name: rgb}`` for background names (default: all 9), or pass through an explicit mapping."""
    if names is None:
        return dict(BACKGROUNDS)
    if isinstance(names, Mapping):
        return {k: tuple(float(v) for v in rgb) for k, rgb in names.items()}
    unknown = [n for n in names if n not in BACKGROUNDS]
    if unknown:
        raise ValueError(f"unknown background(s) {unknown}; choose from {list(BACKGROUNDS)}")
    return {n: BACKGROUNDS[n] for n in names}


@functools.lru_cache(maxsize=512)
def _constant(values: tuple, device: torch.device, dtype: torch.dtype) -> torch.Tensor:
    return torch.tensor(values, device=device, dtype=dtype)


def constant(values: Sequence, like: torch.Tensor) -> torch.Tensor:
    """A small constant (nested numbers) on ``like``'s device and dtype, made once per (values, device, dtype).

    Making it anew in every step would copy it from host memory each time, and a blocking host-to-GPU copy
    synchronises the GPU stream: a training step would wait for the GPU several times. Read-only: it is shared.
    """
    def frozen(v):
        return tuple(frozen(x) for x in v) if isinstance(v, (list, tuple)) else float(v)
    if torch.compiler.is_compiling():  # traced by torch.compile: the graph holds the constant, no cache is needed
        return torch.tensor(frozen(values), device=like.device, dtype=like.dtype)
    return _constant(frozen(values), like.device, like.dtype)


def background_tensor(rgb: Sequence[float], like: torch.Tensor) -> torch.Tensor:
    """A ``(3, 1, 1)`` colour tensor on ``like``'s device and dtype, broadcastable over an image."""
    return constant(rgb, like).view(3, 1, 1)


def composite(rgba: torch.Tensor, background: Sequence[float] | torch.Tensor) -> torch.Tensor:
    """Composite straight-alpha RGBA over a solid background: c·α + b·(1 − α). Returns ``(..., 3, H, W)``."""
    colour, alpha = rgba[..., :3, :, :], rgba[..., 3:4, :, :]
    b = background if isinstance(background, torch.Tensor) else background_tensor(background, rgba)
    return colour * alpha + b * (1 - alpha)


def premultiply(rgba: torch.Tensor) -> torch.Tensor:
    """Straight → premultiplied: colour times alpha. Hidden colour under α = 0 becomes 0."""
    return torch.cat([rgba[..., :3, :, :] * rgba[..., 3:4, :, :], rgba[..., 3:4, :, :]], dim=-3)


def unpremultiply(rgba_pm: torch.Tensor, eps: float = 1e-6) -> torch.Tensor:
    """Premultiplied → straight. Where α ≈ 0 the colour is undefined; we set it to 0."""
    alpha = rgba_pm[..., 3:4, :, :]
    colour = torch.where(alpha > eps, rgba_pm[..., :3, :, :] / alpha.clamp_min(eps), torch.zeros_like(rgba_pm[..., :3, :, :]))
    return torch.cat([colour.clamp(0, 1), alpha], dim=-3)


def checkerboard(height: int, width: int, tile: int = 8, light: float = 0.8, dark: float = 0.6) -> torch.Tensor:
    """The usual transparency checkerboard as an RGB ``(3, H, W)`` tensor, for display only."""
    ys = torch.arange(height).view(-1, 1) // tile
    xs = torch.arange(width).view(1, -1) // tile
    board = torch.where((ys + xs) % 2 == 0, light, dark).float()
    return board.expand(3, height, width).clone()


def over_checkerboard(rgba: torch.Tensor, tile: int = 8) -> torch.Tensor:
    """Composite an RGBA image over a checkerboard (display of transparency)."""
    board = checkerboard(rgba.shape[-2], rgba.shape[-1], tile).to(rgba)
    return composite(rgba, board)


def to_vae_range(x: torch.Tensor) -> torch.Tensor:
    """[0, 1] → [-1, 1], on all channels, as VAEs expect (x̃ = 2x − 1)."""
    return x * 2 - 1


def from_vae_range(x: torch.Tensor) -> torch.Tensor:
    """[-1, 1] → [0, 1], clamped."""
    return ((x + 1) / 2).clamp(0, 1)
