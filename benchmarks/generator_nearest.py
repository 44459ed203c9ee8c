"""Does a generator draw new clip art or copy its training images? Nearest training neighbours in VGG16 space.

A diffusion model trained long on 1,200 images can lower its FD-VGG16 to the held-out split by reproducing training
images. This script puts a number on that: every generated sample, and every held-out image as the yardstick, is
matched to its nearest training image by the cosine distance of the FD-VGG16 features
(:func:`alphavae.metric.backbones.vgg16_features`, global-average-pooled conv5_3) of the composite over gray. A held-out
image is new by construction, so its nearest-neighbour distances are what "new" looks like. Printed per model: the
median nearest distance of the samples beside the held-out images' median, and the share of samples closer to a
training image than the closest 5 % of the held-out images are ("near copies": about 5 % for a generator that draws
new images, far more for one that copies). ``--pictures`` draws each model's closest pairs, sample above its nearest
training image.

    python benchmarks/generator_nearest.py --model main=embedded-generator --n 256 --device cpu --pictures /tmp/nn.png
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import torch
import torch.nn.functional as F

from alphavae.blending import BACKGROUNDS, composite
from alphavae.cli import CLIError
from alphavae.cli.generator_cmd import named_specs
from alphavae.generation.evaluate import extract_features, images_of, split_image_files
from alphavae.generation.sampler import generate_with, load_generator
from alphavae.metric.backbones import vgg16_features
from alphavae.vae.loading import torch_device

GRAY = BACKGROUNDS["gray"]
#: held-out images closer to the training set than this quantile of theirs set the "near copy" line
NEAR_QUANTILE = 0.05


def gray_features(rgba: torch.Tensor, feature) -> torch.Tensor:
    """Unit-length FD-VGG16 features of the composites over gray, one row per image."""
    return F.normalize(extract_features(composite(rgba, GRAY), feature), dim=1)


def nearest(queries: torch.Tensor, keys: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Cosine distance to, and index of, each query's nearest key (rows unit length)."""
    distance, index = (1 - queries @ keys.T).min(dim=1)
    return distance, index


def copy_report(sample_nn: torch.Tensor, heldout_nn: torch.Tensor) -> dict[str, float]:
    """The samples' nearest-training distances against the held-out images' (the yardstick of new images)."""
    line = torch.quantile(heldout_nn, NEAR_QUANTILE)
    return {"median_nn_distance": sample_nn.median().item(), "heldout_median_nn_distance": heldout_nn.median().item(),
            "near_copy_line": line.item(), "near_copy_share": (sample_nn < line).float().mean().item()}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--model", action="append", required=True, metavar="NAME=SPEC", help="a generator (repeat)")
    p.add_argument("--n", type=int, default=256, help="samples per generator")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--device", choices=("auto", "cpu", "cuda"), default="auto")
    p.add_argument("--json", type=Path)
    p.add_argument("--pictures", type=Path, help="a PNG of each model's 6 closest pairs (sample above, training image below)")
    args = p.parse_args()
    device = torch_device(args.device)
    feature = vgg16_features(device)
    try:
        specs = named_specs(args.model)
    except CLIError as exc:
        p.error(str(exc))
    generators = {name: load_generator(spec, device=device) for name, spec in specs.items()}
    size = next(iter(generators.values())).info["image_size"]
    root, train_files = split_image_files("train")
    train = images_of(root, train_files, size)
    train_keys = gray_features(train, feature)
    root, heldout_files = split_image_files("heldout")
    heldout_nn, _ = nearest(gray_features(images_of(root, heldout_files, size), feature), train_keys)
    report, rows = {}, []
    for name, generator in generators.items():
        samples = generate_with(generator, args.n, seed=args.seed, size=size).cpu()
        sample_nn, index = nearest(gray_features(samples, feature), train_keys)
        report[name] = {"n": args.n, **copy_report(sample_nn, heldout_nn)}
        r = report[name]
        print(f"{name}: median nearest-training distance {r['median_nn_distance']:.4f} (held-out images "
              f"{r['heldout_median_nn_distance']:.4f}); {100 * r['near_copy_share']:.1f} % of samples closer than "
              f"{r['near_copy_line']:.4f}, where {100 * NEAR_QUANTILE:.0f} % of the held-out images are")
        closest = sample_nn.argsort()[:6]
        rows.append(torch.cat([composite(samples[closest], GRAY), composite(train[index[closest]], GRAY)], dim=2))
    if args.json:
        args.json.write_text(json.dumps(report, indent=1) + "\n")
    if args.pictures:
        from torchvision.utils import save_image

        save_image(torch.cat(rows), args.pictures, nrow=6, padding=2)
        print(f"wrote {args.pictures}")


if __name__ == "__main__":
    main()
