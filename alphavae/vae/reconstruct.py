"""Encode → decode through a VAE (posterior mode), and the trivial baseline a reader can judge it against.

:func:`reconstruct` is what ``alphavae reconstruct`` and the quality measurements call: images in [0, 1]
are padded to a multiple of 8 (the VAE's downsampling), sent through ``encode(x).latent_dist.mode()`` and
``decode``, and cropped back. :func:`bicubic_baseline` shrinks an image with bicubic interpolation so that
it keeps as many numbers as the VAE's latent does, then enlarges it back: a VAE worth its latent must beat it.
:func:`reconstruct_folder` runs a whole folder (what ``alphavae reconstruct`` calls).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path

import torch
import torch.nn.functional as F
from diffusers import AutoencoderKL, UNet2DModel
from tqdm.auto import tqdm

from alphavae.blending import composite, from_vae_range, to_vae_range
from alphavae.imageio import (
    ImageReadError,
    list_images,
    load_rgba,
    pad_to_multiple,
    resize_long_side,
    save_png,
)

#: Images per encode → decode where a caller scores a whole set (the ablation, the generation table).
RECONSTRUCT_BATCH = 16


@torch.no_grad()
def reconstruct(vae: AutoencoderKL, x01: torch.Tensor, batch_size: int | None = None) -> torch.Tensor:
    """``(N, C, H, W)`` in [0, 1] → the VAE's reconstruction (posterior mode), same shape, in [0, 1].

    The one encode → decode of the project: the CLI, the trainer's samples, the ablation and the notebooks call
    it. ``C`` must equal the VAE's ``in_channels``. Padding (bottom/right, replicated edge pixels, so the
    border is not a fake edge) to a multiple of 8 is removed from the output. ``batch_size`` sends the images
    through in chunks (on the VAE's device); the result is float32 on ``x01``'s device.
    """
    if x01.dim() != 4 or x01.shape[1] != vae.config.in_channels:
        raise ValueError(f"expected (N, {vae.config.in_channels}, H, W) images for this VAE, got {tuple(x01.shape)}")
    if batch_size is not None and len(x01) > batch_size:
        return torch.cat([reconstruct(vae, x01[i:i + batch_size]) for i in range(0, len(x01), batch_size)])
    h, w = x01.shape[-2:]
    factor = downsampling_factor(vae)
    padded = F.pad(x01, (0, (-w) % factor, 0, (-h) % factor), mode="replicate")
    param = next(vae.parameters())
    x = to_vae_range(padded.to(param.device, param.dtype))
    out = vae.decode(vae.encode(x).latent_dist.mode()).sample
    return from_vae_range(out.float())[..., :h, :w].to(x01.device)


def downsampling_factor(vae: AutoencoderKL | UNet2DModel) -> int:
    """Spatial downsampling of the latent (a UNet's: of its coarsest level): 2 per resolution level after the first
    (8 for SD's VAEs)."""
    return 2 ** (len(vae.config.block_out_channels) - 1)


def latent_matched_factor(vae: AutoencoderKL) -> float:
    """Downscaling factor s at which an RGB image keeps as many numbers as the latent.

    Latent: ``latent_channels · HW / f²`` numbers; shrunk image: ``in_channels · HW / s²``; equal when
    ``s = f · sqrt(in_channels / latent_channels)`` — 8·sqrt(3/4) ≈ 6.93 for SD's VAE on RGB.
    """
    return downsampling_factor(vae) * math.sqrt(vae.config.in_channels / vae.config.latent_channels)


def bicubic_baseline(x01: torch.Tensor, factor: float) -> torch.Tensor:
    """Shrink ``(N, C, H, W)`` by ``factor`` (antialiased bicubic), enlarge back (bicubic), clamp to [0, 1]."""
    h, w = x01.shape[-2:]
    small = F.interpolate(x01, size=(max(1, round(h / factor)), max(1, round(w / factor))), mode="bicubic", antialias=True, align_corners=False)
    return F.interpolate(small, size=(h, w), mode="bicubic", align_corners=False).clamp(0, 1)


def prepare(rgba: torch.Tensor, in_channels: int, size: int | None, background: tuple[float, float, float]) -> torch.Tensor:
    """One RGBA image ``(4, H, W)`` → the VAE's input in [0, 1]: long side ``size`` (premultiplied resize),
    padded bottom/right with transparent pixels to a multiple of 8 (cli.md), then RGBA for a 4-channel VAE or
    the composite over ``background`` for a 3-channel one. Crop the output back to the unpadded size."""
    if in_channels not in (3, 4):
        raise ValueError(f"a VAE with {in_channels} input channels cannot reconstruct RGBA or RGB images")
    if size is not None:
        rgba = resize_long_side(rgba, size)
    padded, _ = pad_to_multiple(rgba, 8)
    return padded if in_channels == 4 else composite(padded, background)


@dataclass
class FolderResult:
    """What :func:`reconstruct_folder` did: files written, and unreadable inputs with their reasons."""

    written: list[Path] = field(default_factory=list)
    bad_files: dict[Path, str] = field(default_factory=dict)


def _output_paths(files: list[Path], input_dir: Path, output_dir: Path) -> dict[Path, Path]:
    """Input → where its reconstruction goes; two inputs meeting at one output (``a.png`` and ``a.webp``), or an
    output landing on an input, is a ``ValueError`` naming both, raised before anything is written."""
    inputs = {path.resolve(): path for path in files}
    seen: dict[Path, Path] = {}
    targets: dict[Path, Path] = {}
    for path in files:
        target = output_dir / path.relative_to(input_dir).with_suffix(".png")
        key = target.resolve()
        if key in seen:
            raise ValueError(f"{seen[key]} and {path} would both be written to {target}; keep one image per name")
        if key in inputs:
            raise ValueError(f"the reconstruction of {path} would overwrite the input {inputs[key]}")
        seen[key] = path
        targets[path] = target
    return targets


def reconstruct_folder(vae: AutoencoderKL, input_dir: str | Path, output_dir: str | Path, size: int | None = None,
                       batch_size: int = 8, background: tuple[float, float, float] = (1.0, 1.0, 1.0)) -> FolderResult:
    """Reconstruct every image under ``input_dir`` into ``output_dir`` (same relative path and stem, ``.png``).

    Images of the same size are batched together; an unreadable image, or one whose reconstruction is not
    finite (NaN or inf from the VAE), is recorded by name and skipped; each output is written atomically.
    RGBA out for a 4-channel VAE, RGB for a 3-channel one. Inputs that would share an output name are refused
    up front (``ValueError``).
    """
    input_dir, output_dir = Path(input_dir), Path(output_dir)
    files = list_images(input_dir)
    if not files:
        raise FileNotFoundError(f"{input_dir}: no image files found")
    targets = _output_paths(files, input_dir, output_dir)
    in_channels = vae.config.in_channels
    result = FolderResult()
    pending: dict[tuple[int, int], list[tuple[Path, torch.Tensor]]] = {}  # unpadded (H, W) → images

    def flush(key: tuple[int, int]) -> None:
        items = pending.pop(key)
        outputs = reconstruct(vae, torch.stack([x for _, x in items]))[..., : key[0], : key[1]]
        for (path, _), y in zip(items, outputs):
            if torch.isfinite(y).all():
                result.written.append(save_png(y, targets[path]))
            else:
                result.bad_files[path] = f"{path}: the VAE's reconstruction has NaN or infinite values; not written"
        progress.update(len(items))

    with tqdm(total=len(files), desc="reconstruct", unit="img") as progress:
        for path in files:
            try:
                rgba = load_rgba(path)
            except ImageReadError as exc:
                result.bad_files[path] = str(exc)
                progress.update(1)
                continue
            if size is not None:
                rgba = resize_long_side(rgba, size)
            key = tuple(rgba.shape[-2:])
            x = prepare(rgba, in_channels, None, background)
            pending.setdefault(key, []).append((path, x))
            if len(pending[key]) >= batch_size:
                flush(key)
        for key in list(pending):
            flush(key)
    return result
