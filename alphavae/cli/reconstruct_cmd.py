"""``alphavae reconstruct``: encode (posterior mode) and decode every image under a folder.

A thin layer over :func:`alphavae.vae.reconstruct.reconstruct_folder`: one PNG per input at the same relative
path and stem, RGBA for a 4-channel VAE, RGB for a 3-channel one (RGBA inputs composited over
``--background``). Unreadable images are reported by name, the rest written, exit status 1.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from alphavae.cli import CLIError, add_device_option, check_size, resolve_device

#: Smallest ``--size``: one padding multiple (cli.md pads to a multiple of 8).
MIN_SIZE = 8

EPILOG = """examples:
  alphavae reconstruct --vae embedded-rgba --input data/rgba-sample --output /tmp/recon
  alphavae reconstruct --vae embedded --input photos/ --output /tmp/rgb --size 256 --background gray
  alphavae reconstruct --vae stabilityai/sd-vae-ft-mse --input in/ --output out/ --device cuda
--size N: the long side is resized to N (premultiplied, so hidden colour cannot bleed), the image is padded
bottom/right with transparent pixels to a multiple of 8, and the reconstruction is cropped back; so every
output has long side N. Without --size, images keep their own size (padded and cropped back the same way).
Two inputs with one stem (a.png, a.webp) would share an output and are refused, as is --output inside --input."""


def register(subparsers) -> None:
    """Add the ``reconstruct`` parser."""
    summary = "Encode (posterior mode) and decode every image in a folder through a VAE."
    p = subparsers.add_parser("reconstruct", help=summary, description=summary,
                              epilog=EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--vae", required=True, help="SPEC: embedded, embedded-rgba, a save_pretrained folder, or a hub id[:subfolder]")
    p.add_argument("--input", required=True, type=Path, help="folder of images (searched recursively)")
    p.add_argument("--output", required=True, type=Path, help="folder for the PNGs (same relative paths as --input)")
    p.add_argument("--size", type=int, help=f"resize so the long side is N >= {MIN_SIZE} before encoding (see below)")
    p.add_argument("--batch-size", type=int, default=8, help="images of the same size encoded together")
    p.add_argument("--background", default="white",
                   help="for a 3-channel VAE: background an RGBA input is composited over (a name or R,G,B in 0..1)")
    add_device_option(p)
    p.set_defaults(func=run)


def _background(text: str) -> tuple[float, float, float]:
    from alphavae.blending import BACKGROUNDS

    if text in BACKGROUNDS:
        return BACKGROUNDS[text]
    try:
        rgb = tuple(float(v) for v in text.split(","))
    except ValueError:
        rgb = ()
    if len(rgb) != 3 or not all(0 <= v <= 1 for v in rgb):
        raise CLIError(f"--background {text}: use one of {', '.join(BACKGROUNDS)} or R,G,B in 0..1")
    return rgb


def run(args: argparse.Namespace) -> int:
    """Load the VAE, reconstruct the folder, report skipped files by name; exit 1 if there were any."""
    from alphavae.vae.reconstruct import reconstruct_folder
    from alphavae.vae.loading import VAELoadError, load_vae

    if args.batch_size < 1:
        raise CLIError(f"--batch-size must be >= 1, got {args.batch_size}")
    check_size(args.size, MIN_SIZE)
    if not args.input.is_dir():
        raise CLIError(f"--input {args.input}: not a folder")
    source, dest = args.input.resolve(), args.output.resolve()
    if dest == source or source in dest.parents:
        raise CLIError(f"--output {args.output}: is --input {args.input} or inside it; write the reconstructions elsewhere")
    background = _background(args.background)
    device = resolve_device(args.device)
    try:
        vae = load_vae(args.vae, device=device)
    except VAELoadError as exc:
        raise CLIError(f"--vae {exc}") from exc
    result = reconstruct_folder(vae, args.input, args.output, size=args.size, batch_size=args.batch_size, background=background)
    for reason in result.bad_files.values():
        print(f"alphavae reconstruct: skipped {reason}", file=sys.stderr)
    print(f"wrote {len(result.written)} images to {args.output}" + (f"; {len(result.bad_files)} skipped" if result.bad_files else ""))
    return 1 if result.bad_files else 0
