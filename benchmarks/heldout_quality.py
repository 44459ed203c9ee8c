"""The shipped models on images they never trained on: the numbers the model issue's "done when" names.

Sets: the openclipart held-out split (``configs/split-rgba-train.json`` of ``rgba-train``) and any out-of-domain
folder of RGBA images (``--ood``; ``scripts/rebuild_ood_rgba.py`` makes one from ``hedgewars-data``, a package no
training set uses). Every image: long side 256, centred on a transparent 256² square (as training sees them).

* RGB VAE (``--rgb``): the white composite reconstructed — PSNR and LPIPS-Alex — beside two bicubic baselines (down
  and up, :func:`alphavae.vae.reconstruct.bicubic_baseline`): to as many values as this VAE's latent holds, and
  the model issue's own "bicubic ×7" (as many values as SD's 4-channel latent, 8·√(3/4) ≈ 6.93).
* RGBA VAE (``--rgba``): the ALPHA metric (mean PSNR and LPIPS-Alex over the 9 backgrounds, alpha PSNR) beside its
  RGB ceiling, the RGB VAE on the opaque composite over each background (:func:`alphavae.training.ablation.rgb_ceiling`),
  and the shares of transparent / soft / opaque pixels of the images and of their reconstructions
  (:func:`alphavae.metric.alpha_shares.alpha_statistics`): the soft alpha any generator decoded by this VAE inherits.

    python benchmarks/heldout_quality.py --ood DIR --json heldout.json
    python benchmarks/heldout_quality.py --ood DIR --no-rgba --json rgb.json   # the RGB VAE alone: minutes
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import time
from pathlib import Path

import torch

from alphavae.blending import composite
from alphavae.imageio import list_images
from alphavae.metric.alpha import alpha_metric, lpips_distance, psnr
from alphavae.metric.alpha_shares import alpha_statistics
from alphavae.metric.backbones import load_lpips
from alphavae.paths import configs_dir
from alphavae.training.ablation import rgb_ceiling
from alphavae.training.data import RGBAFolder, train_and_heldout
from alphavae.vae.loading import load_vae, torch_device, weights_sha256
from alphavae.vae.reconstruct import bicubic_baseline, latent_matched_factor, reconstruct

SIZE = 256
BATCH = 16
WHITE = (1.0, 1.0, 1.0)
#: The model issue's baseline, "bicubic ×7 down-up": the factor at which an RGB image keeps as many values as a
#: 4-channel latent at 1/8 resolution (SD's VAE, and this project's first RGB VAE).
ISSUE_BICUBIC_FACTOR = 8 * math.sqrt(3 / 4)


def image_sets(ood: Path | None, heldout: bool = True) -> dict[str, list[Path]]:
    """The sets to score, by name: the openclipart held-out split (``heldout``) and the images under ``ood``."""
    sets = {"openclipart held-out": train_and_heldout("rgba-train", str(configs_dir() / "split-rgba-train.json"))[1]
            } if heldout else {}
    if ood is not None:
        files = list_images(ood)
        if not files:
            raise ValueError(f"--ood {ood}: no images there")
        sets[f"out-of-domain ({ood.name})"] = files
    return sets


def load_set(files: list[Path]) -> torch.Tensor:
    """``(N, 4, SIZE, SIZE)`` straight-alpha images in [0, 1]."""
    return RGBAFolder(files[0].parent, size=SIZE, files=files).load_all()


def rgb_scores(rgb_vae, images: torch.Tensor, lpips) -> dict[str, dict[str, float]]:
    """PSNR and LPIPS-Alex of the RGB VAE and of both bicubic baselines (latent-matched, the issue's ×6.93) on
    white composites."""
    white = composite(images, WHITE)
    factor = latent_matched_factor(rgb_vae)
    out = {}
    for name, pred in (("vae", reconstruct(rgb_vae, white, BATCH)), ("bicubic", bicubic_baseline(white, factor)),
                       ("bicubic_issue", bicubic_baseline(white, ISSUE_BICUBIC_FACTOR))):
        out[name] = {"psnr": float(psnr(pred, white).clamp(max=100).mean()),
                     "lpips_alex": float(torch.cat([lpips_distance(lpips, pred[i:i + BATCH], white[i:i + BATCH])
                                                    for i in range(0, len(white), BATCH)]).mean())}
    out["bicubic"]["factor"] = factor
    out["bicubic_issue"]["factor"] = ISSUE_BICUBIC_FACTOR
    return out


def rgba_scores(rgba_vae, rgb_vae, images: torch.Tensor, lpips) -> dict[str, float]:
    """The RGBA VAE's ALPHA metric means and its RGB ceiling's."""
    recon = reconstruct(rgba_vae, images, BATCH)
    report = alpha_metric(recon, images, lpips_model=lpips)
    ceiling = rgb_ceiling(rgb_vae, images, images.device, lpips)["mean"]
    return {"psnr": report.mean["psnr"], "lpips_alex": report.mean["lpips"], "alpha_psnr": report.alpha["psnr"],
            "ceiling_psnr": ceiling["psnr"], "ceiling_lpips_alex": ceiling.get("lpips"),
            "alpha_shares_real": alpha_statistics(images), "alpha_shares_recon": alpha_statistics(recon)}


def checks(rgb: dict, rgba: dict | None) -> dict[str, bool]:
    """The model issue's thresholds on one set (the RGBA ones only where the RGBA VAE was scored)."""
    out = {"rgb_psnr_at_least_27": rgb["vae"]["psnr"] >= 27, "rgb_lpips_at_most_0.10": rgb["vae"]["lpips_alex"] <= 0.10,
           "rgb_at_least_bicubic_plus_5": rgb["vae"]["psnr"] >= rgb["bicubic"]["psnr"] + 5,
           "rgb_at_least_issue_bicubic_x7_plus_5": rgb["vae"]["psnr"] >= rgb["bicubic_issue"]["psnr"] + 5}
    if rgba is not None:
        out |= {"rgba_within_1db_of_ceiling": rgba["psnr"] >= rgba["ceiling_psnr"] - 1,
                "alpha_psnr_at_least_25": rgba["alpha_psnr"] >= 25}
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rgb", default="embedded", help="SPEC of the RGB VAE")
    parser.add_argument("--rgba", default="embedded-rgba", help="SPEC of the RGBA VAE")
    parser.add_argument("--ood", type=Path, help="a folder of out-of-domain RGBA images")
    parser.add_argument("--no-heldout", action="store_true", help="score only the --ood folder")
    parser.add_argument("--no-rgba", action="store_true", help="score only the RGB VAE (minutes, not half an hour)")
    parser.add_argument("--device", choices=("auto", "cpu", "cuda"), default="cpu",
                        help="where to compute (auto: cuda if present; on a GPU both sets take seconds)")
    parser.add_argument("--json", type=Path, help="written after each set (a stopped run keeps what it scored)")
    args = parser.parse_args(argv)
    start = time.perf_counter()
    if args.ood is None and args.no_heldout:
        parser.error("--no-heldout needs --ood DIR")
    try:
        sets = image_sets(args.ood, heldout=not args.no_heldout)
    except ValueError as err:
        parser.error(str(err))
    device = torch_device(args.device)
    rgb_vae, lpips = load_vae(args.rgb, device=device), load_lpips("alex", device)
    rgba_vae = None if args.no_rgba else load_vae(args.rgba, device=device)
    result = {"rgb": args.rgb, "rgb_sha256": weights_sha256(args.rgb), "rgba": None if args.no_rgba else args.rgba,
              "rgba_sha256": None if args.no_rgba else weights_sha256(args.rgba), "image_size": SIZE,
              "device": torch.cuda.get_device_name(device) if device.type == "cuda" else f"CPU, {torch.get_num_threads()} threads",
              "sets": {}}
    for name, files in sets.items():
        images = load_set(files).to(device)
        rgb = rgb_scores(rgb_vae, images, lpips)
        rgba = None if rgba_vae is None else rgba_scores(rgba_vae, rgb_vae, images, lpips)
        result["sets"][name] = {"images": len(files), "rgb_white": rgb, "rgba": rgba, "checks": checks(rgb, rgba)}
        print(f"{name} ({len(files)} images)\n"
              f"  RGB VAE {args.rgb}, white composites: {rgb['vae']['psnr']:.2f} dB, LPIPS-Alex {rgb['vae']['lpips_alex']:.3f}"
              f"  (bicubic x{rgb['bicubic']['factor']:.2f}: {rgb['bicubic']['psnr']:.2f} dB, {rgb['bicubic']['lpips_alex']:.3f};"
              f" the issue's bicubic x{ISSUE_BICUBIC_FACTOR:.2f}: {rgb['bicubic_issue']['psnr']:.2f} dB,"
              f" {rgb['bicubic_issue']['lpips_alex']:.3f})", flush=True)
        if rgba is not None:
            print(f"  RGBA VAE {args.rgba}: mean of 9 {rgba['psnr']:.2f} dB, LPIPS-Alex {rgba['lpips_alex']:.3f}, "
                  f"alpha PSNR {rgba['alpha_psnr']:.2f} dB; RGB ceiling {rgba['ceiling_psnr']:.2f} dB; soft alpha "
                  f"{100 * rgba['alpha_shares_recon']['soft']:.1f} % (real {100 * rgba['alpha_shares_real']['soft']:.1f} %)", flush=True)
        print(f"  checks: {result['sets'][name]['checks']}", flush=True)
        result["seconds"] = time.perf_counter() - start
        result["command"] = "python benchmarks/heldout_quality.py " + " ".join(argv if argv is not None else sys.argv[1:])
        if args.json:
            args.json.write_text(json.dumps(result, indent=1) + "\n")
    print(f"({result['seconds']:.0f} s on {result['device']})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
