"""``alphavae convert``: the 3→4-channel surgery on an RGB VAE, written as a ``save_pretrained`` folder.

A thin layer over :func:`alphavae.vae.conversion.convert_and_save`; ``--vae DIR`` then loads the result.
"""

from __future__ import annotations

import argparse

import torch

EPILOG = """examples:
  alphavae convert --vae embedded --output runs/embedded-rgba-init
  alphavae convert --vae stabilityai/sd-vae-ft-mse --output runs/sd-rgba-init --dtype float16
  alphavae reconstruct --vae runs/embedded-rgba-init --input data/rgba-sample --output runs/recon"""

DTYPES = {"float32": torch.float32, "float16": torch.float16, "bfloat16": torch.bfloat16}


def register(subparsers) -> None:
    """Add the ``convert`` parser."""
    p = subparsers.add_parser("convert", help="Extend a pretrained RGB VAE to RGBA (zero alpha-input weights, alpha bias +1).",
                              epilog=EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--vae", required=True, help="RGB VAE SPEC: embedded, a save_pretrained folder, or a hub id[:subfolder]")
    p.add_argument("--output", required=True, help="folder to write (save_pretrained layout)")
    p.add_argument("--overwrite", action="store_true", help="replace --output if it is a non-empty folder")
    p.add_argument("--dtype", choices=tuple(DTYPES), default="float32", help="weights' dtype on disk (default float32)")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    """Convert and save; print the layers that changed."""
    from alphavae.vae.conversion import convert_and_save

    changes = convert_and_save(args.vae, args.output, overwrite=args.overwrite, dtype=DTYPES[args.dtype])
    for c in changes:
        print(f"{c.name}: {tuple(c.before)} -> {tuple(c.after)}")
    print(f"wrote the RGBA VAE to {args.output} (load it with --vae {args.output})")
    return 0
