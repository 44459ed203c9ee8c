"""Training the latent diffusion model of :mod:`alphavae.generation.sampler` on the RGBA VAE's latents.

Recipe: the training split (``configs/split-rgba-train.json``, the same held-out images as the RGBA VAE
trainer) is resized to ``image_size`` (premultiplied, centred on a transparent square) and encoded **once**
with the paired RGBA VAE — the posterior mean and std of every image and of its mirror image are cached in
``latents.safetensors`` — then every step draws a posterior sample ``z = mean + std·ε``, scales it
(``(z − shift)·scale``) and trains the UNet on the DDPM loss (v-prediction, MSE; optionally Min-SNR-γ weighted), with random class-label
dropout for classifier-free guidance. AdamW, warm-up + cosine learning rate, an EMA of the weights (what is
saved), bf16 autocast on a GPU that has bf16 natively (``alphavae.vae.loading.autocast_dtype``; fp32 on a T4),
a fixed seed, and the checkpoints, loop and lock every trainer shares (:mod:`alphavae.training.loop`; exact
resume).

Run ``alphavae generator train --help``; the exact command behind the shipped ``embedded-generator`` is in its
``MODEL_CARD.md``.
"""

from __future__ import annotations

import hashlib
import json
import sys
import time
from dataclasses import asdict
from pathlib import Path

import torch
import torch.nn.functional as F
from diffusers.training_utils import EMAModel, compute_snr
from safetensors import safe_open
from safetensors.torch import load_file, save
from tqdm.auto import tqdm

from alphavae.blending import to_vae_range
from alphavae.generation.generator_config import GeneratorConfig
from alphavae.generation.sampler import (
    UNetShape,
    as_channel_tensor,
    build_unet,
    load_generator,
    save_generator,
    training_scheduler,
    training_steps,
)
from alphavae.imageio import atomic_write
from alphavae.paths import shared_data_dir, shipped_config
from alphavae.training.checkpoint import (
    latest_checkpoint,
    load_checkpoint,
    rng_state,
    save_checkpoint,
    set_rng_state,
)
from alphavae.training.data import RGBAFolder
from alphavae.training.loop import LoopPlan, RunLog, run_lock, run_steps
from alphavae.training.optim import adamw, lr_schedule, settle_ema
from alphavae.training.splits import read_split, split_files
from alphavae.vae.loading import (autocast_dtype, autocast_for, latent_factors, load_vae, machine_name, torch_device,
                                  weights_sha256)

#: The split shared with the RGBA VAE trainer (helper E's file): same held-out images everywhere.
DEFAULT_SPLIT = shipped_config("split-rgba-train")


def category_of(path: Path, root: Path) -> str:
    """The class of an image: its top-level folder under the data root (``.`` for files at the root)."""
    parts = path.relative_to(root).parts
    return parts[0] if len(parts) > 1 else "."


@torch.no_grad()
def encode_posteriors(vae, dataset: RGBAFolder, batch_size: int = 32, hflip: bool = True,
                      progress: bool = True) -> tuple[torch.Tensor, torch.Tensor]:
    """Posterior ``(mean, std)`` of every image (and, with ``hflip``, of its mirror image after all originals)."""
    device = vae.device
    means, stds = [], []
    for start in tqdm(range(0, len(dataset), batch_size), desc="encode", disable=not progress):
        x = torch.stack([dataset[i] for i in range(start, min(start + batch_size, len(dataset)))]).to(device, vae.dtype)
        for flip in (False, True) if hflip else (False,):
            dist = vae.encode(to_vae_range(x.flip(-1) if flip else x)).latent_dist
            means.append((flip, dist.mean.float().cpu()))
            stds.append((flip, dist.std.float().cpu()))
    order = lambda pairs: torch.cat([t for f, t in pairs if not f] + [t for f, t in pairs if f])
    return order(means), order(stds)


def latent_cache(config: GeneratorConfig, vae, files: list[Path], root: Path, cache_path: Path, progress: bool) -> dict:
    """The cached posteriors of ``files`` if they match this VAE/size/file list, else encode and cache them.

    Stored as safetensors with the match key in its metadata (nothing to unpickle).
    """
    key = hashlib.sha256(json.dumps([config.vae, config.image_size, config.hflip,
                                     [p.relative_to(root).as_posix() for p in files]]).encode()).hexdigest()
    if cache_path.is_file():
        with safe_open(str(cache_path), "pt") as f:
            if (f.metadata() or {}).get("key") == key:
                return {"key": key, **load_file(str(cache_path))}
    mean, std = encode_posteriors(vae, RGBAFolder(root, size=config.image_size, files=files), hflip=config.hflip, progress=progress)
    # contiguous, as a loaded cache is: a strided view trains to different last bits, and resume must be exact
    mean, std = mean.contiguous(), std.contiguous()
    data = save({"mean": mean, "std": std}, metadata={"key": key})
    atomic_write(cache_path, lambda tmp: Path(tmp).write_bytes(data))  # umask mode (save_file makes it owner-only)
    return {"key": key, "mean": mean, "std": std}


def min_snr_weights(scheduler, t: torch.Tensor, gamma: float, prediction_type: str) -> torch.Tensor:
    """Min-SNR-γ weights (Hang et al., ICCV 2023) of the per-sample MSE at timesteps ``t``: min(SNR_t, γ) / SNR_t for
    an ε target, / (SNR_t + 1) for a v target, min(SNR_t, γ) for a clean-sample target, SNR_t = ᾱ_t / (1 − ᾱ_t)
    (diffusers' ``compute_snr``): each the x₀-loss weight min(SNR_t, γ) over what that target's MSE already weighs x₀
    by. The low-noise steps, whose v-loss weighs the clean latent by SNR_t + 1, are capped at γ."""
    snr = compute_snr(scheduler, t)
    already = {"epsilon": snr, "v_prediction": snr + 1, "sample": torch.ones_like(snr)}
    if prediction_type not in already:
        raise ValueError(f"--prediction-type {prediction_type!r}: must be one of {', '.join(already)}")
    return snr.clamp(max=gamma) / already[prediction_type]


def latent_normalisation(method: str, vae, mean: torch.Tensor) -> tuple[float | list[float], float | list[float]]:
    """``(shift, scale)`` with diffusion latents ``(z − shift) · scale`` (:data:`alphavae.generation.generator_config.LATENT_NORMALISATIONS`): the VAE's
    scalars, or per channel the mean and 1/std of the training posterior means ``mean`` ``(N, C, h, w)``."""
    if method == "vae":
        return latent_factors(vae)
    dims = (0, 2, 3)
    return mean.mean(dims).tolist(), (1.0 / mean.std(dims)).tolist()


def warm_start(unet, config: GeneratorConfig, class_names: list[str], shift, scale) -> int:
    """Copy the UNet weights of the generator ``config.init`` into ``unet`` and return the training steps behind them
    (its own and those it was warm-started from). It must match this run's shape, classes, noise schedule, target and
    latent scaling (so the same VAE encoder and normalisation), else a one-line error naming ``--init``; a decoder
    fine-tune of its VAE keeps the latents, so another ``--vae`` sha256 only warns (as sampling does)."""
    source = load_generator(config.init, vae_spec=config.vae)
    info, theirs, ours = source.info, source.unet.state_dict(), unet.state_dict()
    trained = info.get("config", {})
    same = lambda a, b: torch.allclose(torch.tensor(a, dtype=torch.float64), torch.tensor(b, dtype=torch.float64),
                                       rtol=1e-4, atol=1e-6)
    problem = None
    if (info.get("class_names") or []) != class_names:
        problem = f"its classes {info.get('class_names')} are not this run's {class_names}"
    elif theirs.keys() != ours.keys() or any(theirs[k].shape != ours[k].shape for k in ours):
        widths, layers = source.unet.config.block_out_channels, source.unet.config.layers_per_block
        problem = (f"its UNet (widths {list(widths)}, {layers} layer(s) per block) is not this run's shape: add "
                   f"--block-out-channels {','.join(map(str, widths))} --layers-per-block {layers}")
    elif any(key in trained and trained[key] != getattr(config, key) for key in ("prediction_type", "num_train_timesteps")):
        problem = (f"it was trained with --prediction-type {trained.get('prediction_type')} and "
                   f"--num-train-timesteps {trained.get('num_train_timesteps')}; this run must use the same")
    elif not (same(info["shift_factor"], shift) and same(info["scaling_factor"], scale)):
        problem = ("its latent scaling differs from this run's: train it on the same --vae encoder and "
                   "--latent-normalisation")
    if problem:
        raise ValueError(f"--init {config.init}: {problem}")
    unet.load_state_dict(theirs)
    return training_steps(info)


def _warm_start_note(config: GeneratorConfig, info: dict) -> str:
    return "" if not config.init else (f" warm-started from the UNet of `{config.init}` ({info['steps_before']} steps "
                                       f"before these),")


def _objective_note(config: GeneratorConfig) -> str:
    weighting = "" if config.snr_gamma is None else f", Min-SNR-γ weighting, γ = {config.snr_gamma:g}"
    return weighting + (f", dropout {config.dropout:g}" if config.dropout else "")


def _model_card(config: GeneratorConfig, info: dict, command: str) -> str:
    return f"""# embedded-generator — a small latent diffusion model of transparent clip art

What: a class-conditional diffusers `UNet2DModel` ({info['n_parameters'] / 1e6:.2f} M parameters, fp16) trained
on the latents of the RGBA VAE `{config.vae}`; decoding its samples with that VAE gives RGBA images
({config.image_size} px). Classes: the {len(info['class_names'])} clip-art categories of the training data
(+ one "unconditional" class for classifier-free guidance, scale {config.guidance_scale}).

Data: `rgba-train` (openclipart-png, Public Domain), training split of `configs/split-rgba-train.json`
({info['n_train_images']} images, mirrored too), posterior samples of the cached posteriors.
Training: DDPM (cosine betas, {config.prediction_type}{_objective_note(config)}), {info['steps_done']} steps of batch {config.batch_size},
AdamW lr {config.lr} (warm-up {config.warmup}, cosine), EMA {config.ema_decay}, {info['precision']} on {info['device']},{_warm_start_note(config, info)}
{info['train_minutes']:.1f} min. Sampling: DPM-Solver++ ({config.num_inference_steps} steps, trailing spacing).

Paired VAE weights: `{config.vae}` with sha256 `{info.get('vae_sha256') or 'unknown (not a local folder)'}`; if that VAE is
retrained, retrain this model. Generate: `alphavae generate --model embedded-generator --n 4 --seed 0 --output /tmp/g`.

Rebuild this model (data in `$ALPHAVAE_SHARED_DATA/rgba-train`):

    {command}

This model and the comparison table together, on one GPU (the three VAEs of `benchmarks/gpu_ablation.sh`):
`OUT=/tmp/out STEPS={config.steps} MINUTES={config.max_minutes} bash scripts/generation_gpu_run.sh`.

Limits: a teaching model — {config.image_size} px clip art, tiny, trained minutes; the samples show real transparency
(soft edges, holes), not fine detail. Quality against held-out images: `results/generation.md`.
"""


def train_generator(config: GeneratorConfig, output: str | Path, resume: bool = False, progress: bool = True,
                    command: str | None = None) -> Path | None:
    """Train a generator; writes ``output/model/`` (the generator folder) and its checkpoints/cache/log beside it.

    Returns the model folder, or None when ``max_minutes`` stopped this call first (continue with ``resume=True``,
    which picks up the newest checkpoint in ``output/checkpoints``).
    """
    output = Path(output)
    with run_lock(output):
        return _train_generator(config, output, resume, progress, command)


def _train_generator(config: GeneratorConfig, output: Path, resume: bool, progress: bool, command: str | None) -> Path | None:
    device = torch_device(config.device)
    torch.manual_seed(config.seed)
    root = Path(config.data) if config.data else shared_data_dir() / "rgba-train"
    train_files, _ = split_files(root, read_split(config.split or DEFAULT_SPLIT))
    class_names = sorted({category_of(p, root) for p in train_files}) if config.class_conditional else []
    labels = torch.tensor([class_names.index(category_of(p, root)) for p in train_files]) if class_names else None
    class_counts = labels.bincount(minlength=len(class_names)).tolist() if labels is not None else []

    vae = load_vae(config.vae, device=device)
    if vae.config.in_channels != 4:
        raise ValueError(f"--vae {config.vae}: has {vae.config.in_channels} input channels; an RGBA (4-channel) VAE is needed")
    began = time.time()
    cache = latent_cache(config, vae, train_files, root, output / "latents.safetensors", progress)
    mean, std = cache["mean"].to(device), cache["std"].to(device)
    shift, scale = latent_normalisation(config.latent_normalisation, vae, mean)
    shift_t, scale_t = as_channel_tensor(shift, mean), as_channel_tensor(scale, mean)
    scaled = (mean - shift_t) * scale_t
    tqdm.write(f"latents {tuple(mean.shape)} ready in {time.time() - began:.0f} s; scaled ({config.latent_normalisation}): "
               f"mean {scaled.mean():.3f}, std {scaled.std():.3f}, per-channel std "
               f"{scaled.std((0, 2, 3)).min():.2f}…{scaled.std((0, 2, 3)).max():.2f}")
    if labels is not None:
        labels = labels.repeat(len(mean) // len(labels)).to(device)
    latent_channels, latent_size = mean.shape[1], mean.shape[-1]
    halvings = len(config.block_out_channels) - 1
    if latent_size % 2**halvings:
        raise ValueError(f"--block-out-channels {','.join(map(str, config.block_out_channels))}: {halvings + 1} levels "
                         f"halve the {latent_size}×{latent_size} latent {halvings} times; use fewer levels or a larger "
                         f"--image-size")

    unet = build_unet(latent_channels, latent_size, len(class_names) or None,
                      UNetShape(config.block_out_channels, config.layers_per_block), config.dropout).to(device)
    ckpt_root = output / "checkpoints"
    found = latest_checkpoint(ckpt_root) if resume else None
    before = warm_start(unet, config, class_names, shift, scale) if config.init and found is None else 0
    if config.compile:  # the module compiles in place: its state-dict keys, and so the saved folder, do not change
        unet.compile(dynamic=False)
    scheduler = training_scheduler(config.num_train_timesteps, config.prediction_type)
    optimizer = adamw(unet.parameters(), config.lr, weight_decay=config.weight_decay)
    schedule = lr_schedule(optimizer, "cosine", config.warmup, config.steps)
    ema = EMAModel(unet.parameters(), decay=config.ema_decay, use_ema_warmup=True, foreach=True)
    gen = torch.Generator(device=device).manual_seed(config.seed)
    step, seconds = 0, 0.0
    if found is not None:
        shared, local = load_checkpoint(found)
        for key in ("block_out_channels", "layers_per_block", "init"):
            saved, now = shared["config"].get(key), getattr(config, key)  # checkpoints before "init" lack it
            if (tuple(saved) if isinstance(saved, (list, tuple)) else saved) != now:
                raise ValueError(f"--resume: {found} was trained with --{key.replace('_', '-')} {saved}, not {now}; "
                                 f"resume with the same shape or start a new --output")
        unet.load_state_dict(shared["unet"])
        optimizer.load_state_dict(shared["optimizer"])
        schedule.load_state_dict(shared["lr_schedule"])
        ema.load_state_dict(shared["ema"])
        settle_ema(ema, unet.parameters())
        step, seconds, before = int(shared["step"]), float(shared["seconds"]), int(shared.get("steps_before", 0))
        set_rng_state(local["rng"], {"batches": gen})
    log = RunLog(output / "log.jsonl", step if found is not None else None)
    amp = autocast_for(device)
    unet.train()
    call_began, seconds_before = time.time(), seconds

    def one_step(_: int) -> dict[str, torch.Tensor]:
        idx = torch.randint(len(mean), (config.batch_size,), device=device, generator=gen)
        z = (mean[idx] + std[idx] * torch.randn(mean[idx].shape, device=device, generator=gen) - shift_t) * scale_t
        noise = torch.randn(z.shape, device=device, generator=gen)
        t = torch.randint(config.num_train_timesteps, (config.batch_size,), device=device, generator=gen)
        noisy = scheduler.add_noise(z, noise, t)
        target = scheduler.get_velocity(z, noise, t) if config.prediction_type == "v_prediction" else noise
        lab = None
        if labels is not None:
            drop = torch.rand(config.batch_size, device=device, generator=gen) < config.cond_drop_prob
            lab = torch.where(drop, len(class_names), labels[idx])
        with amp:
            pred = unet(noisy, t, class_labels=lab).sample
        if config.snr_gamma is None:
            loss = F.mse_loss(pred.float(), target)
        else:
            per_sample = F.mse_loss(pred.float(), target, reduction="none").mean((1, 2, 3))
            loss = (per_sample * min_snr_weights(scheduler, t, config.snr_gamma, config.prediction_type)).mean()
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(unet.parameters(), 1.0)
        optimizer.step()
        schedule.step()
        ema.step(unet.parameters())
        return {"loss": loss.detach()}  # read back only when logged

    def elapsed() -> float:
        return seconds_before + time.time() - call_began

    def write_log(done: int, logs: dict[str, torch.Tensor]) -> str:
        loss = float(logs["loss"])
        log.write({"step": done, "loss": loss, "lr": schedule.get_last_lr()[0], "seconds": round(elapsed(), 1)})
        return f"loss={loss:.4f}"

    def checkpoint(done: int) -> None:
        state = lambda: {"step": done, "seconds": elapsed(), "steps_before": before, "unet": unet.state_dict(),
                         "optimizer": optimizer.state_dict(), "lr_schedule": schedule.state_dict(),
                         "ema": ema.state_dict(), "config": asdict(config)}
        save_checkpoint(ckpt_root, done, state, {"rng": rng_state({"batches": gen})}, config.keep_checkpoints)

    plan = LoopPlan(config.steps, config.log_every, config.checkpoint_every, max_minutes=config.max_minutes)
    step = run_steps(plan, step, one_step, write_log, checkpoint, "train generator", show_progress=progress)
    if step < config.steps:
        tqdm.write(f"stopped after {config.max_minutes} min at step {step}; continue with --resume")
        return None
    seconds = elapsed()

    ema.copy_to(unet.parameters())
    unet.eval()
    info = {
        "vae": config.vae, "vae_sha256": weights_sha256(config.vae), "class_names": class_names,
        "class_counts": class_counts, "image_size": config.image_size,
        "shift_factor": shift, "scaling_factor": scale, "guidance_scale": config.guidance_scale,
        "num_inference_steps": config.num_inference_steps, "sampler": "DPMSolverMultistepScheduler (dpmsolver++, trailing spacing)",
        "latents": "posterior samples (mean + std·eps) of the cached posteriors, image and mirror image",
        "n_train_images": len(train_files), "steps_done": step, "steps_before": before, "train_minutes": round(seconds / 60, 2),
        "device": machine_name(device),
        "precision": "bf16" if autocast_dtype(device) is torch.bfloat16 else "fp32",
        "n_parameters": sum(p.numel() for p in unet.parameters()), "config": asdict(config),
    }
    command = command or "alphavae generator train " + " ".join(sys.argv[2:])
    return save_generator(unet, scheduler, info, output / "model", _model_card(config, info, command))
