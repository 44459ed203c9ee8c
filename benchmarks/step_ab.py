"""A/B of candidate speed-ups of the optimised training step, each arm in a fresh process on the same GPU.

Issue 15's last bar is the embedded VAE at batch 8 (≥ 344 images/s). The stop-24 profile (benchmarks/NOTES.md) found
the step GPU-bound with a flat kernel list, so each candidate here changes how kernels are made, not what is
computed. Arms, joined with ``+`` (``upsample+cdt``):

* ``base`` — the optimised step as the trainer runs it (``benchmarks/train_speed.py``'s optimised row);
* ``upsample`` — the VAE decoder's nearest 2× upsampling as a broadcast, whose backward is a sum over each 2×2
  block, instead of ``interpolate``, whose backward Inductor makes a scatter-add (``index_put`` with accumulate:
  0.69 ms of the 26.3 ms step in that profile). The forward values are the same;
* ``cdt`` — Inductor's coordinate-descent tuning of its Triton kernels' block sizes (longer compilation);
* ``autotune`` — Inductor's ``max_autotune``: Triton templates timed against cuDNN and cuBLAS for each
  convolution and matmul shape (much longer compilation);
* ``glue`` — ``torch.compile`` of the loss functions around the compiled networks (ABMSE, the whole perceptual
  term with its composites and its call of the already compiled LPIPS, both KLs, the reference composites), whose
  operations otherwise run as one unfused kernel each.

    python benchmarks/step_ab.py --arms base,upsample,upsample+cdt --row optimised:embedded:8 --json runs/ab.json

An arm that wins moves into ``alphavae`` (and out of this list); its timings go to benchmarks/NOTES.md.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import types
from pathlib import Path

import torch
import torch.nn.functional as F

from alphavae.imageio import atomic_write

sys.path.insert(0, str(Path(__file__).resolve().parent))
from train_speed import DEFAULT_OPTIMISED, TIMED_STEPS, WARMUP_STEPS, host, run_row  # noqa: E402  (beside this one)

def upsample_nearest2x(x: torch.Tensor) -> torch.Tensor:
    """Nearest 2× upsampling of ``(N, C, H, W)`` as a broadcast, in ``x``'s memory layout (channels_last stays so)."""
    n, c, h, w = x.shape
    if x.is_contiguous(memory_format=torch.channels_last):
        nhwc = x.permute(0, 2, 3, 1)[:, :, None, :, None, :].expand(n, h, 2, w, 2, c)
        return nhwc.reshape(n, 2 * h, 2 * w, c).permute(0, 3, 1, 2)
    return x[:, :, :, None, :, None].expand(n, c, h, 2, w, 2).reshape(n, c, 2 * h, 2 * w)


def _interpolate(x, size=None, scale_factor=None, mode="nearest", **kwargs):
    """``F.interpolate``, with nearest 2× upsampling of a 4-d tensor by :func:`upsample_nearest2x`."""
    if mode == "nearest" and size is None and scale_factor == 2.0 and x.dim() == 4 and not kwargs:
        return upsample_nearest2x(x)
    return F.interpolate(x, size=size, scale_factor=scale_factor, mode=mode, **kwargs)


def _broadcast_upsample() -> None:
    """diffusers' upsampling module gets its own ``torch.nn.functional`` (a module, which torch.compile traces
    through), whose ``interpolate`` is :func:`_interpolate`."""
    from diffusers.models import upsampling
    functional = types.ModuleType("functional_with_broadcast_upsample")
    functional.__dict__.update(F.__dict__)
    functional.interpolate = _interpolate
    upsampling.F = functional


def _inductor(flag: str):
    def switch_on() -> None:
        import torch._inductor.config as inductor
        setattr(inductor, flag, True)
    return switch_on


def _compiled_losses() -> None:
    from alphavae.losses import kl, perceptual, reconstruction
    for module, name in ((reconstruction, "abmse_loss"), (perceptual, "perceptual_loss"), (kl, "prior_kl"),
                         (kl, "kl_to_reference"), (kl, "reference_composites")):
        setattr(module, name, torch.compile(getattr(module, name), dynamic=False))


#: What each arm switches on in its process, before the row builds and compiles its networks.
ARMS = {"base": lambda: None, "upsample": _broadcast_upsample, "cdt": _inductor("coordinate_descent_tuning"),
        "autotune": _inductor("max_autotune"), "glue": _compiled_losses}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--arms", default="base,upsample", help="comma-separated arms (parts joined with '+')")
    parser.add_argument("--row", default="optimised:embedded:8", help="the train_speed.py row every arm times")
    parser.add_argument("--steps", type=int, default=TIMED_STEPS)
    parser.add_argument("--warmup", type=int, default=WARMUP_STEPS)
    parser.add_argument("--lpips-net", default="vgg", choices=("vgg", "alex"))
    parser.add_argument("--timeout", type=float, default=420, help="seconds an arm may take, compilation included")
    parser.add_argument("--json", type=Path)
    parser.add_argument("--one", help=argparse.SUPPRESS)  # internal: time one arm in this process, print its JSON
    args = parser.parse_args()
    if args.one:
        for part in args.one.split("+"):
            ARMS[part]()
        row = run_row(args.row, args.steps, args.warmup, args.lpips_net, DEFAULT_OPTIMISED)
        print("ROW " + json.dumps({**row, "arm": args.one}), flush=True)
        return
    unknown = [part for arm in args.arms.split(",") for part in arm.split("+") if part not in ARMS]
    if unknown:
        parser.error(f"--arms: unknown arm {unknown[0]!r} (choose from {', '.join(ARMS)}, joined with '+')")
    machine = torch.cuda.get_device_name() if torch.cuda.is_available() else "cpu"
    rows = []
    for arm in args.arms.split(","):
        cmd = [sys.executable, __file__, "--one", arm, "--row", args.row, "--steps", str(args.steps),
               "--warmup", str(args.warmup), "--lpips-net", args.lpips_net]
        try:
            done = subprocess.run(cmd, capture_output=True, text=True, timeout=args.timeout)
        except subprocess.TimeoutExpired:
            print(f"{arm}: not done within {args.timeout:.0f} s (compilation included)", flush=True)
            continue
        lines = [line for line in done.stdout.splitlines() if line.startswith("ROW ")]
        if done.returncode or not lines:
            print(f"{arm}: failed (exit {done.returncode})\n{done.stderr[-2000:]}", flush=True)
            continue
        r = json.loads(lines[-1][4:])
        rows.append({**r, "machine": machine, "host": host(), "torch": torch.__version__,
                     "command": "python benchmarks/step_ab.py " + " ".join(sys.argv[1:])})
        print(f"{arm:20s} {r['images_per_s']:8.1f} img/s  {r['step_ms']:7.2f} ms  peak {r['peak_memory_gib'] or 0:5.2f} GiB  "
              f"warm-up {r['warmup_s']:6.1f} s  first total {r['first_step_total']:.6g}", flush=True)
        if args.json is not None:  # after every arm: a call cut short keeps the arms it timed
            atomic_write(args.json, lambda tmp: Path(tmp).write_text(json.dumps(rows, indent=1) + "\n"))


if __name__ == "__main__":
    main()
