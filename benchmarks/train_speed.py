"""Training throughput of the RGBA VAE trainer: images/s, step time, peak memory, FLOPs and MFU.

One clean process: build the trainer's own setup from a config (``alphavae.training.trainer.build_setup``), feed it
random-order real batches, run ``--warmup`` steps, then time ``--steps`` steps (synchronising the device
before reading the clock). FLOPs of one whole training step (generator forward + backward, discriminator)
are counted with ``torch.utils.flop_counter.FlopCounterMode``; MFU = counted FLOPs per second over the
accelerator's dense bf16 peak (``--peak-tflops``, default 989 for an H100 SXM, NVIDIA's datasheet figure).

    python benchmarks/train_speed.py --config configs/main.json --steps 50 --json speed.json
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import torch
from torch.utils.flop_counter import FlopCounterMode

from alphavae.training.config import load_config
from alphavae.training.data import StepBatchSampler, make_loader, train_and_heldout
from alphavae.training.trainer import build_setup, make_accelerator, train_step


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--config", type=Path, required=True)
    parser.add_argument("--steps", type=int, default=50, help="timed steps")
    parser.add_argument("--warmup", type=int, default=10)
    parser.add_argument("--disc", action="store_true", help="time with the discriminator on (step >= disc_start)")
    parser.add_argument("--peak-tflops", type=float, default=989.0, help="dense bf16 peak of the accelerator")
    parser.add_argument("--set", action="append", default=[], metavar="KEY=JSON", help="override a config key")
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()

    overrides = {k: json.loads(v) for k, v in (item.split("=", 1) for item in args.set)}
    config = load_config(args.config, **{**overrides, "steps": args.warmup + args.steps + 1})
    acc = make_accelerator(config)
    setup = build_setup(config, acc)
    files, _ = train_and_heldout(config.data, config.split, config.max_images)
    sampler = StepBatchSampler(len(files), config.batch_size, config.steps, config.seed, 0, acc.process_index, acc.num_processes)
    loader = iter(make_loader(files, config.image_size, sampler, config.num_workers))
    first = setup.weights.disc_start if args.disc else 0

    def sync() -> None:
        if acc.device.type == "cuda":
            torch.cuda.synchronize()

    for i in range(args.warmup):
        train_step(setup, next(loader), first + i)
    sync()
    with FlopCounterMode(display=False) as counter:
        train_step(setup, next(loader), first + args.warmup)
    flops = counter.get_total_flops()
    sync()
    if acc.device.type == "cuda":
        torch.cuda.reset_peak_memory_stats()
    batches = [next(loader) for _ in range(args.steps)]  # decode first: time the model, not the JPEG/WebP reader
    sync()
    t0 = time.perf_counter()
    for i, batch in enumerate(batches):
        train_step(setup, batch, first + args.warmup + 1 + i)
    sync()
    elapsed = time.perf_counter() - t0
    step_s = elapsed / args.steps
    result = {
        "device": torch.cuda.get_device_name() if acc.device.type == "cuda" else "cpu",
        "processes": acc.num_processes, "mixed_precision": acc.mixed_precision,
        "image_size": config.image_size, "global_batch": config.batch_size, "discriminator_on": args.disc,
        "gradient_checkpointing": config.gradient_checkpointing,
        "step_time_ms": 1000 * step_s, "images_per_s": config.batch_size / step_s,
        "flops_per_step": flops, "achieved_tflops": flops * acc.num_processes / step_s / 1e12,
        "peak_tflops": args.peak_tflops,
        "mfu": flops * acc.num_processes / step_s / 1e12 / args.peak_tflops,
        "peak_memory_gib": torch.cuda.max_memory_allocated() / 2**30 if acc.device.type == "cuda" else None,
        "notes": setup.notes,
    }
    if acc.is_main_process:
        print(json.dumps(result, indent=1))
        if args.json:
            args.json.write_text(json.dumps(result, indent=1) + "\n")


if __name__ == "__main__":
    main()
