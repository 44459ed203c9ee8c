"""Where an RGBA VAE's extra soft alpha comes from: along the images' alpha edges, or inside flat regions.

Clip art's alpha is mostly exactly 0 or 1, soft only along antialiased edges. A decoder that blurs edges adds soft
pixels next to them (a limit of what the 8×-downsampled latent keeps); one that leaves flat transparent or opaque
regions slightly inside (0, 1) adds them anywhere (a bias the loss can remove: ``loss.free_alpha_overshoot``,
docs/method.md §3.1). Each target pixel is put in a class by its true alpha (transparent, soft, opaque:
:data:`alphavae.metric.alpha_shares.TRANSPARENT` / ``OPAQUE``) and marked "edge" when a pixel of another class lies
within ``--edge`` pixels, else "interior". Per class and place the script prints the share of all pixels there
and how many of them the reconstruction (posterior mode, clamped) leaves soft, and each cell's share of the
reconstruction's soft pixels. Soft targets should stay soft; the transparent and opaque rows are the excess.

Then, for the opaque interior pixels, the share left soft per fifth of ABMSE's weight on their alpha error: for an
opaque pixel of colour c, an alpha error δ costs δ²·Σ_ch((c − E[b])² + Var[b]) under the background moments
(:mod:`alphavae.losses.reconstruction`, ImageNet's by default). Soft alpha concentrated where that weight is
small points at the loss, not the decoder's capacity.

    python benchmarks/soft_alpha_sources.py --rgba embedded-rgba --rgba free=runs/free/model-fp16 --ood DIR
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import torch
import torch.nn.functional as F

from alphavae.blending import to_vae_range
from alphavae.imageio import list_images
from alphavae.losses.reconstruction import IMAGENET_MOMENTS, BackgroundMoments
from alphavae.metric.alpha_shares import OPAQUE, TRANSPARENT
from alphavae.paths import configs_dir
from alphavae.training.data import RGBAFolder, train_and_heldout
from alphavae.vae.loading import load_vae, torch_device
from alphavae.vae.reconstruct import reconstruct

SIZE, BATCH = 256, 16
CLASSES = ("transparent", "soft", "opaque")


def alpha_classes(alpha: torch.Tensor) -> torch.Tensor:
    """``(N, H, W)`` alpha in [0, 1] → class index 0 transparent, 1 soft, 2 opaque."""
    return (alpha >= TRANSPARENT).long() + (alpha > OPAQUE).long()


def near_other_class(classes: torch.Tensor, radius: int) -> torch.Tensor:
    """Pixels with a pixel of another class within ``radius`` (a square window): the alpha edges."""
    window = 2 * radius + 1
    near = torch.zeros_like(classes, dtype=torch.bool)
    for c in range(len(CLASSES)):
        here = (classes == c).float().unsqueeze(1)
        present = F.max_pool2d(here, window, stride=1, padding=radius).squeeze(1) > 0
        near |= present & (classes != c)
    return near


def sources(target: torch.Tensor, recon: torch.Tensor, radius: int) -> dict[str, dict[str, float]]:
    """Per ``class/place``: ``share`` of all pixels, ``left_soft`` (of those, the share reconstructed soft) and
    ``of_recon_soft`` (their share of all reconstructed soft pixels)."""
    classes = alpha_classes(target[:, 3])
    soft_out = alpha_classes(recon[:, 3].clamp(0, 1)) == 1
    edge = near_other_class(classes, radius)
    total, soft_total = classes.numel(), int(soft_out.sum())
    out = {}
    for c, name in enumerate(CLASSES):
        for place, mask in (("edge", edge), ("interior", ~edge)):
            cell = (classes == c) & mask
            n, left = int(cell.sum()), int((cell & soft_out).sum())
            out[f"{name}/{place}"] = {"share": n / total, "left_soft": left / max(n, 1),
                                      "of_recon_soft": left / max(soft_total, 1)}
    out["all"] = {"share": 1.0, "left_soft": soft_total / total, "of_recon_soft": 1.0,
                  "real_soft": float((classes == 1).float().mean())}
    return out


def opaque_by_abmse_weight(target: torch.Tensor, recon: torch.Tensor, radius: int,
                           moments: BackgroundMoments = IMAGENET_MOMENTS, bins: int = 5) -> list[dict[str, float]]:
    """Opaque interior pixels in ``bins`` groups of equal size by ABMSE's weight on their alpha error
    (Σ_ch (c − E[b])² + Var[b], colours in [-1, 1]): each group's weight range, share left soft and mean undershoot."""
    classes = alpha_classes(target[:, 3])
    chosen = (classes == 2) & ~near_other_class(classes, radius)
    mean, second = moments.as_tensors(target)
    weight = ((to_vae_range(target[:, :3]) - mean) ** 2 + (second - mean ** 2)).sum(1)[chosen]
    alpha = recon[:, 3].clamp(0, 1)[chosen]
    order = weight.argsort()
    rows = []
    for part in order.tensor_split(bins):
        if len(part):
            rows.append({"weight_from": float(weight[part[0]]), "weight_to": float(weight[part[-1]]),
                         "left_soft": float((alpha[part] <= OPAQUE).float().mean()),
                         "undershoot": float((1 - alpha[part]).mean())})
    return rows


def print_table(title: str, table: dict[str, dict[str, float]]) -> None:
    print(f"{title}: real soft {100 * table['all']['real_soft']:.1f} %, reconstructed soft "
          f"{100 * table['all']['left_soft']:.1f} %")
    print(f"  {'target class/place':22s} {'% of pixels':>11s} {'% left soft':>11s} {'% of recon soft':>15s}")
    for key, row in table.items():
        if key != "all":
            print(f"  {key:22s} {100 * row['share']:11.1f} {100 * row['left_soft']:11.1f} {100 * row['of_recon_soft']:15.1f}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rgba", action="append", required=True, metavar="[NAME=]SPEC", help="an RGBA VAE (repeat)")
    parser.add_argument("--ood", type=Path, help="a folder of out-of-domain RGBA images (scripts/rebuild_ood_rgba.py)")
    parser.add_argument("--edge", type=int, default=2, help="pixels from another alpha class that count as edge")
    parser.add_argument("--device", choices=("auto", "cpu", "cuda"), default="cpu")
    args = parser.parse_args(argv)
    sets = {"openclipart held-out": train_and_heldout("rgba-train", str(configs_dir() / "split-rgba-train.json"))[1]}
    if args.ood is not None:
        files = list_images(args.ood)
        if not files:
            parser.error(f"--ood {args.ood}: no images")
        sets[f"out-of-domain ({args.ood.name})"] = files
    device = torch_device(args.device)
    images = {name: RGBAFolder(files[0].parent, size=SIZE, files=files).load_all().to(device)
              for name, files in sets.items()}
    for given in args.rgba:
        name, _, spec = given.rpartition("=")
        vae = load_vae(spec, device=device)
        for set_name, target in images.items():
            recon = reconstruct(vae, target, BATCH)
            print_table(f"{name or spec} on {set_name} ({len(target)} images, edge = within {args.edge} px)",
                        sources(target, recon, args.edge))
            print("  opaque interior by ABMSE's weight on its alpha error (fifths):")
            for row in opaque_by_abmse_weight(target, recon, args.edge):
                print(f"    weight {row['weight_from']:5.2f}–{row['weight_to']:5.2f}: {100 * row['left_soft']:5.1f} % left "
                      f"soft, mean undershoot {row['undershoot']:.4f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
