"""``alphavae generate``: sample transparent images from a latent diffusion model and its RGBA VAE.

A thin layer over :func:`alphavae.generation.sampler.load_generator` and :func:`alphavae.generation.sampler.generate_with`.
"""

from __future__ import annotations

import argparse
from pathlib import Path

EPILOG = """examples:
  alphavae generate --model embedded-generator --n 4 --seed 0 --output /tmp/g
  alphavae generate --model embedded-generator --n 8 --seed 1 --class food --output /tmp/food --guidance 3"""


def register(subparsers) -> None:
    """Add the ``generate`` parser."""
    p = subparsers.add_parser("generate", help="Sample N transparent images (RGBA PNGs) from a generator and its RGBA VAE.",
                              epilog=EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", default="embedded-generator", help="generator SPEC: embedded-generator, a folder, or a hub id[:subfolder]")
    p.add_argument("--n", type=int, required=True, help="number of images")
    p.add_argument("--seed", type=int, default=0, help="random seed (same seed, same images)")
    p.add_argument("--output", required=True, help="folder for the PNGs (created if needed)")
    p.add_argument("--size", type=int, help="pixel side (default: the generator's training size)")
    p.add_argument("--device", default="auto", help="auto | cpu | cuda (default auto)")
    p.add_argument("--class", dest="classes", help="class name, or several separated by commas (default: random classes)")
    p.add_argument("--guidance", type=float, help="classifier-free guidance scale (default: the model's)")
    p.add_argument("--steps", type=int, help="sampler steps (default: the model's)")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    """Sample and write ``NNNN-<class>.png`` files atomically."""
    from alphavae.cli import CLIError
    from alphavae.generation.sampler import class_labels, generate_with, load_generator
    from alphavae.imageio import save_png

    if args.n < 1:
        raise CLIError(f"--n {args.n}: must be at least 1")
    output = Path(args.output)
    if output.exists() and not output.is_dir():
        raise CLIError(f"--output {output}: exists and is not a folder")
    classes = [c.strip() for c in args.classes.split(",")] if args.classes else None
    generator = load_generator(args.model, device=args.device)
    images = generate_with(generator, args.n, seed=args.seed, size=args.size, classes=classes,
                           guidance_scale=args.guidance, num_inference_steps=args.steps)
    labels = class_labels(generator, args.n, classes, args.seed)
    names = generator.class_names
    for i, image in enumerate(images):
        suffix = f"-{names[labels[i]]}" if labels is not None else ""
        save_png(image, output / f"{i:04d}{suffix}.png")
    print(f"wrote {args.n} RGBA PNGs ({images.shape[-1]}x{images.shape[-2]}) to {output}")
    return 0
