"""The RGBA VAE trainer (method.md §3): extend a pretrained RGB VAE to RGBA and fine-tune it.

One code path for a CPU, one GPU and several GPUs, through accelerate: the same global batch is split over
the processes, and the gradients are averaged across them after each backward pass (one flat all-reduce
per network; the objective calls ``vae.encode``/``vae.decode`` directly, which a DDP wrapper would not
see). bf16 autocast on a GPU, AdamW with the paper's betas, warm-up + cosine learning rate, optional
gradient checkpointing and EMA, a PatchGAN discriminator with its own optimiser from ``disc_start``,
atomic checkpoints with exact resume (``alphavae.training.checkpoint``, ``alphavae.training.data``), tqdm progress,
TensorBoard logs of every loss term and of reconstructions on checkerboards, and a stop on NaN/inf that
names the step and the term.

``train(config, output)`` writes into ``output``: ``checkpoints/``, ``tensorboard/``, ``log.jsonl`` (one
JSON line per logged step), ``run.json`` (config and notes), ``model/`` (fp32 ``save_pretrained``) and
``model-fp16/`` (the fp16 copy to ship).
"""

from __future__ import annotations

import copy
import json
import math
import os
import shutil
import time
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

import torch
from accelerate import Accelerator
from accelerate.utils import set_seed
from diffusers import AutoencoderKL
from diffusers.optimization import get_scheduler
from diffusers.training_utils import EMAModel
from diffusers.utils import logging as diffusers_logging
from tqdm import tqdm

from alphavae.blending import over_checkerboard
from alphavae.training.checkpoint import latest_checkpoint, load_checkpoint, save_checkpoint
from alphavae.vae.conversion import convert_to_rgba
from alphavae.training.data import RGBAFolder
from alphavae.losses import AlphaVAEObjective, LossWeights, PatchDiscriminator, blend_augment
from alphavae.metric.lpips_model import LPIPSUnavailable, load_lpips
from alphavae.training.config import ConfigError, TrainConfig
from alphavae.training.data import StepBatchSampler, make_loader, train_and_heldout
from alphavae.vae.loading import load_vae


class TrainingDiverged(RuntimeError):
    """A loss became NaN or infinite; the message names the step and the term."""


class _Counter:
    """The number of finished steps, saved with every checkpoint."""

    def __init__(self) -> None:
        self.step = 0

    def state_dict(self) -> dict[str, int]:
        return {"step": self.step}

    def load_state_dict(self, state: dict[str, int]) -> None:
        self.step = int(state["step"])


def loss_weights(config: TrainConfig, source: str = "<config>") -> LossWeights:
    """The config's ``loss`` object as :class:`LossWeights`; an unknown key is a ConfigError naming it."""
    known = {f.name for f in fields(LossWeights)}
    unknown = sorted(set(config.loss) - known)
    if unknown:
        raise ConfigError(f"{source}: unknown key 'loss.{unknown[0]}' (known: {', '.join(sorted(known))})")
    return LossWeights(**config.loss)


@dataclass
class TrainingSetup:
    """Everything one training step needs, built by :func:`build_setup` (also used by the speed benchmark)."""

    accelerator: Accelerator
    config: TrainConfig
    weights: LossWeights
    model: AutoencoderKL
    objective: AlphaVAEObjective
    optimizer: torch.optim.Optimizer
    scheduler: Any
    discriminator: torch.nn.Module | None = None
    disc_optimizer: torch.optim.Optimizer | None = None
    disc_scheduler: Any = None
    ema: EMAModel | None = None
    notes: list[str] = field(default_factory=list)


def make_accelerator(config: TrainConfig, output: Path | None = None) -> Accelerator:
    """An Accelerator for the config: bf16 autocast on a GPU ('auto'), TensorBoard logs under ``output``."""
    cpu = config.device == "cpu" or not torch.cuda.is_available()
    if not cpu:  # fixed image size: let cuDNN pick the fastest convolution algorithms; TF32 for fp32 matmuls
        torch.backends.cudnn.benchmark = True
        torch.backends.cuda.matmul.allow_tf32 = True
    precision = config.mixed_precision
    if precision == "auto":
        precision = "no" if cpu else "bf16"
    kwargs: dict[str, Any] = {}
    if output is not None:
        kwargs = {"log_with": "tensorboard", "project_dir": str(output / "tensorboard")}
    return Accelerator(cpu=cpu, mixed_precision=precision, **kwargs)


def perceptual_model(weights: LossWeights, config: TrainConfig, device: torch.device, notes: list[str]):
    """Real LPIPS (AlexNet) if its weights are present, else None with a note; never a random backbone."""
    if weights.perceptual <= 0:
        notes.append("perceptual term off: weight 0")
        return None
    try:
        return load_lpips(weights=config.lpips_weights, device=device)
    except LPIPSUnavailable as exc:
        notes.append(f"perceptual term off: LPIPS unavailable ({exc})")
        return None


def build_setup(config: TrainConfig, accelerator: Accelerator) -> TrainingSetup:
    """Load and convert the VAE, build the objective, optimisers, schedulers, discriminator and EMA."""
    weights = loss_weights(config)
    device = accelerator.device
    notes: list[str] = []
    rgb_vae = load_vae(config.vae)
    model = convert_to_rgba(rgb_vae).to(device).train().requires_grad_(True)
    if config.gradient_checkpointing:
        model.enable_gradient_checkpointing()
    reference = None
    if weights.reference_kl > 0:
        reference = rgb_vae.to(device).eval().requires_grad_(False)
    else:
        notes.append("reference KL term off: weight 0")
    if weights.prior_kl <= 0:
        notes.append("prior KL term off: weight 0")
    lpips_model = perceptual_model(weights, config, device, notes)
    discriminator = None
    if weights.adversarial > 0:
        discriminator = PatchDiscriminator(in_channels=4).to(device).train()
    else:
        notes.append("adversarial term off: weight 0")
    objective = AlphaVAEObjective(weights, reference_vae=reference, lpips_model=lpips_model, discriminator=discriminator)

    def adamw(params, lr):
        return torch.optim.AdamW(params, lr=lr, betas=config.betas, weight_decay=config.weight_decay)

    def schedule(opt, warmup, steps):
        return get_scheduler(config.lr_schedule, opt, num_warmup_steps=warmup, num_training_steps=steps)

    optimizer = adamw(model.parameters(), config.lr)
    scheduler = schedule(optimizer, config.warmup_steps, config.steps)
    setup = TrainingSetup(accelerator, config, weights, model, objective, optimizer, scheduler, notes=notes)
    if discriminator is not None:
        setup.discriminator = discriminator
        setup.disc_optimizer = adamw(discriminator.parameters(), config.disc_lr or config.lr)
        disc_steps = max(config.steps - weights.disc_start, 1)
        setup.disc_scheduler = schedule(setup.disc_optimizer, min(config.warmup_steps, disc_steps), disc_steps)
    if config.ema_decay is not None:
        setup.ema = EMAModel(model.parameters(), decay=config.ema_decay)
        setup.ema.to(device)
    return setup


def average_gradients(accelerator: Accelerator, module: torch.nn.Module) -> None:
    """Average the gradients of ``module`` over the processes in one flat all-reduce (no-op on one)."""
    if accelerator.num_processes == 1:
        return
    params = [p for p in module.parameters() if p.requires_grad]
    flat = torch.cat([(p.grad if p.grad is not None else torch.zeros_like(p)).flatten() for p in params])
    flat = accelerator.reduce(flat, reduction="mean")
    offset = 0
    for p in params:
        n = p.numel()
        p.grad = flat[offset:offset + n].view_as(p).clone()
        offset += n


def broadcast_parameters(accelerator: Accelerator, module: torch.nn.Module | None) -> None:
    """Copy process 0's parameters and buffers to every process (no-op on one process or ``None``)."""
    if accelerator.num_processes == 1 or module is None:
        return
    for tensor in list(module.parameters()) + list(module.buffers()):
        torch.distributed.broadcast(tensor.data, src=0)


def broadcast_buffers(accelerator: Accelerator, module: torch.nn.Module) -> None:
    """Copy process 0's buffers (BatchNorm running statistics) to every process, as DDP does."""
    if accelerator.num_processes == 1:
        return
    for buffer in module.buffers():
        torch.distributed.broadcast(buffer, src=0)


def _check_finite(logs: dict[str, float], step: int) -> None:
    """Raise :class:`TrainingDiverged` naming the first non-finite loss term (then anything else logged)."""
    for name, value in sorted(logs.items(), key=lambda item: not item[0].startswith(("loss/", "disc/loss"))):
        if not math.isfinite(value):
            term = name.removeprefix("loss/")
            raise TrainingDiverged(f"step {step}: loss term '{term}' is {value}; lower the learning rate or check the data")


def _mean_logs(accelerator: Accelerator, logs: dict[str, float]) -> dict[str, float]:
    """Average the logged values over the processes, so every process sees the same (and stops together)."""
    if accelerator.num_processes == 1:
        return logs
    values = torch.tensor(list(logs.values()), device=accelerator.device, dtype=torch.float64)
    values = accelerator.reduce(values, reduction="mean")
    return dict(zip(logs, values.tolist()))


def augment_generator(config: TrainConfig, step: int, rank: int) -> torch.Generator:
    """The blend augmentation's random numbers for (step, process): a pure function of them (exact resume)."""
    return torch.Generator().manual_seed((config.seed * 1_000_003 + step) * 64 + rank)


def train_step(setup: TrainingSetup, batch: torch.Tensor, step: int) -> dict[str, float]:
    """One generator (and, from ``disc_start``, discriminator) update on ``batch`` in [0, 1]; returns the logs."""
    acc, model = setup.accelerator, setup.model
    rank = acc.process_index
    batch = batch.to(acc.device, non_blocking=True)
    x01 = blend_augment(batch, setup.weights.blend_p, augment_generator(setup.config, step, rank))
    with acc.autocast():
        loss, logs, recon01 = setup.objective.generator_step(model, x01, step, model.decoder.conv_out.weight)
    logs = _mean_logs(acc, {**{k: float(v) for k, v in logs.items()}, "total": float(loss.detach())})
    _check_finite(logs, step)
    setup.optimizer.zero_grad(set_to_none=True)
    acc.backward(loss)
    average_gradients(acc, model)
    setup.optimizer.step()
    setup.scheduler.step()
    if setup.ema is not None:
        setup.ema.step(model.parameters())
    logs["lr"] = setup.scheduler.get_last_lr()[0]
    if setup.discriminator is not None and step >= setup.weights.disc_start:
        with acc.autocast():
            d_loss, d_logs = setup.objective.discriminator_step(recon01.detach(), x01, step)
        d_logs = _mean_logs(acc, {k: float(v) for k, v in d_logs.items()})
        _check_finite(d_logs, step)
        setup.disc_optimizer.zero_grad(set_to_none=True)
        acc.backward(d_loss)
        average_gradients(acc, setup.discriminator)
        setup.disc_optimizer.step()
        broadcast_buffers(acc, setup.discriminator)
        setup.disc_scheduler.step()
        logs.update(d_logs)
    return logs


def reconstruct(model: AutoencoderKL, x01: torch.Tensor) -> torch.Tensor:
    """Posterior-mode reconstruction of RGBA images in [0, 1] (evaluation and samples)."""
    z = model.encode(x01 * 2 - 1).latent_dist.mode()
    return ((model.decode(z).sample + 1) / 2).clamp(0, 1)


@torch.no_grad()
def log_samples(setup: TrainingSetup, samples: torch.Tensor, step: int) -> None:
    """Targets (top) and reconstructions (bottom) over checkerboards, to TensorBoard."""
    model = setup.model
    model.eval()
    with setup.accelerator.autocast():
        recon = reconstruct(model, samples.to(setup.accelerator.device)).float()
    model.train()
    grid = torch.cat([over_checkerboard(samples.cpu()), over_checkerboard(recon.cpu())], dim=0)
    tracker = setup.accelerator.get_tracker("tensorboard", unwrap=True)
    tracker.add_images("reconstructions_on_checkerboard", grid, step)


def _atomic_save_pretrained(model: AutoencoderKL, path: Path, dtype: torch.dtype) -> None:
    """``save_pretrained`` a ``dtype`` copy into a temporary folder, then rename it to ``path``."""
    tmp = path.with_name(f".tmp-{path.name}")
    shutil.rmtree(tmp, ignore_errors=True)
    verbosity = diffusers_logging.get_verbosity()
    diffusers_logging.set_verbosity_error()  # its fp16 cast warning is about modules this VAE does not have
    try:
        copy.deepcopy(model).to("cpu", dtype).save_pretrained(tmp, safe_serialization=True)
    finally:
        diffusers_logging.set_verbosity(verbosity)
    if path.exists():
        shutil.rmtree(path)
    tmp.rename(path)


def save_final(setup: TrainingSetup, output: Path) -> tuple[Path, Path]:
    """The trained model (EMA weights if EMA is on) as ``output/model`` (fp32) and ``output/model-fp16``."""
    model = setup.model
    if setup.ema is not None:
        model = copy.deepcopy(model)
        setup.ema.copy_to(model.parameters())
    _atomic_save_pretrained(model, output / "model", torch.float32)
    _atomic_save_pretrained(model, output / "model-fp16", torch.float16)
    return output / "model", output / "model-fp16"


@dataclass
class TrainResult:
    """Where a finished run put its outputs, and what it said about itself."""

    output: Path
    model_dir: Path
    fp16_dir: Path
    steps: int
    notes: list[str]
    images_per_s: float
    model: AutoencoderKL  # the trained model in memory (this process's copy; EMA weights are in the saved folder)
    discriminator: torch.nn.Module | None


def read_log(output: str | Path) -> list[dict[str, float]]:
    """The run's ``log.jsonl``: one dict per logged step (``step``, every loss term, ``lr``, …)."""
    path = Path(output) / "log.jsonl"
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def train(config: TrainConfig, output: str | Path, resume: bool = False, stop_after: int | None = None) -> TrainResult:
    """Run (or, with ``resume``, continue from the newest checkpoint) one training run into ``output``.

    ``stop_after``: leave after that many steps in total as if killed (no final model) — for tests and for
    splitting a long run over several sessions.
    """
    output = Path(output)
    if output.exists() and any(output.iterdir()) and not resume:
        raise FileExistsError(f"{output}: output folder is not empty; use --resume to continue, or another --output")
    acc = make_accelerator(config, output)
    train_files, heldout_files = train_and_heldout(config.data, config.split, config.max_images)
    set_seed(config.seed)  # the same initial discriminator on every process…
    setup = build_setup(config, acc)
    for module in (setup.model, setup.discriminator):
        broadcast_parameters(acc, module)  # …and made sure of, as DDP does when it wraps a model
    set_seed(config.seed, device_specific=True)  # then each process draws its own posterior samples
    counter = _Counter()
    for obj in (setup.model, setup.optimizer, setup.scheduler, counter):
        acc.register_for_checkpointing(obj)
    if setup.discriminator is not None:
        for obj in (setup.discriminator, setup.disc_optimizer, setup.disc_scheduler):
            acc.register_for_checkpointing(obj)
    if setup.ema is not None:
        acc.register_for_checkpointing(setup.ema)
    ckpt_root = output / "checkpoints"
    found = latest_checkpoint(ckpt_root) if resume else None
    if found is not None:
        load_checkpoint(acc, found)
    start = counter.step
    if acc.is_main_process:
        output.mkdir(parents=True, exist_ok=True)
        run_info = {"config": config.to_dict(), "notes": setup.notes, "processes": acc.num_processes,
                    "device": str(acc.device), "mixed_precision": acc.mixed_precision,
                    "train_images": len(train_files), "heldout_images": len(heldout_files)}
        (output / "run.json").write_text(json.dumps(run_info, indent=2) + "\n")
        for note in setup.notes:
            acc.print(f"alphavae train: {note}")
        if found is not None:
            acc.print(f"alphavae train: resumed from {found} (step {start})")
    acc.init_trackers("alphavae", config={k: v for k, v in config.to_dict().items() if isinstance(v, (int, float, str, bool))})
    sampler = StepBatchSampler(len(train_files), config.batch_size, config.steps, config.seed, start,
                               acc.process_index, acc.num_processes)
    loader = make_loader(train_files, config.image_size, sampler, config.num_workers)
    sample_files = (heldout_files or train_files)[:config.n_samples]
    samples = None
    if sample_files:
        sample_set = RGBAFolder(sample_files[0].parent, size=config.image_size, files=sample_files)
        samples = torch.stack([sample_set.load(i) for i in range(len(sample_files))])
    end = config.steps if stop_after is None else min(config.steps, stop_after)
    log_file = output / "log.jsonl"
    if acc.is_main_process and log_file.exists():  # drop lines logged after the checkpoint we resumed from
        kept = [line for line in log_file.read_text().splitlines() if line.strip() and json.loads(line)["step"] <= start]
        log_file.write_text("".join(line + "\n" for line in kept))
    quiet = not acc.is_local_main_process or os.environ.get("TQDM_DISABLE", "") not in ("", "0")
    progress = tqdm(total=config.steps, initial=start, desc="train", disable=quiet)
    t0, images_per_s = time.perf_counter(), 0.0
    for step, batch in zip(range(start, end), loader):
        logs = train_step(setup, batch, step)
        counter.step = step + 1
        if counter.step % config.log_every == 0 or counter.step == end:
            elapsed = time.perf_counter() - t0
            images_per_s = (counter.step - start) * config.batch_size / max(elapsed, 1e-9)
            logs["images_per_s"] = images_per_s
            acc.log(logs, step=counter.step)
            if acc.is_main_process:
                with log_file.open("a") as fh:
                    fh.write(json.dumps({"step": counter.step, **logs}) + "\n")
            progress.set_postfix(loss=f"{logs['total']:.4g}", img_s=f"{images_per_s:.1f}")
        if samples is not None and acc.is_main_process and (counter.step % config.sample_every == 0 or counter.step == config.steps):
            log_samples(setup, samples, counter.step)
        if counter.step % config.checkpoint_every == 0 and counter.step < config.steps:
            save_checkpoint(acc, ckpt_root, counter.step, config.keep_checkpoints)
        progress.update(1)
    progress.close()
    model_dir, fp16_dir = output / "model", output / "model-fp16"
    if counter.step >= config.steps and acc.is_main_process:
        save_final(setup, output)
    acc.wait_for_everyone()
    acc.end_training()
    return TrainResult(output, model_dir, fp16_dir, counter.step, setup.notes, images_per_s, setup.model, setup.discriminator)
