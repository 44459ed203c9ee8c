"""Where an RGBA VAE's alpha error lies: on the shapes' edges or off them, per image set.

The shipped ``embedded-rgba`` is within 1 dB of its RGB ceiling on the openclipart held-out split but 1.78 dB under it
on the out-of-domain hedgewars sprites. This splits the alpha squared error into an edge band (pixels within
``--band`` pixels of where the target's alpha crosses ½) and the rest (shape interiors and background), so that a
change aimed at one of them can be judged by the part of the error it targets (stop 24's reading: benchmarks/NOTES.md).

    python benchmarks/alpha_edges.py --ood DIR [--vae embedded-rgba] [--band 1] [--json FILE]
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import torch
import torch.nn.functional as F

from alphavae.imageio import atomic_write
from alphavae.metric.alpha import psnr
from alphavae.vae.loading import load_vae, torch_device
from alphavae.vae.reconstruct import reconstruct

sys.path.insert(0, str(Path(__file__).resolve().parent))
from heldout_quality import BATCH, image_sets, load_set  # noqa: E402  (the sets heldout_quality.py scores)


def edge_band(alpha: torch.Tensor, band: int) -> torch.Tensor:
    """Pixels of ``(N, 1, H, W)`` alpha within ``band`` pixels of a crossing of ½ (a boolean mask)."""
    inside = (alpha >= 0.5).float()
    k = 2 * band + 1
    grown = F.max_pool2d(inside, k, stride=1, padding=band)
    shrunk = -F.max_pool2d(-inside, k, stride=1, padding=band)
    return grown != shrunk


def split_error(pred_alpha: torch.Tensor, alpha: torch.Tensor, band: int) -> dict[str, float]:
    """Alpha PSNR (per image, then the mean: as the ALPHA metric reports it) overall, on the edge band and off it,
    with how many images each mean is over: an image with no pixel in a region, or with no error there (infinite
    PSNR), is left out of that region's mean. And the band's share of the pixels and of the squared error (pooled)."""
    pred_alpha = pred_alpha.clamp(0, 1)
    edges = edge_band(alpha, band)
    out: dict[str, float] = {}
    for name, mask in (("alpha", None), ("edge", edges), ("off_band", ~edges)):
        values = psnr(pred_alpha, alpha, mask)
        finite = values[torch.isfinite(values)]
        out[f"{name}_psnr"], out[f"{name}_images"] = finite.mean().item(), len(finite)
    err = (pred_alpha - alpha) ** 2
    return {**out, "edge_pixels_pct": 100 * edges.float().mean().item(),
            "edge_error_pct": 100 * (err[edges].sum() / err.sum()).item()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--vae", default="embedded-rgba", help="the RGBA VAE (a SPEC: shipped name, folder or hub id)")
    parser.add_argument("--ood", type=Path, help="a folder of out-of-domain RGBA images (scripts/rebuild_ood_rgba.py)")
    parser.add_argument("--band", type=int, default=1, help="edge band half-width in pixels")
    parser.add_argument("--device", default="auto")
    parser.add_argument("--json", type=Path, help="also write the figures here")
    args = parser.parse_args()
    if args.band < 1:
        parser.error(f"--band {args.band}: must be at least 1 (0 pixels would make an empty band)")
    device = torch_device(args.device)
    vae = load_vae(args.vae, device=device)
    try:
        sets = image_sets(args.ood)
    except ValueError as err:
        parser.error(str(err))
    print(f"{'set':28s} {'n':>4s} {'α PSNR':>7s} {'edges':>7s} {'off band':>8s} {'edge px %':>9s} {'edge err %':>10s}")
    table = {"vae": args.vae, "band": args.band, "sets": {}}
    for name, files in sets.items():
        images = load_set(files)
        recon = reconstruct(vae, images, BATCH)
        r = split_error(recon[:, 3:4].float().cpu(), images[:, 3:4], args.band)
        table["sets"][name] = {"n": len(files), **r}
        print(f"{name:28s} {len(files):4d} {r['alpha_psnr']:7.2f} {r['edge_psnr']:7.2f} {r['off_band_psnr']:8.2f} "
              f"{r['edge_pixels_pct']:9.1f} {r['edge_error_pct']:10.1f}", flush=True)
        left_out = {k.removesuffix("_images"): len(files) - v for k, v in r.items() if k.endswith("_images") and v < len(files)}
        if left_out:
            print(f"  left out of a mean (no pixels there, or no error): {left_out}", flush=True)
    if args.json is not None:
        atomic_write(args.json, lambda tmp: Path(tmp).write_text(json.dumps(table, indent=1) + "\n"))


if __name__ == "__main__":
    main()
