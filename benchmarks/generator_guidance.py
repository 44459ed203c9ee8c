"""Which classifier-free guidance scale should a generator ship with? Chosen on training images, never on held-out.

Guidance trades variety for sharpness: too little draws mushy, half-formed shapes (high FD, soft alpha), too much
draws the same saturated shapes again (FD rises again). The shipped scale sits in the generator's info
(``guidance_scale``) and is what ``alphavae generate`` and ``alphavae generator eval`` use. Picking it by the
held-out FD-VGG16 would tune on the test set, so this script scores each scale against the **training split**
(FD-VGG16 / KID-VGG16 over white, black and gray, as :func:`alphavae.generation.evaluate.evaluate_generation`) and
reports the soft-alpha share beside it; the held-out score of the chosen scale then comes from
``alphavae generator eval`` alone.

    python benchmarks/generator_guidance.py --model embedded-generator --guidance 1.5,2,3 --n 512 --device cuda
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from alphavae.generation.evaluate import evaluate_generation, load_split_images
from alphavae.generation.sampler import generate_with, load_generator
from alphavae.metric.backbones import vgg16_features
from alphavae.vae.loading import machine_name, torch_device


def scales(text: str) -> list[float]:
    """``"1.5,2,3"`` → ``[1.5, 2.0, 3.0]``."""
    try:
        return [float(s) for s in text.split(",")]
    except ValueError:
        raise argparse.ArgumentTypeError(f"--guidance {text!r}: expected numbers separated by commas") from None


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--model", default="embedded-generator", help="a generator (shipped name or folder)")
    p.add_argument("--guidance", type=scales, default=[1.5, 2.0, 3.0], help="scales to score, comma-separated")
    p.add_argument("--n", type=int, default=512, help="samples per scale (and training images to score against)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--device", choices=("auto", "cpu", "cuda"), default="auto")
    p.add_argument("--json", type=Path)
    args = p.parse_args()
    device = torch_device(args.device)
    feature = vgg16_features(device)
    generator = load_generator(args.model, device=device)
    size = generator.info["image_size"]
    train = load_split_images(size, "train", limit=args.n)
    real_features: dict = {}
    report = {"model": args.model, "against": f"{len(train)} training images", "n": args.n, "seed": args.seed,
              "shipped_guidance": generator.info.get("guidance_scale"), "device": machine_name(device), "scales": {}}
    print(f"{args.model} on {report['device']}: {args.n} samples per scale against {len(train)} training images "
          f"(shipped scale {report['shipped_guidance']})")
    print("| guidance | FD-VGG16 to train | KID-VGG16 ×10³ | soft % | opaque % |\n|---|---|---|---|---|")
    for w in args.guidance:
        fake = generate_with(generator, args.n, seed=args.seed, size=size, guidance_scale=w).cpu()
        scores = evaluate_generation(fake, train, feature, inception=False, real_features=real_features)
        vgg, alpha = scores["vgg16"]["mean"], scores["alpha"]["generated"]
        report["scales"][str(w)] = {"vgg16": vgg, "alpha": alpha}
        print(f"| {w:g} | {vgg['fd']:.2f} | {1e3 * vgg['kid']:.2f} ± {1e3 * vgg['kid_std']:.2f} | "
              f"{100 * alpha['soft']:.1f} | {100 * alpha['opaque']:.1f} |", flush=True)
    if args.json:
        args.json.write_text(json.dumps(report, indent=1) + "\n")


if __name__ == "__main__":
    main()
