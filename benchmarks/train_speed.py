"""Training throughput of the RGBA VAE step, side by side: the official formulation, our step eager, our step optimised.

Rows (each in a fresh process, so peak memory and compile caches are its own), at 256 px with the full objective of
``configs/main.json`` (ABMSE, LPIPS, both KLs, the PatchGAN with its adaptive weight; the discriminator on):

* ``official`` — the formulation written from docs/method.md (``AlphaVAEObjective.generator_step``): the image and
  each composite through the trainable encoder, the reference encodes, summed reductions, two ``autograd.grad``
  calls for the adaptive weight, every logged term read back to the host each step;
* ``eager`` — the trainer's step (``alphavae.training.trainer.train_step``) with ``compile`` and ``cuda_graphs`` off;
* ``optimised`` — the same step as the trainer runs it on a GPU by default: torch.compile and channels_last
  activations, kept through the VAEs' group norms (``compile``; ``alphavae.training.layout``), the decoder's
  upsampling as a broadcast (``alphavae.training.upsampling``, since stop 25) and five loss functions compiled
  (``alphavae.training.step.LossFunctions``, since stop 26; the optimised rows of ``train_speed.json`` predate both),
  recorded as CUDA graphs and replayed (``cuda_graphs``), frozen networks in bf16; ``--optimised graphs`` or
  ``--optimised compile`` switch on one of the two.

Models: ``sd`` (Stable Diffusion's VAE architecture, 83.7 M parameters, random init: timing only) and
``embedded`` (the shipped small VAE). Per row: images/s, step time, FLOPs counted by ``FlopCounterMode`` over one
step (compiled kernels are not seen by it, so an optimised row reports its eager row's count: the same
arithmetic), MFU against the 989 TFLOP/s bf16 datasheet peak and the 788 TFLOP/s a bf16 matmul measures on an
H200, peak memory over the whole row (warm-up, compilation and graph recording included; every row starts at
``disc_start``, so the switch between the two phases' graphs is not in it), warm-up time (compilation included),
and the first step's total loss (the rows start from the same weights and batch, so it checks that the three compute the same objective).

    python benchmarks/train_speed.py --json benchmarks/results/train_speed.json
    python benchmarks/train_speed.py --rows optimised:sd:16 --optimised compile --profile 2
    python benchmarks/train_speed.py --rows optimised:sd:16 --memory 25    # what holds the peak memory
    # the nine rows take more than one 10-minute device call: split them, on one warm machine
    python benchmarks/train_speed.py --rows official:sd:16,eager:sd:16,optimised:sd:16 --json runs/speed.json
    python benchmarks/train_speed.py --rows official:embedded:8,eager:embedded:8,optimised:embedded:8 --json runs/speed.json --append
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch
from torch.utils.flop_counter import FlopCounterMode

from alphavae.imageio import atomic_write
from alphavae.losses import blend_augment
from alphavae.losses.augmentation import blend_choices
from alphavae.paths import configs_dir, sample_dir
from alphavae.training.config import load_config
from alphavae.training.data import RGBAFolder
from alphavae.training.graphs import WARMUP
from alphavae.training.step import step_generator
from alphavae.training.trainer import build_setup, make_accelerator, read_logs, train_step
from alphavae.vae.loading import machine_name, torch_device

ROWS = ("official:sd:16", "eager:sd:16", "optimised:sd:16", "official:embedded:8", "eager:embedded:8",
        "optimised:embedded:8", "official:embedded:64", "eager:embedded:64", "optimised:embedded:64")
DATASHEET_TFLOPS = 989.0  # H100/H200 SXM dense bf16, NVIDIA's datasheet
MEASURED_TFLOPS = 788.0  # an 8192³ bf16 matmul on these H200s (/work/.library/device/KINDS.md)
#: Stable Diffusion's VAE (stabilityai/sd-vae-ft-mse's config), 4 channels → RGB.
SD_ARCHITECTURE = dict(in_channels=3, out_channels=3, block_out_channels=(128, 256, 512, 512), layers_per_block=2,
                       latent_channels=4, norm_num_groups=32, down_block_types=("DownEncoderBlock2D",) * 4,
                       up_block_types=("UpDecoderBlock2D",) * 4, sample_size=256)


def vae_spec(model: str, folder: Path) -> str:
    """The VAE SPEC of a row: the shipped ``embedded``, or a seeded random SD-architecture VAE saved in ``folder``."""
    if model == "embedded":
        return "embedded"
    from diffusers import AutoencoderKL
    torch.manual_seed(0)
    path = folder / "sd-architecture"
    AutoencoderKL(**SD_ARCHITECTURE).save_pretrained(path)
    return str(path)


def official_step(setup, batch: torch.Tensor, step: int) -> dict[str, float]:
    """One step of the formulation as method.md writes it (``AlphaVAEObjective``), logs read back every step."""
    acc, objective = setup.accelerator, setup.objective
    generator = step_generator(setup.config.seed, step, acc.device)  # the draws of the trainer's step, in its order
    choices = blend_choices(len(batch), setup.weights.blend_p, generator)
    x01 = blend_augment(batch.to(acc.device), setup.weights.blend_p, choices=choices)
    objective.generator = generator  # the posterior noise: the step's next draw
    with acc.autocast():
        loss, logs, recon = objective.generator_step(setup.model, x01, step)
    setup.optimizer.zero_grad(set_to_none=True)
    loss.backward()
    setup.optimizer.step()
    setup.scheduler.step()
    with acc.autocast():
        d_loss, d_logs = objective.discriminator_step(recon, x01, step)
    setup.disc_optimizer.zero_grad(set_to_none=True)
    d_loss.backward()
    setup.disc_optimizer.step()
    return {**logs, **d_logs}


#: What the ``optimised`` row switches on: config keys ``compile`` and ``cuda_graphs``.
OPTIMISED = {"graphs": ("off", "on"), "compile+graphs": ("on", "on"), "compile": ("on", "off")}
DEFAULT_OPTIMISED = "compile+graphs"  # what the trainer does on one GPU
TIMED_STEPS, WARMUP_STEPS = 20, 5  # per row: steps timed, after steps of warm-up (compilation happens there)


def prepare_row(row: str, n_batches: int, lpips_net: str, optimised: str = DEFAULT_OPTIMISED):
    """(name, model, batch, config, accelerator, setup, step function, batches) of one row, built in this process."""
    name, model, batch = row.split(":")
    batch = int(batch)
    with tempfile.TemporaryDirectory() as tmp:
        config = load_config(configs_dir() / "main.json", vae=vae_spec(model, Path(tmp)), data="sample", split=None,
                             batch_size=batch, steps=10_000, num_workers=0, lpips_net=lpips_net,
                             compile=OPTIMISED[optimised][0] if name == "optimised" else "off",
                             cuda_graphs=OPTIMISED[optimised][1] if name == "optimised" else "off")
        acc = make_accelerator(config)
        torch.manual_seed(0)
        setup = build_setup(config, acc)
    if name != "optimised":  # the official formulation and the eager step run fp32 frozen networks, as written
        setup.objective.reference_vae.float()
        setup.objective.lpips_model.float()
    images = RGBAFolder(sample_dir(), size=config.image_size)
    pool = images.load_all()
    picks = torch.Generator().manual_seed(0)
    batches = [pool[torch.randint(len(pool), (batch,), generator=picks)] for _ in range(n_batches)]
    if acc.device.type == "cuda":
        batches = [b.pin_memory() for b in batches]
    first = setup.weights.disc_start  # every step with the discriminator on

    def step(i: int):
        if name == "official":
            return official_step(setup, batches[i], first + i)
        return train_step(setup, batches[i], first + i)

    return name, model, batch, config, acc, setup, step


def run_row(row: str, steps: int, warmup: int, lpips_net: str, optimised: str, profile: int = 0,
            memory: int = 0) -> dict:
    """Time one row in this process (then, with ``profile``, print the kernels of that many more steps; with
    ``memory``, the call sites that hold the most memory at the row's peak)."""
    name, model, batch, config, acc, setup, step = prepare_row(row, warmup + steps + 1 + profile, lpips_net, optimised)

    def sync() -> None:
        if acc.device.type == "cuda":
            torch.cuda.synchronize()

    if acc.device.type == "cuda":  # peak over the whole row: a CUDA graph's memory is taken while it is recorded
        torch.cuda.reset_peak_memory_stats()
        if memory:
            torch.cuda.memory._record_memory_history(max_entries=MEMORY_TRACE_ENTRIES)
    t0 = time.perf_counter()
    logs = step(0)
    first_total = float(logs["total"])
    flops = None
    if name != "optimised":
        with FlopCounterMode(display=False) as counter:
            step(1)
        flops = counter.get_total_flops()
    for i in range(2, warmup + 1):
        step(i)
    sync()
    warmup_s = time.perf_counter() - t0
    t0 = time.perf_counter()
    for i in range(warmup + 1, warmup + 1 + steps):
        logs = step(i)
    if name != "official":
        read_logs(acc, logs)  # what the trainer does every log_every steps
    sync()
    step_s = (time.perf_counter() - t0) / steps
    if memory and acc.device.type == "cuda":
        trace = torch.cuda.memory._snapshot()["device_traces"][torch.cuda.current_device()]
        torch.cuda.memory._record_memory_history(enabled=None)
        print_peak_sites(trace, memory)
    if profile:
        print_profile(step, range(warmup + 1 + steps, warmup + 1 + steps + profile), sync)
    return {"name": name, "model": model, "batch": batch, "image_size": config.image_size,
            "optimised": optimised if name == "optimised" else None,
            "parameters_m": round(sum(p.numel() for p in setup.model.parameters()) / 1e6, 2),
            "step_ms": 1000 * step_s, "images_per_s": batch / step_s, "flops_per_step": flops,
            "warmup_s": warmup_s, "first_step_total": first_total,
            "peak_memory_gib": torch.cuda.max_memory_allocated() / 2**30 if acc.device.type == "cuda" else None,
            "lpips_net": lpips_net, "notes": setup.notes}


#: Allocator events kept for ``--memory`` (a row's warm-up, recording and timed steps fit).
MEMORY_TRACE_ENTRIES = 1_000_000


def is_own_frame(filename: str) -> bool:
    """Whether a traced frame is Python code outside torch: not a C++ frame (``??`` or a C++ file, which a CUDA
    trace lists first), not torch or Triton, not Inductor's generated code (under its cache folder: the default
    ``torchinductor_<user>`` or ``$TORCHINDUCTOR_CACHE_DIR``)."""
    moved_cache = os.environ.get("TORCHINDUCTOR_CACHE_DIR")
    generated = "/torchinductor_" in filename or (
        moved_cache is not None and os.path.realpath(filename).startswith(os.path.realpath(moved_cache) + os.sep))
    return filename.endswith(".py") and "/torch/" not in filename and "/triton/" not in filename and not generated


def peak_sites(trace: list[dict], n: int) -> tuple[int, list[tuple[str, int]]]:
    """Replay an allocator trace (``torch.cuda.memory._snapshot()["device_traces"][i]``): the bytes live at its
    peak, and the ``n`` call sites holding most of them. A site is an allocation's innermost frame that
    :func:`is_own_frame` keeps (for a compiled region, the module call that entered it), or "torch internals"."""
    def replay(stop: int | None) -> tuple[int, int, dict[int, dict]]:
        live: dict[int, dict] = {}
        current = peak = peak_index = 0
        for i, event in enumerate(trace[:stop]):
            if event["action"] == "alloc":
                live[event["addr"]] = event
                current += event["size"]
            elif event["action"] == "free_requested" and event["addr"] in live:
                current -= live.pop(event["addr"])["size"]
            if current > peak:
                peak, peak_index = current, i
        return peak, peak_index, live

    peak, peak_index, _ = replay(None)
    _, _, live = replay(peak_index + 1)
    sites: dict[str, int] = {}
    for event in live.values():
        frame = next((f for f in event.get("frames", []) if is_own_frame(f["filename"])), None)
        site = f"{Path(frame['filename']).name}:{frame['line']} {frame['name']}" if frame else "torch internals"
        sites[site] = sites.get(site, 0) + event["size"]
    return peak, sorted(sites.items(), key=lambda item: -item[1])[:n]


def print_peak_sites(trace: list[dict], n: int) -> None:
    """:func:`peak_sites` of a row, to stderr."""
    peak, sites = peak_sites(trace, n)
    print(f"memory: {peak / 2**30:.2f} GiB live at the traced peak; the {len(sites)} sites holding most:", file=sys.stderr)
    for site, size in sites:
        print(f"  {size / 2**30:7.3f} GiB  {site}", file=sys.stderr)


def print_profile(step, steps: range, sync) -> None:
    """torch.profiler over ``steps``: GPU time per step, the 25 kernels that take most of it, and the 30 operators
    (with their input shapes) that do (to stderr)."""
    from torch.profiler import ProfilerActivity, profile
    with profile(activities=[ProfilerActivity.CPU, ProfilerActivity.CUDA], record_shapes=True) as prof:
        for i in steps:
            step(i)
        sync()
    events = prof.key_averages()
    # kernels only, as the table's "Self CUDA time total": a compiled graph's call is a user annotation whose device
    # time spans its kernels, so summing every event counts those kernels twice
    gpu_us = sum(e.self_device_time_total for e in events
                 if e.device_type == torch.autograd.DeviceType.CUDA and not e.is_user_annotation)
    print(f"profile: {gpu_us / 1e3 / len(steps):.1f} ms of GPU time per step over {len(steps)} steps", file=sys.stderr)
    print(events.table(sort_by="self_cuda_time_total", row_limit=25, max_name_column_width=70), file=sys.stderr)
    print("the same by operator and input shapes (eager and compiled parts; a CUDA graph's replay has no operators):",
          file=sys.stderr)
    print(prof.key_averages(group_by_input_shape=True).table(sort_by="self_cuda_time_total", row_limit=30,
                                                             max_name_column_width=40, max_shapes_column_width=90),
          file=sys.stderr)


def count_flops(row: str, lpips_net: str) -> int:
    """FLOPs of one step of ``row`` (after one step of warm-up), counted by FlopCounterMode."""
    step = prepare_row(row, 2, lpips_net)[-1]
    step(0)
    with FlopCounterMode(display=False) as counter:
        step(1)
    return counter.get_total_flops()


def finish(rows: list[dict]) -> list[dict]:
    """Fill in optimised rows' FLOPs from their eager rows, then achieved TFLOP/s and both MFUs."""
    def size(r: dict) -> tuple:  # what a step's arithmetic depends on
        return r["model"], r["batch"], r.get("image_size"), r.get("lpips_net")

    eager = {size(r): r["flops_per_step"] for r in rows if r["name"] == "eager"}
    for r in rows:
        if r["flops_per_step"] is None:
            r["flops_per_step"] = eager.get(size(r))
            r["flops_note"] = "counted on the eager row (compiled kernels are invisible to FlopCounterMode)"
        if r["flops_per_step"]:
            tflops = r["flops_per_step"] / (r["step_ms"] / 1000) / 1e12
            r.update(achieved_tflops=tflops, mfu=tflops / DATASHEET_TFLOPS, mfu_vs_measured_matmul=tflops / MEASURED_TFLOPS)
        else:
            r.update(achieved_tflops=None, mfu=None, mfu_vs_measured_matmul=None)
    return rows


def host() -> str:
    """This machine, as one boot of one host: two device calls with the same value ran on the same warm machine
    (a card's name alone does not say so: every H100 has the same one)."""
    boot = Path("/proc/sys/kernel/random/boot_id")
    return f"{platform.node()} boot {boot.read_text().strip() if boot.exists() else 'unknown'}"


def save(rows: list[dict], path: Path | None) -> None:
    """:func:`finish` the rows, stamp the new ones (those without a command) with machine, host and command, and
    write them to ``path`` atomically (after every row: a call cut short by its time limit keeps the rows it
    measured, and an appended table its earlier rows)."""
    machine = machine_name(torch_device())
    command = "python benchmarks/train_speed.py " + " ".join(sys.argv[1:])
    stamp = {"machine": machine, "host": host(), "command": command, "torch": torch.__version__}
    for r in finish(rows):
        if "command" not in r:
            r.update(stamp)
    if path is not None:
        atomic_write(path, lambda tmp: Path(tmp).write_text(json.dumps(rows, indent=1) + "\n"))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rows", default=",".join(ROWS), help="comma-separated name:model:batch (default: all nine)")
    parser.add_argument("--steps", type=int, default=TIMED_STEPS, help="timed steps per row")
    parser.add_argument("--warmup", type=int, default=WARMUP_STEPS, help="steps before timing (compilation happens here)")
    parser.add_argument("--lpips-net", default="vgg", choices=("vgg", "alex"))
    parser.add_argument("--optimised", default=DEFAULT_OPTIMISED, choices=tuple(OPTIMISED),
                        help="what the optimised rows switch on (default: what the trainer does on a GPU)")
    parser.add_argument("--profile", type=int, default=0, metavar="N",
                        help="after timing, profile N steps of each row and print its top kernels")
    parser.add_argument("--memory", type=int, default=0, metavar="N",
                        help="trace the allocator over each row and print the N call sites holding most at its peak")
    parser.add_argument("--json", type=Path)
    parser.add_argument("--append", action="store_true",
                        help="keep the rows already in --json and add these (one table over several calls on one "
                             "machine: each call must stay under the device's 10 minutes)")
    parser.add_argument("--count-flops", action="store_true",
                        help="only count each row's FLOPs per image (one step at batch 1; runs on a CPU too)")
    parser.add_argument("--one", help=argparse.SUPPRESS)  # internal: run one row in this process, print its JSON
    args = parser.parse_args()
    if "graphs" in args.optimised and args.warmup < WARMUP:  # else the recording would be timed as a step
        parser.error(f"--warmup {args.warmup}: an optimised row records its CUDA graph after {WARMUP} eager steps; "
                     f"use --warmup {WARMUP} or more")
    if args.one:
        print("ROW " + json.dumps(run_row(args.one, args.steps, args.warmup, args.lpips_net, args.optimised,
                                          args.profile, args.memory)), flush=True)
        return
    if args.count_flops:
        for row in args.rows.split(","):
            name, model, _ = row.split(":")
            print(f"{name}:{model}: {count_flops(f'{name}:{model}:1', args.lpips_net) / 1e12:.4f} TFLOP per image", flush=True)
        return
    if args.append and args.json is None:
        parser.error("--append needs --json")
    earlier = json.loads(args.json.read_text()) if args.append and args.json.exists() else []
    others = {r.get("host") for r in earlier} - {host()}
    if others:
        parser.error(f"--append: {args.json} has rows from another machine or boot ({', '.join(map(str, others))}); "
                     "a side-by-side table is measured on one machine: start a new --json")
    rows = []
    for row in args.rows.split(","):
        cmd = [sys.executable, __file__, "--one", row, "--steps", str(args.steps), "--warmup", str(args.warmup),
               "--lpips-net", args.lpips_net, "--optimised", args.optimised, "--profile", str(args.profile),
               "--memory", str(args.memory)]
        done = subprocess.run(cmd, capture_output=True, text=True)
        if args.profile or args.memory:
            print("\n".join(line for line in done.stderr.splitlines() if not line.startswith(("Warning", "  warnings"))),
                  flush=True)
        lines = [line for line in done.stdout.splitlines() if line.startswith("ROW ")]
        if done.returncode or not lines:
            print(f"{row}: failed (exit {done.returncode})\n{done.stderr[-2000:]}", file=sys.stderr)
            continue
        rows.append(json.loads(lines[-1][4:]))
        r = rows[-1]
        print(f"{row:24s} {r['images_per_s']:8.1f} img/s  {r['step_ms']:7.1f} ms  peak {r['peak_memory_gib'] or 0:5.1f} GiB  "
              f"warm-up {r['warmup_s']:5.1f} s  first total {r['first_step_total']:.6g}", flush=True)
        save(earlier + rows, args.json)
    for r in earlier + rows:
        head = f"{r['name']}:{r['model']}:{r['batch']} ({r['machine']}): "
        if r["mfu"] is None:  # an optimised row takes its FLOPs from the eager row of its size, if the table has one
            print(head + "MFU not counted (no eager row of the same model, batch, size and LPIPS net in the table)")
        else:
            print(head + f"MFU {100 * r['mfu']:.1f} % ({100 * r['mfu_vs_measured_matmul']:.1f} % of the measured "
                  f"matmul), {r['flops_per_step'] / 1e12:.3f} TFLOP/step")
    if len(rows) < len(args.rows.split(",")):
        sys.exit(1)


if __name__ == "__main__":
    main()
