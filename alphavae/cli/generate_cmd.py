"""``alphavae generate``: sample transparent images from a latent diffusion model and its RGBA VAE.

A thin layer over :func:`alphavae.generation.sampler.load_generator` and :func:`alphavae.generation.sampler.iter_samples`: each
image is written (atomically) as soon as it is made, so memory stays at one batch and a killed run keeps
everything it had made.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from alphavae.cli import add_device_option, check_size

EPILOG = """examples:
  alphavae generate --model embedded-generator --n 4 --seed 0 --output /tmp/g
  alphavae generate --model embedded-generator --n 8 --seed 1 --class food --output /tmp/food --guidance 3
limits (alphavae.generation.sampler): --n 1..100000 (MAX_SAMPLES), --seed 0..2**63-1 (MAX_SEED), --steps 1..the length
of the training schedule, --guidance a finite number, --size a multiple of what the generator needs (its error says)."""


def register(subparsers) -> None:
    """Add the ``generate`` parser."""
    p = subparsers.add_parser("generate", help="Sample N transparent images (RGBA PNGs) from a generator and its RGBA VAE.",
                              epilog=EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", default="embedded-generator", help="generator SPEC: embedded-generator, a folder, or a hub id[:subfolder]")
    p.add_argument("--n", type=int, required=True, help="number of images")
    p.add_argument("--seed", type=int, default=0, help="random seed (same seed, same images)")
    p.add_argument("--output", required=True, help="folder for the PNGs (created if needed)")
    p.add_argument("--size", type=int, help="pixel side (default: the generator's training size)")
    add_device_option(p)
    p.add_argument("--class", dest="classes",
                   help="class name, or several separated by commas (default: classes drawn by their training shares)")
    p.add_argument("--guidance", type=float, help="classifier-free guidance scale (default: the model's)")
    p.add_argument("--steps", type=int, help="sampler steps (default: the model's)")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    """Sample and write ``NNNN-<class>.png`` files atomically, each as soon as it is made."""
    from alphavae.cli import CLIError, resolve_device
    from alphavae.generation.sampler import check_sampling_options, class_labels, iter_samples, load_generator
    from alphavae.imageio import save_png

    check_sampling_options(args.n, args.seed, args.guidance, args.steps)  # before the model loads
    check_size(args.size, 1)
    output = Path(args.output)
    if output.exists() and not output.is_dir():
        raise CLIError(f"--output {output}: exists and is not a folder")
    device = resolve_device(args.device)
    classes = [c.strip() for c in args.classes.split(",")] if args.classes else None
    generator = load_generator(args.model, device=device)
    samples = iter_samples(generator, args.n, seed=args.seed, size=args.size, classes=classes,
                           guidance_scale=args.guidance, num_inference_steps=args.steps)
    labels = class_labels(generator, args.n, classes, args.seed)
    names = generator.class_names
    for i, image in enumerate(samples):
        suffix = f"-{names[labels[i]]}" if labels is not None else ""
        save_png(image, output / f"{i:04d}{suffix}.png")
    print(f"wrote {args.n} RGBA PNGs ({image.shape[-1]}x{image.shape[-2]}) to {output}")
    return 0
