"""``alphavae generator train|eval``: train the latent diffusion model on an RGBA VAE's latents, and score
generators against the held-out split (FD-VGG16, KID-VGG16, alpha statistics).

A thin layer over :func:`alphavae.generation.train.train_generator` and
:func:`alphavae.generation.evaluate.compare_generators`; every ``train`` option is a field of
:class:`alphavae.generation.train.GeneratorConfig` (its defaults are the recipe's).
"""

from __future__ import annotations

import argparse
import sys
import typing
from dataclasses import asdict
from pathlib import Path

from alphavae.cli import CLIError

TRAIN_EPILOG = """examples:
  alphavae generator train --vae embedded-rgba --output runs/gen --steps 3000
  alphavae generator train --vae embedded-rgba --output runs/gen --steps 3000 --max-minutes 9 --resume
Data: $ALPHAVAE_SHARED_DATA/rgba-train (rebuild it with `alphavae data fetch`), or --data DIR."""
EVAL_EPILOG = """example:
  alphavae generator eval --model main=embedded-generator --json results/generation.json --md results/generation.md
FD-VGG16 / KID-VGG16 need `alphavae weights fetch` once (they are not FID: no Inception weights)."""


def _flag(text: str) -> bool:
    if text.lower() in ("1", "true", "yes"):
        return True
    if text.lower() in ("0", "false", "no"):
        return False
    raise argparse.ArgumentTypeError(f"expected true or false, got {text!r}")


def _channels(text: str) -> tuple[int, ...]:
    """``64,128,192`` → the UNet's widths per level, checked by :func:`widths_problem` (as the config checks them)."""
    from alphavae.generation.generator_config import widths_problem

    try:
        widths = tuple(int(part) for part in text.split(","))
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated integers such as 64,128,192, got {text!r}") from None
    problem = widths_problem(widths)
    if problem:
        raise argparse.ArgumentTypeError(f"{problem}, got {text!r}")
    return widths


def _option_type(hint) -> type:
    """The type an option's text converts to: its field's annotation, without ``None`` (``float | None`` → float)."""
    return next(kind for kind in typing.get_args(hint) or (hint,) if kind is not type(None))


def register(subparsers) -> None:
    """Add ``generator train`` and ``generator eval``."""
    from alphavae.generation.generator_config import GeneratorConfig

    p = subparsers.add_parser("generator", help="Train or evaluate the latent diffusion model of transparent images.")
    sub = p.add_subparsers(dest="generator_command", required=True, parser_class=type(p))
    t = sub.add_parser("train", help="Train a generator on an RGBA VAE's latents.", epilog=TRAIN_EPILOG,
                       formatter_class=argparse.RawDescriptionHelpFormatter)
    t.add_argument("--output", required=True, type=Path, help="run folder (model/, checkpoints/, latents.safetensors, log.jsonl)")
    t.add_argument("--resume", action="store_true", help="continue from the newest checkpoint in --output")
    hints = typing.get_type_hints(GeneratorConfig)
    for name, value in asdict(GeneratorConfig()).items():
        if name == "notes":
            continue
        flag = "--" + name.replace("_", "-")
        if name == "block_out_channels":  # None: --init's shape, else the default (see _unet_shape)
            t.add_argument(flag, type=_channels, default=None, metavar="C1,C2,...",
                           help=f"the UNet's width per level (default: --init's, else {','.join(map(str, value))})")
        elif name == "layers_per_block":
            t.add_argument(flag, type=int, default=None, help=f"(default: --init's, else {value})")
        elif isinstance(value, bool):
            t.add_argument(flag, type=_flag, default=value, metavar="BOOL")
        else:
            t.add_argument(flag, type=_option_type(hints[name]), default=value)
    t.set_defaults(func=run_train)
    e = sub.add_parser("eval", help="Sample generators and score them against the held-out split.", epilog=EVAL_EPILOG,
                       formatter_class=argparse.RawDescriptionHelpFormatter)
    e.add_argument("--model", action="append", required=True, metavar="NAME=SPEC", help="a generator to score (repeat)")
    e.add_argument("--n", type=int, default=512, help="samples per generator")
    e.add_argument("--seed", type=int, default=0)
    e.add_argument("--device", choices=("auto", "cpu", "cuda"), default="auto")
    e.add_argument("--json", required=True, type=Path)
    e.add_argument("--md", required=True, type=Path)
    # dest apart from the top-level "command" (the subcommand's name, which error messages print)
    e.add_argument("--command", dest="record_command", help="the command to record (default: this one)")
    e.add_argument("--note", action="append", default=[], help="a line to add under the table (repeat)")
    e.set_defaults(func=run_eval)


def run_train(args: argparse.Namespace) -> int:
    """Train (or resume) a generator; say where it went, or how to continue."""
    from alphavae.generation.train import GeneratorConfig, train_generator

    for name in ("steps", "batch_size", "log_every", "checkpoint_every", "keep_checkpoints", "image_size",
                 "layers_per_block"):  # layers_per_block None: --init's or the default, both >= 1
        value = getattr(args, name)
        if value is not None and value < 1:
            raise CLIError(f"--{name.replace('_', '-')} must be >= 1, got {value}")
    values = {k: v for k, v in vars(args).items() if k in GeneratorConfig.__dataclass_fields__}
    values.update(_unet_shape(args))
    folder = train_generator(GeneratorConfig(**values), args.output, resume=args.resume,
                             command="alphavae generator train " + " ".join(sys.argv[3:]))
    print(f"generator written to {folder}" if folder else f"stopped early; continue with the same command and --resume")
    return 0


def _unet_shape(args: argparse.Namespace) -> dict[str, object]:
    """The UNet shape options of a ``train`` run: those given; the rest from ``--init``'s UNet (a warm start must keep
    its shape), else the defaults. On ``--resume`` an init folder that is gone (another session) leaves the
    defaults: the checkpoint's own shape check names the options then."""
    from alphavae.generation.generator_config import UNetShape
    from alphavae.generation.sampler import GeneratorLoadError, unet_shape_of

    shape = UNetShape()
    if args.init and (args.block_out_channels is None or args.layers_per_block is None):
        try:
            shape = unet_shape_of(args.init)
        except GeneratorLoadError as exc:
            if not args.resume:
                raise CLIError(f"--init {exc}") from exc
    given = {"block_out_channels": args.block_out_channels, "layers_per_block": args.layers_per_block}
    return {key: getattr(shape, key) if value is None else value for key, value in given.items()}


def named_specs(items: list[str]) -> dict[str, str]:
    """``--model NAME=SPEC`` arguments as ``{NAME: SPEC}``; a malformed one is a :class:`CLIError` naming it."""
    models = {}
    for item in items:
        name, sep, spec = item.partition("=")
        if not sep or not name or not spec:
            raise CLIError(f"--model {item!r}: expected NAME=SPEC")
        models[name] = spec
    return models


def run_eval(args: argparse.Namespace) -> int:
    """Score the generators and write the JSON and Markdown tables."""
    from alphavae.generation.evaluate import compare_generators, results_markdown, write_results

    if args.n < 2:
        raise CLIError(f"--n must be >= 2 (a distance needs two samples), got {args.n}")
    report = compare_generators(named_specs(args.model), n=args.n, seed=args.seed, device=args.device)
    report["notes"] = args.note
    command = args.record_command or "alphavae generator eval " + " ".join(sys.argv[3:])
    write_results(report, args.json, args.md, command)
    print(results_markdown(report, command))
    return 0
