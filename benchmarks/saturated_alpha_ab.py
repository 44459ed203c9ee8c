"""A/B of ``loss.free_alpha_overshoot`` on a CPU: continue training the shipped RGBA VAE both ways, equal steps.

Both arms start from the same weights (``--vae``, the shipped ``embedded-rgba`` by default), see the same batches
of the training split of ``rgba-train`` (never the held-out split) and train the same number of steps with
:func:`alphavae.training.finetune.finetune_steps` on ABMSE + prior KL (no LPIPS, reference KL or GAN: a CPU
budget); they differ only in ``free_alpha_overshoot``. Printed per arm, on the held-out split: the shares of
transparent / soft / opaque pixels of the reconstructions beside the real images'
(:func:`alphavae.metric.alpha_shares.alpha_statistics`), the ALPHA metric's mean PSNR over the 9 backgrounds and
its alpha PSNR. A small-budget check of the mechanism, not a trained model: the GPU run is
``CONFIG=configs/free_alpha_overshoot.json bash scripts/gpu_rgba_main.sh``.

    python benchmarks/saturated_alpha_ab.py --steps 300 --json runs/saturated_alpha_ab.json
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import torch

from alphavae.losses import AlphaVAEObjective, LossWeights
from alphavae.metric.alpha import alpha_metric
from alphavae.metric.alpha_shares import alpha_statistics
from alphavae.paths import configs_dir
from alphavae.training.data import RGBAFolder, train_and_heldout
from alphavae.training.finetune import finetune_steps
from alphavae.vae.loading import load_vae
from alphavae.vae.reconstruct import RECONSTRUCT_BATCH, reconstruct


def load(files: list[Path], size: int) -> torch.Tensor:
    """``(N, 4, size, size)`` straight-alpha images in [0, 1], as training sees them."""
    return RGBAFolder(files[0].parent, size=size, files=files).load_all()


def score(vae, heldout: torch.Tensor) -> dict:
    """Alpha shares of the reconstructions, mean PSNR over the 9 backgrounds and alpha PSNR on ``heldout``."""
    recon = reconstruct(vae, heldout, RECONSTRUCT_BATCH)
    report = alpha_metric(recon, heldout)
    return {"alpha_shares": alpha_statistics(recon), "psnr": report.mean["psnr"], "alpha_psnr": report.alpha["psnr"]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--vae", default="embedded-rgba", help="SPEC of the RGBA VAE both arms start from")
    parser.add_argument("--steps", type=int, default=300)
    parser.add_argument("--size", type=int, default=256)
    parser.add_argument("--batch-size", type=int, default=4)
    parser.add_argument("--lr", type=float, default=1e-4)
    parser.add_argument("--n-train", type=int, default=256, help="training-split images held in memory")
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    train_files, held_files = train_and_heldout("rgba-train", str(configs_dir() / "split-rgba-train.json"))
    train, heldout = load(train_files[: args.n_train], args.size), load(held_files, args.size)
    result = {"command": "python benchmarks/saturated_alpha_ab.py " + " ".join(
        f"--{k.replace('_', '-')} {v}" for k, v in vars(args).items() if v is not None and k != "json"),
        "device": f"CPU, {torch.get_num_threads()} threads", "real_alpha_shares": alpha_statistics(heldout),
        "start": score(load_vae(args.vae), heldout), "arms": {}}
    print(f"held-out real: {result['real_alpha_shares']}\nstart ({args.vae}): {result['start']}", flush=True)
    for free in (False, True):
        vae = load_vae(args.vae)
        weights = LossWeights(perceptual=0.0, reference_kl=0.0, adversarial=0.0, free_alpha_overshoot=free)
        t0 = time.perf_counter()
        finetune_steps(vae, train, AlphaVAEObjective(weights), args.steps, lr=args.lr, batch_size=args.batch_size)
        arm = score(vae, heldout) | {"train_seconds": time.perf_counter() - t0}
        result["arms"]["free_alpha_overshoot" if free else "paper"] = arm
        print(f"free_alpha_overshoot={free}: {arm}", flush=True)
        if args.json:
            args.json.write_text(json.dumps(result, indent=1) + "\n")


if __name__ == "__main__":
    main()
