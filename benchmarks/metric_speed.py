"""Speed of the ALPHA metric: ours (batched, exact, in memory, CPU or GPU) next to the published approach.

The published approach (method.md §1): composite each image over each background, write the composites
as JPEG quality 75 files, read them back one file at a time and score one image at a time (PSNR in numpy,
SSIM on luma with scikit-image, LPIPS per image). Ours: :func:`alphavae.metric.alpha.alpha_metric` on whole
batches, all backgrounds at once, no files, no JPEG. Both score PSNR + SSIM (+ LPIPS where real weights
exist) over the 9 backgrounds on the same N real RGBA images (long side 256, centred on a 256² canvas).

It also prints what the JPEG step does to PSNR, for a mildly and a strongly degraded prediction.

    python benchmarks/metric_speed.py --images ../shared/data/rgba-train --n 32 --device cpu
    python benchmarks/metric_speed.py --images .gpu/bench --n 64 --device cuda --json out.json
"""

from __future__ import annotations

import argparse
import json
import platform
import random
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from skimage.metrics import structural_similarity

from alphavae.blending import BACKGROUNDS
from alphavae.training.data import RGBAFolder
from alphavae.paths import shared_data_dir
from alphavae.imageio import list_images
from alphavae.metric.alpha import LUMA_BT601, alpha_metric
from alphavae.metric.backbones import lpips_or_reason


def load_images(folder: Path, n: int, size: int, seed: int = 0) -> torch.Tensor:
    """``n`` images picked at random (seeded) from ``folder``, as ``(n, 4, size, size)``."""
    files = list_images(folder)
    if len(files) < n:
        raise SystemExit(f"{folder}: {len(files)} images, need {n}")
    chosen = sorted(random.Random(seed).sample(files, n))
    data = RGBAFolder(folder, size=size, files=chosen)
    return torch.stack([data[i] for i in range(n)])


def degrade(target: torch.Tensor, noise: float, seed: int = 0) -> torch.Tensor:
    """A stand-in reconstruction: Gaussian noise of std ``noise`` on all four channels."""
    g = torch.Generator().manual_seed(seed)
    return (target + noise * torch.randn(target.shape, generator=g)).clamp(0, 1)


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


def time_ours(pred, target, device, metrics, lpips_model, batch_size, repeats=3):
    """Median seconds of the whole metric (host → device copy included) and its report."""
    report = alpha_metric(pred.to(device), target.to(device), metrics=metrics, lpips_model=lpips_model, batch_size=batch_size)
    times = []
    for _ in range(repeats):
        _sync(device)
        start = time.perf_counter()
        report = alpha_metric(pred.to(device), target.to(device), metrics=metrics, lpips_model=lpips_model, batch_size=batch_size)
        _sync(device)
        times.append(time.perf_counter() - start)
    return statistics.median(times), report


def published_pipeline(pred, target, lpips_model, device, quality=75):
    """Composite → JPEG files → read back one at a time → score one image at a time.

    Returns (seconds, per image × background PSNRs)."""
    luma_w = np.asarray(LUMA_BT601)
    psnrs = []
    with tempfile.TemporaryDirectory() as tmp:
        start = time.perf_counter()
        for i in range(pred.shape[0]):
            for name, colour in BACKGROUNDS.items():
                for kind, x in (("pred", pred[i]), ("target", target[i])):
                    rgba = x.permute(1, 2, 0).numpy().astype(np.float64)
                    comp = rgba[..., :3] * rgba[..., 3:] + np.asarray(colour) * (1 - rgba[..., 3:])
                    Image.fromarray((comp * 255 + 0.5).astype(np.uint8)).save(f"{tmp}/{kind}_{i}_{name}.jpg", quality=quality)
        for i in range(pred.shape[0]):
            for name in BACKGROUNDS:
                p, t = (np.asarray(Image.open(f"{tmp}/{kind}_{i}_{name}.jpg"), dtype=np.float64) / 255 for kind in ("pred", "target"))
                with np.errstate(divide="ignore"):
                    psnrs.append(10 * np.log10(1 / np.mean((p - t) ** 2)))
                structural_similarity(t @ luma_w, p @ luma_w, gaussian_weights=True, sigma=1.5,
                                      use_sample_covariance=False, data_range=1.0)
                if lpips_model is not None:
                    with torch.no_grad():
                        pt, tt = (torch.from_numpy(a).permute(2, 0, 1)[None].float().to(device) * 2 - 1 for a in (p, t))
                        lpips_model(pt, tt)
        _sync(device)
        return time.perf_counter() - start, torch.tensor(psnrs)


def finite_mean(psnrs: torch.Tensor) -> tuple[float, int]:
    """Mean of the finite PSNRs and the count of infinite ones (JPEG can make a pair exactly identical)."""
    finite = psnrs[torch.isfinite(psnrs)]
    return float(finite.double().mean()), int((~torch.isfinite(psnrs)).sum())


def all_psnrs(report) -> torch.Tensor:
    """Every per image × background PSNR of a report."""
    return torch.cat([v["psnr"] for v in report.per_image["backgrounds"].values()])


def machine(device: torch.device) -> str:
    cpu = f"{platform.processor() or platform.machine()}, {torch.get_num_threads()} torch threads"
    return f"{torch.cuda.get_device_name(device)} (CPU: {cpu})" if device.type == "cuda" else f"CPU: {cpu}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=Path, help="folder of RGBA images (default: the shared rgba-train set)")
    parser.add_argument("--n", type=int, default=32, help="number of images")
    parser.add_argument("--size", type=int, default=256)
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--device", choices=("auto", "cpu", "cuda"), default="auto")
    parser.add_argument("--lpips-weights", type=Path, help="folder of the converted backbones (default: the cache)")
    parser.add_argument("--skip-published", action="store_true", help="time only ours")
    parser.add_argument("--json", type=Path, help="also write the numbers here")
    args = parser.parse_args()

    device = torch.device("cuda" if args.device == "cuda" or (args.device == "auto" and torch.cuda.is_available()) else "cpu")
    folder = args.images or shared_data_dir() / "rgba-train"
    target = load_images(folder, args.n, args.size)
    pred = degrade(target, noise=0.02)
    lpips_model, reason = lpips_or_reason("alex", device, args.lpips_weights)
    lpips_note = f"LPIPS unavailable ({reason})" if reason else "LPIPS-Alex on the fetched ImageNet backbone"
    metrics = ("psnr", "ssim", "lpips") if lpips_model is not None else ("psnr", "ssim")
    print(f"machine: {machine(device)}")
    print(f"{args.n} real RGBA images from {folder}, {args.size} px, 9 backgrounds, metrics {'+'.join(metrics)}; {lpips_note}")

    results: dict = {"machine": machine(device), "n_images": args.n, "size": args.size, "metrics": list(metrics), "lpips": lpips_note}
    seconds, _ = time_ours(pred, target, device, metrics, lpips_model, args.batch_size)
    results["ours_images_per_s"] = args.n / seconds
    print(f"ours (exact, batched, in memory, {device.type}): {args.n / seconds:8.2f} images/s  ({seconds:.3f} s)")
    if not args.skip_published:
        seconds, _ = published_pipeline(pred, target, lpips_model, device)
        results["published_images_per_s"] = args.n / seconds
        print(f"published approach (JPEG q75 files, one at a time): {args.n / seconds:8.2f} images/s  ({seconds:.3f} s)")

    print("exact vs JPEG q75 PSNR, mean over images x 9 backgrounds (pairs JPEG made identical = infinite, left out):")
    results["jpeg_effect"] = []
    for label, noise in (("mild", 0.008), ("strong", 0.03)):
        p = degrade(target, noise=noise, seed=1)
        exact, _ = finite_mean(all_psnrs(alpha_metric(p.to(device), target.to(device), metrics=("psnr",), batch_size=args.batch_size)))
        jpeg, jpeg_inf = finite_mean(all_psnrs(alpha_metric(p, target, metrics=("psnr",), jpeg_quality=75, batch_size=args.batch_size)))
        row = {"degradation": f"{label} (noise std {noise})", "exact_psnr": exact, "jpeg75_psnr": jpeg,
               "jpeg75_infinite_pairs": jpeg_inf, "pairs": args.n * len(BACKGROUNDS), "difference_db": jpeg - exact}
        line = f"  {row['degradation']}: exact {exact:.2f} dB, through JPEG {jpeg:.2f} dB ({jpeg - exact:+.2f} dB, {jpeg_inf}/{row['pairs']} pairs identical after JPEG)"
        if not args.skip_published:
            row["published_pipeline_psnr"], _ = finite_mean(published_pipeline(p, target, None, device)[1])
            line += f"; published pipeline {row['published_pipeline_psnr']:.2f} dB"
        results["jpeg_effect"].append(row)
        print(line)
    if args.json:
        args.json.write_text(json.dumps(results, indent=2) + "\n")


if __name__ == "__main__":
    main()
