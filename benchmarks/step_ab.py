"""A/B of candidate speed-ups of the optimised training step, each arm in a fresh process on the same GPU.

Issue 15's last bar is the embedded VAE at batch 8 (≥ 344 images/s). The stop-24 profile (benchmarks/NOTES.md) found
the step GPU-bound with a flat kernel list, so each candidate here changes how kernels are made, not what is
computed. Arms, joined with ``+`` (``cdt+autotune``):

* ``base`` — the optimised step as the trainer runs it (``benchmarks/train_speed.py``'s optimised row);
* ``cdt`` — Inductor's coordinate-descent tuning of its Triton kernels' block sizes (longer compilation);
* ``autotune`` — Inductor's ``max_autotune``: Triton templates timed against cuDNN and cuBLAS for each
  convolution and matmul shape (much longer compilation: not done within 540 s on one H100 in stop 25).

    python benchmarks/step_ab.py --arms base,cdt --row optimised:embedded:8 --json runs/ab.json

Two arms won on one H100 and moved into the trainer: ``upsample`` in stop 25 (the decoder's upsampling as a
broadcast, :mod:`alphavae.training.upsampling`; the script as it was is commit 2545d05) and ``glue`` in stop 26 (the
loss functions compiled, :class:`alphavae.training.step.LossFunctions`; the script as it was is commit 4e81e6a). An
arm that wins moves into ``alphavae`` (and out of this list); its timings go to benchmarks/NOTES.md.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path

import torch

from alphavae.imageio import atomic_write
from alphavae.vae.loading import machine_name, torch_device

sys.path.insert(0, str(Path(__file__).resolve().parent))
from train_speed import DEFAULT_OPTIMISED, TIMED_STEPS, WARMUP_STEPS, host, run_row  # noqa: E402  (beside this one)


def _inductor(flag: str):
    def switch_on() -> None:
        import torch._inductor.config as inductor
        setattr(inductor, flag, True)
    return switch_on


#: What each arm switches on in its process, before the row builds and compiles its networks.
ARMS = {"base": lambda: None, "cdt": _inductor("coordinate_descent_tuning"), "autotune": _inductor("max_autotune")}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--arms", default="base,cdt", help="comma-separated arms (parts joined with '+')")
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
    machine = machine_name(torch_device())
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
