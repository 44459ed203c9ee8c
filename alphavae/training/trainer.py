"""The RGBA VAE trainer (method.md §3): extend a pretrained RGB VAE to RGBA and fine-tune it.

One code path for a CPU, one GPU and several GPUs, through accelerate: the same global batch is split over
the processes, and the step (:mod:`alphavae.training.step`: the loss as modules that accelerate wraps in
DistributedDataParallel, no host synchronisation per step, torch.compile on a GPU) trains N processes like
one. bf16 autocast on a GPU that has bf16 natively (``alphavae.vae.loading.autocast_dtype``; fp32 on a T4),
AdamW with the paper's betas, warm-up + cosine learning rate, optional gradient checkpointing and EMA, a PatchGAN discriminator with its own optimiser from ``disc_start``,
atomic checkpoints with exact resume (``alphavae.training.checkpoint``, ``alphavae.training.data``), tqdm progress,
TensorBoard logs of every loss term and of reconstructions on checkerboards, and a stop on NaN/inf that
names the step and the term (found on the device each step, read back every ``log_every`` steps and
before each checkpoint, so no diverged state is ever saved).

With ``trainable: decoder`` only the decoder trains, the encoder frozen (method.md §3.9: a fine-tune of an RGBA VAE
whose latent space, and the generator trained on it, must stay).

``train(config, output)`` writes into ``output``: ``checkpoints/``, ``tensorboard/``, ``log.jsonl`` (one
JSON line per logged step), ``run.json`` (config and notes), ``model/`` (fp32 ``save_pretrained``) and
``model-fp16/`` (the fp16 copy to ship).
"""

from __future__ import annotations

import copy
import dataclasses
import hashlib
import json
import math
import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from accelerate import Accelerator
from accelerate.utils import set_seed
from diffusers import AutoencoderKL
from diffusers.training_utils import EMAModel
from diffusers.utils import logging as diffusers_logging

from alphavae.blending import over_checkerboard
from alphavae.imageio import umask_mode
from alphavae.losses import AlphaVAEObjective, LossWeights
from alphavae.losses.objective import build_objective
from alphavae.metric.backbones import lpips_or_reason
from alphavae.training.checkpoint import latest_checkpoint, load_checkpoint, rng_state, save_checkpoint, set_rng_state
from alphavae.training.config import ConfigError, TrainConfig
from alphavae.training.data import RGBAFolder, StepBatchSampler, make_loader, train_and_heldout
from alphavae.training.graphs import StepGraphs
from alphavae.training.loop import LoopPlan, RunLog, run_lock, run_steps
from alphavae.training.optim import adamw, lr_schedule, settle_ema, settle_groups
from alphavae.training.step import (DiscriminatorLoss, DivergenceWatch, GeneratorLoss, augment, global_draws,
                                    optimise_networks, step_generator)
from alphavae.vae.conversion import is_rgba
from alphavae.vae.loading import autocast_dtype, load_vae, machine_name
from alphavae.vae.reconstruct import reconstruct

class TrainingDiverged(RuntimeError):
    """A loss became NaN or infinite; the message names the step and the term."""


@dataclass
class TrainingSetup:
    """Everything one training step needs, built by :func:`build_setup` (also used by the speed benchmark).

    ``generator_loss`` and ``discriminator_loss`` are the step's modules (:mod:`alphavae.training.step`), wrapped
    by accelerate (DistributedDataParallel on several processes); ``model`` and ``discriminator`` are the bare
    networks inside them.
    """

    accelerator: Accelerator
    config: TrainConfig
    weights: LossWeights
    model: AutoencoderKL
    objective: AlphaVAEObjective
    optimizer: torch.optim.Optimizer
    scheduler: Any
    generator_loss: torch.nn.Module
    latent_shape: tuple[int, int, int]
    channels_last: bool = False
    discriminator: torch.nn.Module | None = None
    discriminator_loss: torch.nn.Module | None = None
    disc_optimizer: torch.optim.Optimizer | None = None
    disc_scheduler: Any = None
    ema: EMAModel | None = None
    watch: DivergenceWatch = field(default_factory=DivergenceWatch)
    graphs: StepGraphs | None = None  # the step as CUDA graphs (None: eager)
    notes: list[str] = field(default_factory=list)


def auto_mixed_precision(cpu: bool) -> str:
    """What ``mixed_precision: auto`` means: accelerate's ``"bf16"`` on a GPU with native bf16, else ``"no"``."""
    return "no" if cpu or autocast_dtype(torch.device("cuda")) is None else "bf16"


def make_accelerator(config: TrainConfig, output: Path | None = None) -> Accelerator:
    """An Accelerator for the config: bf16 autocast on a GPU that has it natively ('auto'), TensorBoard logs
    under ``output``."""
    cpu = config.device == "cpu" or not torch.cuda.is_available()
    if not cpu:  # fixed image size: let cuDNN pick the fastest convolution algorithms; TF32 for fp32 matmuls
        torch.backends.cudnn.benchmark = True
        torch.backends.cuda.matmul.allow_tf32 = True
        torch.backends.cudnn.allow_tf32 = True
    precision = auto_mixed_precision(cpu) if config.mixed_precision == "auto" else config.mixed_precision
    kwargs: dict[str, Any] = {}
    if output is not None:
        kwargs = {"log_with": "tensorboard", "project_dir": str(output / "tensorboard")}
    return Accelerator(cpu=cpu, mixed_precision=precision, **kwargs)


def perceptual_model(weights: LossWeights, config: TrainConfig, device: torch.device, notes: list[str]):
    """LPIPS-``config.lpips_net`` on the fetched ImageNet backbone, or None when the term is off (weight 0).

    A positive perceptual weight without the weights is an error, not a silent skip: the run would not be
    the run the config describes (and a random backbone is never a stand-in).
    """
    if weights.perceptual <= 0:
        notes.append("perceptual term off: weight 0")
        return None
    model, reason = lpips_or_reason(config.lpips_net, device)
    if model is None:
        raise ConfigError(f"loss.perceptual is {weights.perceptual} but {reason}; or set loss.perceptual to 0")
    return model


def latent_shape(model: AutoencoderKL, image_size: int) -> tuple[int, int, int]:
    """(channels, height, width) of the model's latent for square images of ``image_size``."""
    side = image_size // 2 ** (len(model.config.block_out_channels) - 1)
    return model.config.latent_channels, side, side


def frozen_encoder_weights(weights: LossWeights, notes: list[str]) -> LossWeights:
    """The weights of a decoder-only run: both KL terms off, as they only reach the frozen encoder (noted)."""
    off = [term for term in ("prior_kl", "reference_kl") if getattr(weights, term) > 0]
    if off:
        notes.append(f"trainable: decoder: {' and '.join(off)} off (they reach only the frozen encoder)")
    return dataclasses.replace(weights, prior_kl=0.0, reference_kl=0.0)


def freeze_encoder(model: AutoencoderKL) -> None:
    """Freeze the encoder and its ``quant_conv``: the latent space stays what it was."""
    model.encoder.requires_grad_(False)
    model.quant_conv.requires_grad_(False)


def trainable(model: AutoencoderKL) -> list[torch.nn.Parameter]:
    """The parameters the run trains, in a fixed order (all, or the decoder's with the encoder frozen)."""
    return [p for p in model.parameters() if p.requires_grad]


def build_setup(config: TrainConfig, accelerator: Accelerator) -> TrainingSetup:
    """Load (and convert) the VAE, build the objective, the step's modules, optimisers, schedulers and EMA."""
    notes: list[str] = []
    weights = config.loss_weights()
    if config.trainable == "decoder":
        weights = frozen_encoder_weights(weights, notes)
    device = accelerator.device
    lpips_model = perceptual_model(weights, config, device, notes)
    vae = load_vae(config.vae)
    if config.trainable == "decoder" and not is_rgba(vae):
        raise ConfigError(f"trainable is 'decoder' but vae '{config.vae}' is RGB: its converted encoder would never learn "
                          "alpha; fine-tune the decoder of an RGBA VAE (e.g. embedded-rgba)")
    try:
        model, objective = build_objective(vae, weights, device, lpips_model)
    except ValueError as exc:  # an RGBA VAE with the reference KL on
        raise ConfigError(f"vae '{config.vae}': {exc}") from exc
    if config.trainable == "decoder":
        freeze_encoder(model)
    noted = ("perceptual", "prior_kl", "reference_kl") if config.trainable == "decoder" else ("perceptual",)
    notes += [note for note in objective.notes if not note.startswith(noted)]  # said above already
    if config.gradient_checkpointing:
        model.enable_gradient_checkpointing()
    on_gpu = device.type == "cuda"
    if objective.discriminator is not None and on_gpu and accelerator.num_processes > 1:
        objective.discriminator = torch.nn.SyncBatchNorm.convert_sync_batchnorm(objective.discriminator)
        notes.append("discriminator BatchNorm synchronised over the processes (statistics of the global batch)")
    compile_networks = use_compile(config, accelerator)
    frozen_dtype = torch.bfloat16 if on_gpu and accelerator.mixed_precision == "bf16" else None
    notes += optimise_networks(model, objective, compile_networks, frozen_dtype)
    reduce_mean = (lambda t: accelerator.reduce(t, reduction="mean")) if accelerator.num_processes > 1 else None
    generator_loss = accelerator.prepare_model(
        GeneratorLoss(model, objective, reduce_mean, compiled_losses=compile_networks))
    if compile_networks:
        notes.append("torch.compile of the loss functions around the networks: reconstruction, alpha L1, perceptual, "
                     "both KLs, reference composites (step.LossFunctions)")
    graphs = use_cuda_graphs(config, accelerator)
    optimizer = adamw(trainable(model), config.lr, config.betas, config.weight_decay, capturable=graphs)
    scheduler = lr_schedule(optimizer, config.lr_schedule, config.warmup_steps, config.steps)
    setup = TrainingSetup(accelerator, config, weights, model, objective, optimizer, scheduler, generator_loss,
                          latent_shape(model, config.image_size), channels_last=compile_networks, notes=notes)
    if objective.discriminator is not None:
        setup.discriminator = objective.discriminator
        setup.discriminator_loss = accelerator.prepare_model(DiscriminatorLoss(setup.discriminator))
        setup.disc_optimizer = adamw(setup.discriminator.parameters(), config.disc_lr or config.lr, config.betas,
                                     config.weight_decay, capturable=graphs)
        disc_steps = max(config.steps - weights.disc_start, 1)
        setup.disc_scheduler = lr_schedule(setup.disc_optimizer, config.lr_schedule, min(config.warmup_steps, disc_steps), disc_steps)
    if config.ema_decay is not None:
        setup.ema = EMAModel(trainable(model), decay=config.ema_decay, foreach=True)  # a few kernels, not 3 per tensor
        setup.ema.to(device)
    if graphs:
        setup.graphs = StepGraphs(lambda *args: update(setup, *args))
        notes.append("the step recorded as CUDA graphs (before and after disc_start) and replayed")
    return setup


def use_compile(config: TrainConfig, accelerator: Accelerator) -> bool:
    """Whether the networks are compiled: ``compile`` on, or auto on one GPU process (several processes run
    eagerly unless asked: compiled DDP with SyncBatchNorm has not been measured or tested here)."""
    one_gpu = accelerator.device.type == "cuda" and accelerator.num_processes == 1
    return config.compile == "on" or (config.compile == "auto" and one_gpu)


def use_cuda_graphs(config: TrainConfig, accelerator: Accelerator) -> bool:
    """Whether the step runs as CUDA graphs: ``cuda_graphs`` on, or auto on one GPU process without fp16's
    loss scaler (its skipped steps decide on the host) and, with gradient checkpointing, on torch ≥ 2.10 (its
    RNG-state rewind under capture: pytorch#162505). 'on' where that cannot hold is a :class:`ConfigError`."""
    if config.cuda_graphs == "off":
        return False
    reason = None
    if accelerator.device.type != "cuda":
        reason = "it needs a GPU"
    elif accelerator.num_processes > 1:
        reason = f"it runs on one process, not {accelerator.num_processes} (several processes train eagerly)"
    elif accelerator.mixed_precision == "fp16":
        reason = "fp16's loss scaler decides on the host; use mixed_precision bf16"
    elif config.gradient_checkpointing and torch.__version__ < (2, 10):
        reason = f"gradient checkpointing cannot be recorded before torch 2.10 (this is {torch.__version__})"
    if reason is not None and config.cuda_graphs == "on":
        raise ConfigError(f"cuda_graphs is 'on' but {reason}; set cuda_graphs to auto or off")
    return reason is None


def broadcast_buffers(accelerator: Accelerator, module: torch.nn.Module | None) -> None:
    """Copy process 0's buffers (the discriminator's BatchNorm running statistics, which training never reads:
    it stays in train mode) to every process, so every process saves the same state (no-op on one process)."""
    if accelerator.num_processes == 1 or module is None:
        return
    for buffer in module.buffers():
        torch.distributed.broadcast(buffer, src=0)


def read_logs(accelerator: Accelerator, logs: dict[str, torch.Tensor]) -> dict[str, float]:
    """The step's device-side logs as floats, averaged over the processes: one transfer to the host."""
    values = torch.stack([v.float() for v in logs.values()])
    if accelerator.num_processes > 1:
        values = accelerator.reduce(values, reduction="mean")
    return dict(zip(logs, values.tolist()))


def check_divergence(setup: TrainingSetup) -> None:
    """Raise :class:`TrainingDiverged` naming the first step with a non-finite term (a loss first), on every
    process alike; one read-back, made every ``log_every`` steps and before each checkpoint."""
    acc = setup.accelerator
    found = setup.watch.first()
    if acc.num_processes > 1:
        first = torch.tensor(float(found[0]) if found else math.inf, device=acc.device)
        torch.distributed.all_reduce(first, op=torch.distributed.ReduceOp.MIN)
        if math.isfinite(float(first)) and (found is None or found[0] != int(first)):
            raise TrainingDiverged(f"step {int(first)}: a loss term became non-finite on another process; "
                                   "lower the learning rate or check the data")
    if found is None:
        return
    step, logs = found
    for name, value in sorted(logs.items(), key=lambda item: not item[0].startswith(("loss/", "disc/loss"))):
        if not math.isfinite(value):
            term = name.removeprefix("loss/")
            raise TrainingDiverged(f"step {step}: loss term '{term}' is {value}; lower the learning rate or check the data")


def update(setup: TrainingSetup, batch: torch.Tensor, choices: tuple[torch.Tensor, torch.Tensor],
           noise: torch.Tensor | None, latent_noise: torch.Tensor | None, adversarial: bool) -> dict[str, torch.Tensor]:
    """The optimisation work of one step on a device batch in [0, 1] and the step's draws: the generator update
    and, when ``adversarial``, the discriminator's. Fixed shapes, no host synchronisation: what a CUDA graph
    records (:mod:`alphavae.training.graphs`). Returns the logs as device tensors."""
    acc = setup.accelerator
    x01 = augment(batch, setup.weights.blend_p, choices, setup.channels_last)
    with acc.autocast():
        loss, logs, recon = setup.generator_loss(x01, noise, adversarial, latent_noise)
    setup.optimizer.zero_grad(set_to_none=True)
    acc.backward(loss)
    setup.optimizer.step()
    if setup.discriminator_loss is not None and adversarial:
        with acc.autocast():
            d_loss, d_logs = setup.discriminator_loss(x01, recon)
        setup.disc_optimizer.zero_grad(set_to_none=True)
        acc.backward(d_loss)
        setup.disc_optimizer.step()
        logs.update(d_logs)
    return logs


def train_step(setup: TrainingSetup, batch: torch.Tensor, step: int) -> dict[str, torch.Tensor]:
    """One generator (and, from ``disc_start``, discriminator) update on ``batch`` in [0, 1] — through the step's
    CUDA graphs when the setup has them — then the schedules, EMA and the divergence watch. Returns the logs as
    device tensors (:func:`read_logs` reads them), with no host synchronisation."""
    acc, config = setup.accelerator, setup.config
    batch = batch.to(acc.device, non_blocking=True)
    generator = step_generator(config.seed, step, acc.device)
    choices, noise, latent_noise = global_draws(generator, config.batch_size, setup.weights.blend_p, setup.latent_shape,
                                                acc.process_index, acc.num_processes, setup.weights.latent_noise)
    noise = noise if setup.objective.sample_posterior else None
    adversarial = setup.objective.active("adversarial", step)
    run = setup.graphs if setup.graphs is not None else (lambda *args: update(setup, *args))
    logs = run(batch, choices, noise, latent_noise, adversarial)
    setup.scheduler.step()
    if setup.discriminator_loss is not None and adversarial:
        setup.disc_scheduler.step()
    if setup.ema is not None:
        setup.ema.step(trainable(setup.model))
    setup.watch.update(step, logs)
    return logs


@torch.no_grad()
def log_samples(setup: TrainingSetup, samples: torch.Tensor, step: int) -> None:
    """Targets (top) and reconstructions (bottom) over checkerboards, to TensorBoard."""
    model = setup.model
    model.eval()
    with setup.accelerator.autocast():
        recon = reconstruct(model, samples.to(setup.accelerator.device))
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
    umask_mode(tmp)
    if path.exists():
        shutil.rmtree(path)
    tmp.rename(path)


def save_final(setup: TrainingSetup, output: Path) -> tuple[Path, Path]:
    """The trained model (EMA weights if EMA is on) as ``output/model`` (fp32) and ``output/model-fp16``."""
    model = setup.model
    if setup.ema is not None:
        model = copy.deepcopy(model)
        setup.ema.copy_to(trainable(model))
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


def image_list_digest(files: list[Path]) -> str:
    """SHA-256 of the training images' ``folder/name`` list, in order: the batch order of an exact resume depends on
    it, so a checkpoint records it (machine-independent: only each file's last two path parts count)."""
    return hashlib.sha256("\n".join(f"{p.parent.name}/{p.name}" for p in files).encode()).hexdigest()


def _checkpoint_state(setup: TrainingSetup, step: int, images: str) -> dict[str, Any]:
    """Everything every process shares, for :func:`alphavae.training.checkpoint.save_checkpoint`; ``images`` is
    :func:`image_list_digest` of the training images."""
    state: dict[str, Any] = {"step": step, "model": setup.model.state_dict(), "optimizer": setup.optimizer.state_dict(),
                             "scheduler": setup.scheduler.state_dict(), "train_images": images}
    if setup.discriminator is not None:
        state.update(discriminator=setup.discriminator.state_dict(), disc_optimizer=setup.disc_optimizer.state_dict(),
                     disc_scheduler=setup.disc_scheduler.state_dict())
    if setup.ema is not None:
        state["ema"] = setup.ema.state_dict()
    if setup.accelerator.scaler is not None:
        state["scaler"] = setup.accelerator.scaler.state_dict()
    return state


def _restore(setup: TrainingSetup, shared: dict[str, Any], local: dict[str, Any]) -> int:
    """Load a checkpoint's states into ``setup`` (and this process's RNG); returns its step."""
    capturable = setup.graphs is not None
    setup.model.load_state_dict(shared["model"])
    setup.optimizer.load_state_dict(shared["optimizer"])
    setup.scheduler.load_state_dict(shared["scheduler"])
    settle_groups(setup.optimizer, capturable, setup.scheduler)
    if setup.discriminator is not None:
        setup.discriminator.load_state_dict(shared["discriminator"])
        setup.disc_optimizer.load_state_dict(shared["disc_optimizer"])
        setup.disc_scheduler.load_state_dict(shared["disc_scheduler"])
        settle_groups(setup.disc_optimizer, capturable, setup.disc_scheduler)
    if setup.ema is not None:
        setup.ema.load_state_dict(shared["ema"])
        settle_ema(setup.ema, trainable(setup.model))
    if setup.accelerator.scaler is not None and "scaler" in shared:
        setup.accelerator.scaler.load_state_dict(shared["scaler"])
    set_rng_state(local["rng"])
    return int(shared["step"])


def train(config: TrainConfig, output: str | Path, resume: bool = False, stop_after: int | None = None) -> TrainResult:
    """Run (or, with ``resume``, continue from the newest checkpoint) one training run into ``output``.

    ``stop_after``: stop after that many steps in all, with a checkpoint and no final model — for tests and
    for splitting a long run over several sessions (``--resume`` continues exactly).
    """
    output = Path(output)
    if output.exists() and any(p.name != ".lock" for p in output.iterdir()) and not resume:
        raise FileExistsError(f"{output}: output folder is not empty; use --resume to continue, or another --output")
    train_files, heldout_files = train_and_heldout(config.data, config.split, config.max_images, config.extra_data)
    if len(train_files) < config.batch_size:
        extra = f" and '{config.extra_data}'" if config.extra_data else ""
        raise ConfigError(f"data: {len(train_files)} training image(s) in '{config.data}'{extra} are fewer than one batch "
                          f"(batch_size {config.batch_size})")
    acc = make_accelerator(config, output)
    if acc.is_main_process:
        with run_lock(output):
            return _train(config, output, resume, stop_after, acc, train_files, heldout_files)
    return _train(config, output, resume, stop_after, acc, train_files, heldout_files)


def _train(config: TrainConfig, output: Path, resume: bool, stop_after: int | None, acc: Accelerator,
           train_files: list[Path], heldout_files: list[Path]) -> TrainResult:
    set_seed(config.seed)  # the same initial discriminator on every process (DDP also broadcasts process 0's)
    setup = build_setup(config, acc)
    ckpt_root = output / "checkpoints"
    found = latest_checkpoint(ckpt_root) if resume else None
    images = image_list_digest(train_files)
    start = 0
    if found is not None:
        shared, local = load_checkpoint(found, acc.process_index)
        if shared.get("train_images", images) != images:  # checkpoints before stop 25 did not record it
            raise ConfigError(f"{found}: its run trained on another list of images than data, split, max_images and "
                              f"extra_data give now ({len(train_files)} images); resume with the same, or use another --output")
        start = _restore(setup, shared, local)
    if acc.is_main_process:
        run_info = {"config": config.to_dict(), "notes": setup.notes, "processes": acc.num_processes,
                    "device": str(acc.device), "machine": machine_name(acc.device), "mixed_precision": acc.mixed_precision,
                    "train_images": len(train_files), "heldout_images": len(heldout_files)}
        (output / "run.json").write_text(json.dumps(run_info, indent=2) + "\n")
        for note in setup.notes:
            acc.print(f"alphavae train: {note}")
        if found is not None:
            acc.print(f"alphavae train: resumed from {found} (step {start})")
    acc.init_trackers("alphavae", config={k: v for k, v in config.to_dict().items() if isinstance(v, (int, float, str, bool))})
    sampler = StepBatchSampler(len(train_files), config.batch_size, config.steps, config.seed, start,
                               acc.process_index, acc.num_processes)
    batches = iter(make_loader(train_files, config.image_size, sampler, config.num_workers))
    sample_files = (heldout_files or train_files)[:config.n_samples]
    samples = None
    if sample_files:
        sample_set = RGBAFolder(sample_files[0].parent, size=config.image_size, files=sample_files)
        samples = sample_set.load_all()
    log = RunLog(output / "log.jsonl", start if found is not None else None, write=acc.is_main_process)
    t0, speed = time.perf_counter(), {"images_per_s": 0.0}

    def step(s: int) -> dict[str, float]:
        logs = train_step(setup, next(batches), s)
        if samples is not None and acc.is_main_process and ((s + 1) % config.sample_every == 0 or s + 1 == config.steps):
            log_samples(setup, samples, s + 1)
        return logs

    def write_log(done: int, device_logs: dict[str, torch.Tensor]) -> str:
        check_divergence(setup)
        logs = {**read_logs(acc, device_logs), "lr": float(setup.scheduler.get_last_lr()[0])}
        speed["images_per_s"] = (done - start) * config.batch_size / max(time.perf_counter() - t0, 1e-9)
        logs["images_per_s"] = speed["images_per_s"]
        acc.log(logs, step=done)
        log.write({"step": done, **logs})
        return f"loss={logs['total']:.4g} img/s={speed['images_per_s']:.1f}"

    def checkpoint(done: int) -> None:
        check_divergence(setup)  # never save a diverged state
        broadcast_buffers(acc, setup.discriminator)
        save_checkpoint(ckpt_root, done, lambda: _checkpoint_state(setup, done, images), {"rng": rng_state()},
                        config.keep_checkpoints, acc.process_index, acc.wait_for_everyone)

    plan = LoopPlan(config.steps, config.log_every, config.checkpoint_every, stop_after=stop_after)
    try:
        done = run_steps(plan, start, step, write_log, checkpoint, "train", show_progress=acc.is_local_main_process)
    finally:  # free the graphs' memory now, not at a later gc: their update holds ``setup`` (a cycle), and the
        setup.graphs = None  # gradients they recorded live in their pool (the returned model would keep them)
        for optimizer in (setup.optimizer, setup.disc_optimizer):
            if optimizer is not None:
                optimizer.zero_grad(set_to_none=True)
    model_dir, fp16_dir = output / "model", output / "model-fp16"
    check_divergence(setup)
    broadcast_buffers(acc, setup.discriminator)
    if done >= config.steps and acc.is_main_process:
        save_final(setup, output)
    acc.wait_for_everyone()
    acc.end_training()
    return TrainResult(output, model_dir, fp16_dir, done, setup.notes, speed["images_per_s"], setup.model, setup.discriminator)
