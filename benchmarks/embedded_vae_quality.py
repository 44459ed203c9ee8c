"""How good is an RGB VAE? Reconstruction PSNR/SSIM next to the latent-matched bicubic baseline.

Two test sets, both real images the VAE never trained on:
- held-out photo crops (:func:`alphavae.vae.pretrain_data.split_folder` of ``rgb-photos``): centre crops of 128 and
  256 px of each held-out photo at its stored size (long side 1024) and shrunk by 2 and 4, so smooth and
  detailed content both count;
- the RGBA sample (``data/rgba-sample``), long side 256 centred on a transparent 256² square, composited
  over each of the 9 backgrounds (an RGB VAE sees RGB; the padding is flat background for both methods).
Metrics come from :mod:`alphavae.metric.alpha` (PSNR on RGB; SSIM on BT.601 luma, as the ALPHA metric). LPIPS is
reported only when real AlexNet weights exist (never with a random backbone).

    python benchmarks/embedded_vae_quality.py [--vae embedded] [--photos DIR] [--rgba DIR] [--json FILE]
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import torch
import torch.nn.functional as F

from alphavae.blending import BACKGROUNDS, composite
from alphavae.paths import sample_dir, shared_data_dir
from alphavae.training.data import square_pad
from alphavae.imageio import center_crop, list_images, load_rgba, resize_long_side
from alphavae.metric.alpha import psnr, ssim
from alphavae.metric.backbones import lpips_or_reason
from alphavae.vae.pretrain_data import load_photo, split_folder
from alphavae.vae.reconstruct import bicubic_baseline, latent_matched_factor, reconstruct
from alphavae.vae.loading import load_vae


def photo_crops(folder: Path, size: int, scales=(1.0, 0.5, 0.25)) -> torch.Tensor:
    """Centre ``size`` crops of every held-out photo at each scale where it fits: ``(N, 3, size, size)``."""
    crops = []
    for path in split_folder(folder)[1]:
        photo = load_photo(path)[None]
        for s in scales:
            scaled = photo if s == 1 else F.interpolate(photo, scale_factor=s, mode="bicubic", antialias=True).clamp(0, 1)
            if min(scaled.shape[-2:]) >= size:
                crops.append(center_crop(scaled[0], size))
    return torch.stack(crops)


def score(vae, images: torch.Tensor, factor: float, batch: int = 8) -> dict[str, dict[str, float]]:
    """Mean PSNR and SSIM of the VAE's reconstruction and of the bicubic baseline on ``images``."""
    rows = {"vae": {"psnr": [], "ssim": []}, "bicubic": {"psnr": [], "ssim": []}}
    for i in range(0, len(images), batch):
        x = images[i : i + batch]
        for name, y in (("vae", reconstruct(vae, x)), ("bicubic", bicubic_baseline(x, factor))):
            rows[name]["psnr"].append(psnr(y, x).clamp(max=100))
            rows[name]["ssim"].append(ssim(y, x))
    return {m: {k: torch.cat(v).mean().item() for k, v in d.items()} for m, d in rows.items()}


def sample_composites(folder: Path, size: int = 256) -> dict[str, torch.Tensor]:
    """Every RGBA sample image (long side ``size``, centred on a transparent square) composited over each
    background: ``{background: (N, 3, size, size)}``. One shape for all keeps the CPU fast."""
    images = torch.stack([square_pad(resize_long_side(load_rgba(p), size), size) for p in list_images(folder)])
    return {name: composite(images, rgb) for name, rgb in BACKGROUNDS.items()}


def evaluate(vae_spec: str, photos: Path, rgba: Path) -> dict:
    """The full table as a dict: photo crops at 128 and 256 px, then the sample over each background."""
    vae = load_vae(vae_spec)
    factor = latent_matched_factor(vae)
    result = {"vae": vae_spec, "bicubic_factor": factor, "photos": {}, "rgba_sample": {},
              "lpips": lpips_or_reason("alex")[1] or "available (not computed by this script)"}
    for size in (128, 256):
        crops = photo_crops(photos, size)
        result["photos"][f"{size}px ({len(crops)} crops)"] = score(vae, crops, factor)
    for name, images in sample_composites(rgba).items():
        result["rgba_sample"][name] = score(vae, images, factor)
    bgs = result["rgba_sample"].values()
    result["rgba_sample"]["mean of 9"] = {m: {k: sum(b[m][k] for b in bgs) / len(bgs) for k in ("psnr", "ssim")} for m in ("vae", "bicubic")}
    return result


def table(result: dict) -> str:
    """Markdown table: one row per test set, VAE and bicubic PSNR/SSIM side by side."""
    lines = [f"VAE `{result['vae']}` vs bicubic down/up by {result['bicubic_factor']:.2f}x (same number of values as the latent)",
             "", "| test set | VAE PSNR | VAE SSIM | bicubic PSNR | bicubic SSIM |", "|---|---|---|---|---|"]
    rows = [(f"held-out photos {k}", v) for k, v in result["photos"].items()]
    rows += [(f"RGBA sample 256px over {k}", v) for k, v in result["rgba_sample"].items()]
    for label, v in rows:
        lines.append(f"| {label} | {v['vae']['psnr']:.2f} | {v['vae']['ssim']:.4f} | {v['bicubic']['psnr']:.2f} | {v['bicubic']['ssim']:.4f} |")
    lines += ["", f"LPIPS: {result['lpips']}"]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    """Parse arguments, evaluate, print the table (and write JSON if asked)."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--vae", default="embedded", help="SPEC of an RGB VAE (default: embedded)")
    parser.add_argument("--photos", type=Path, default=None, help="photo folder (default: shared rgb-photos)")
    parser.add_argument("--rgba", type=Path, default=None, help="RGBA images (default: data/rgba-sample)")
    parser.add_argument("--json", type=Path, default=None, help="also write the numbers here")
    args = parser.parse_args(argv)
    torch.manual_seed(0)
    start = time.perf_counter()
    result = evaluate(args.vae, args.photos or shared_data_dir() / "rgb-photos", args.rgba or sample_dir())
    print(table(result))
    print(f"\n({time.perf_counter() - start:.0f} s, torch {torch.__version__}, {torch.get_num_threads()} CPU threads)")
    if args.json:
        args.json.write_text(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
