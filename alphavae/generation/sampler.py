"""Generating transparent images: a small latent diffusion model on the RGBA VAE's latents (method.md §4).

Because the RGBA VAE keeps the RGB VAE's latent space, any latent diffusion model can be taught to produce
RGBA latents; decoding them with the RGBA VAE gives colour *and* alpha. The paper fine-tunes FLUX with a
LoRA (see :mod:`alphavae.generation.lora` for that path); here, offline and small, we train a class-conditional
diffusers ``UNet2DModel`` from scratch on the latents of the project's clip-art training split.

Choices, all stored with the model:

* **Latents** are ``(z − shift_factor) · scaling_factor``: the paired RGBA VAE's own factors (``shift`` is 0 for
  the SD-style embedded VAE), or one factor per latent channel (``latent_normalisation: channel`` — each channel
  to zero mean and unit variance over the training latents), ``z`` sampled from the posterior at every training step (mean + std · ε, cached
  once) — the usual latent-diffusion recipe; decoding uses the inverse map.
* **Conditioning**: the clip-art category (top-level folder of the data set) through ``num_class_embeds``,
  plus one extra "unconditional" class used for classifier-free guidance (labels are dropped to it with
  probability ``cond_drop_prob`` during training).
* **Schedules**: DDPM (cosine betas, v-prediction) for training; DPM-Solver++ (multistep, 25 steps, trailing
  spacing: the first step is the last training timestep) for
  sampling, deterministic for a seed.

A generator is a folder: ``config.json`` + ``diffusion_pytorch_model.safetensors`` (the UNet, fp16),
``scheduler_config.json`` (the training DDPM schedule), ``generator.json`` (the paired VAE SPEC, class
names, image size, latent factors, sampling defaults) and ``MODEL_CARD.md``. SPECs: ``embedded-generator``
(``data/models/embedded-generator/``), a local folder, or a hub id (``id:subfolder``), as for VAEs.
"""

from __future__ import annotations

import copy
import hashlib
import json
import math
import os
import warnings
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import torch
from diffusers import DDPMScheduler, DPMSolverMultistepScheduler, UNet2DModel

from alphavae.blending import from_vae_range
from alphavae.generation.generator_config import UNetShape
from alphavae.imageio import umask_mode
from alphavae.vae.reconstruct import downsampling_factor
from alphavae.vae.loading import (
    first_line,
    hub_unreachable,
    load_vae,
    resolve_spec,
    torch_device,
    weights_sha256,
)

#: The file beside the UNet that says how the generator pairs with its VAE and how to sample it.
INFO_FILE = "generator.json"
#: The keys :data:`INFO_FILE` must have (what loading, sampling and decoding read), with their JSON types.
INFO_KEYS: dict[str, type | tuple[type, ...]] = {"vae": str, "image_size": int, "shift_factor": (int, float, list),
                                                 "scaling_factor": (int, float, list)}
#: Most samples one call makes (``--n``): they stream to disk, but a typo of a few zeros should not run for days.
MAX_SAMPLES = 100_000
#: Largest seed: torch seeds are 64-bit, and the class draw uses ``seed + 1``.
MAX_SEED = 2**63 - 1


class GeneratorLoadError(ValueError):
    """A generator SPEC cannot be loaded; the one-line message names it and says what to do."""


def build_unet(latent_channels: int, latent_size: int, num_classes: int | None, shape: UNetShape = UNetShape(),
               dropout: float = 0.0) -> UNet2DModel:
    """A fresh ``UNet2DModel`` over ``(latent_channels, latent_size, latent_size)`` latents.

    ``num_classes`` real classes get one more embedding, index ``num_classes``, meaning "no class"
    (classifier-free guidance). ``None`` makes an unconditional model. Self-attention is used on every level
    but the first (the two coarsest). ``dropout`` acts in the residual blocks in training mode only.
    """
    levels = len(shape.block_out_channels)
    down = ("DownBlock2D",) + ("AttnDownBlock2D",) * (levels - 1)
    up = ("AttnUpBlock2D",) * (levels - 1) + ("UpBlock2D",)
    return UNet2DModel(
        sample_size=latent_size,
        in_channels=latent_channels,
        out_channels=latent_channels,
        block_out_channels=tuple(shape.block_out_channels),
        layers_per_block=shape.layers_per_block,
        down_block_types=down,
        up_block_types=up,
        attention_head_dim=shape.attention_head_dim,
        norm_num_groups=shape.norm_num_groups,
        num_class_embeds=None if num_classes is None else num_classes + 1,
        dropout=dropout,
    )


def training_scheduler(num_train_timesteps: int = 1000, prediction_type: str = "v_prediction") -> DDPMScheduler:
    """The DDPM noise schedule the denoiser is trained with (cosine betas suit small latents)."""
    return DDPMScheduler(num_train_timesteps=num_train_timesteps, beta_schedule="squaredcos_cap_v2",
                         prediction_type=prediction_type, clip_sample=False)


@dataclass
class LatentGenerator:
    """A loaded generator: the denoiser, its sampling scheduler, the paired RGBA VAE and ``generator.json``."""

    unet: UNet2DModel
    scheduler: DPMSolverMultistepScheduler
    vae: object
    info: dict

    @property
    def class_names(self) -> list[str]:
        """The categories it was trained on (empty for an unconditional model)."""
        return list(self.info.get("class_names") or [])

    @property
    def class_counts(self) -> list[int]:
        """Training images per class, aligned with :attr:`class_names` (empty for a model that did not record them)."""
        return list(self.info.get("class_counts") or [])

    @property
    def device(self) -> torch.device:
        return self.unet.device


def save_generator(unet: UNet2DModel, scheduler: DDPMScheduler, info: dict, folder: str | os.PathLike,
                   model_card: str | None = None) -> Path:
    """Write a generator folder (fp16 safetensors UNet, scheduler config, ``generator.json``, model card)."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    copy.deepcopy(unet).half().save_pretrained(folder, safe_serialization=True)
    scheduler.save_pretrained(folder)
    umask_mode(folder)
    (folder / INFO_FILE).write_text(json.dumps(info, indent=1) + "\n")
    if model_card is not None:  # ends with the weights' sha256, which exists only now
        weights = folder / "diffusion_pytorch_model.safetensors"
        digest = hashlib.sha256(weights.read_bytes()).hexdigest()
        (folder / "MODEL_CARD.md").write_text(
            model_card + f"\nWeights: fp16 safetensors ({weights.stat().st_size / 1e6:.1f} MB), sha256 `{digest}`.\n")
    return folder


def training_steps(info: dict) -> int:
    """Optimiser steps behind a generator: this run's (``steps_done``) plus those of the folders it was warm-started
    from (``steps_before``), so a model trained in pieces reports its whole training."""
    return int(info.get("steps_done", 0)) + int(info.get("steps_before", 0))


def _has_type(value, kind: type | tuple[type, ...]) -> bool:
    """``value`` is of ``kind`` (a bool is no number); a list (where ``kind`` allows one) is non-empty and all numbers."""
    if isinstance(value, bool) or not isinstance(value, kind):
        return False
    if isinstance(value, list):
        return bool(value) and all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in value)
    return True


def _parse_info(path: Path) -> dict:
    """Read :data:`INFO_FILE`; anything but a JSON object with the :data:`INFO_KEYS` is an error naming the file and key."""
    try:
        info = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise GeneratorLoadError(f"{path}: not readable as JSON ({exc})") from exc
    if not isinstance(info, dict):
        raise GeneratorLoadError(f"{path}: must be a JSON object with the keys {', '.join(INFO_KEYS)}, not a JSON {type(info).__name__}")
    for key, kind in INFO_KEYS.items():
        if key not in info:
            raise GeneratorLoadError(f"{path}: missing key \"{key}\" (a generator.json needs {', '.join(INFO_KEYS)})")
        if not _has_type(info[key], kind):
            what = getattr(kind, "__name__", "number, or a list of one number per latent channel")
            raise GeneratorLoadError(f"{path}: key \"{key}\" is {info[key]!r}, not a {what}")
    return info


def _read_info(where: str, subfolder: str | None, spec: str, local_files_only: bool = False) -> dict:
    if Path(where).is_dir():
        path = Path(where) / (subfolder or "") / INFO_FILE
        if not path.is_file():
            raise GeneratorLoadError(f"{spec}: {path} is missing; this folder is not a generator")
        return _parse_info(path)
    from huggingface_hub import hf_hub_download

    return _parse_info(Path(hf_hub_download(where, INFO_FILE, subfolder=subfolder, local_files_only=local_files_only)))


def _warn_if_unpaired(info: dict, vae_spec: str) -> None:
    """Warn when the VAE's weights are not the ones the generator was trained on (``vae_sha256``).

    A generator only understands the latent space of its own VAE: a retrained VAE under the same SPEC decodes
    its samples into noise or wrong colours, with no error anywhere else.
    """
    expected, actual = info.get("vae_sha256"), weights_sha256(vae_spec)
    if expected and actual and actual != expected:
        warnings.warn(f"{vae_spec}: its weights (sha256 {actual[:12]}…) are not the ones this generator was trained on "
                      f"({expected[:12]}…); retrain the generator on this VAE's latents", stacklevel=3)


def sampling_scheduler(ddpm_config) -> DPMSolverMultistepScheduler:
    """DPM-Solver++ over the training schedule, its steps spaced ``trailing``: the first step is the last training
    timestep (T − 1, where the cosine schedule's signal is gone), so starting from pure noise is right. diffusers'
    default ``leading`` spacing starts at T − T/n (t = 960 of 1000 at 25 steps, 900 at 100) from pure noise as if
    it were that step's noisy sample; the unremoved noise decodes as confetti (Lin et al., WACV 2024, "Common diffusion
    noise schedules and sample steps are flawed"; measured on the generator shipped in stop 16: 52 % soft-alpha
    pixels leading, 33 % trailing, 16 samples)."""
    return DPMSolverMultistepScheduler.from_config(ddpm_config, algorithm_type="dpmsolver++", timestep_spacing="trailing")


def load_generator(spec: str = "embedded-generator", device: str | torch.device | None = None,
                   vae_spec: str | None = None) -> LatentGenerator:
    """Load a generator SPEC (``embedded-generator``, a folder, or ``hub-id[:subfolder]``) with its RGBA VAE.

    The VAE is the one named in ``generator.json`` unless ``vae_spec`` overrides it. Weights are loaded in
    float32 (fp16 on disk); ``device=None`` keeps everything on the CPU, ``"auto"`` picks CUDA if present.
    """
    where, subfolder = resolve_spec(spec)
    unreachable = None if Path(where).is_dir() else hub_unreachable()
    local_only = unreachable is not None
    try:
        info = _read_info(where, subfolder, spec, local_only)
        unet = UNet2DModel.from_pretrained(where, subfolder=subfolder, torch_dtype=torch.float32, use_safetensors=True,
                                           local_files_only=local_only)
        ddpm_config = DDPMScheduler.load_config(where, subfolder=subfolder, local_files_only=local_only)
    except GeneratorLoadError:
        raise
    except Exception as exc:  # hub/offline/corrupt-folder errors come in many types
        if unreachable is not None:
            raise GeneratorLoadError(f"{spec}: is not in the local Hugging Face cache and the hub is unreachable "
                                     f"({unreachable}); pass a local generator folder") from exc
        raise GeneratorLoadError(f"{spec}: cannot load the generator ({first_line(exc)}); pass a local generator folder") from exc
    for key in ("shift_factor", "scaling_factor"):
        if isinstance(info[key], list) and len(info[key]) != unet.config.in_channels:
            raise GeneratorLoadError(f"{spec}: {INFO_FILE} key \"{key}\" has {len(info[key])} values; the UNet has "
                                     f"{unet.config.in_channels} latent channels")
    counts, n_classes = info.get("class_counts"), len(info.get("class_names") or [])
    if counts is not None and not _valid_counts(counts, n_classes):
        raise GeneratorLoadError(f"{spec}: {INFO_FILE} key \"class_counts\" must be {n_classes} non-negative integers, "
                                 f"not all 0, one per class name; it is {counts!r}")
    vae = load_vae(vae_spec or info["vae"])
    _warn_if_unpaired(info, vae_spec or info["vae"])
    if vae.config.out_channels != 4:
        raise GeneratorLoadError(f"{vae_spec or info['vae']}: the paired VAE has {vae.config.out_channels} output channels, not 4 (RGBA)")
    unet.eval().requires_grad_(False)
    scheduler = sampling_scheduler(ddpm_config)
    generator = LatentGenerator(unet=unet, scheduler=scheduler, vae=vae, info=info)
    if device is not None:
        target = torch_device(device)
        unet.to(target)
        vae.to(target)
    return generator


def unet_shape_of(spec: str) -> UNetShape:
    """The shape of generator SPEC's UNet, read from its ``config.json`` alone (no weights): what a warm start
    (``--init``) keeps when no shape is given. A one-line :class:`GeneratorLoadError` where it cannot be read."""
    try:
        where, subfolder = resolve_spec(spec)
        unreachable = None if Path(where).is_dir() else hub_unreachable()
        config = UNet2DModel.load_config(where, subfolder=subfolder, local_files_only=unreachable is not None)
    except Exception as exc:  # hub/offline/missing-file errors come in many types
        raise GeneratorLoadError(f"{spec}: cannot read its UNet config ({first_line(exc)})") from exc
    return UNetShape(tuple(config["block_out_channels"]), config["layers_per_block"])


def _valid_counts(counts: object, n_classes: int) -> bool:
    """Whether ``counts`` can weight the class draw: one non-negative integer per class, not all 0 (an unconditional
    model records none)."""
    if not (isinstance(counts, list) and len(counts) == n_classes
            and all(isinstance(c, int) and not isinstance(c, bool) and c >= 0 for c in counts)):
        return False
    return n_classes == 0 or sum(counts) > 0


def class_labels(generator: LatentGenerator, n: int, classes: list[str] | str | None, seed: int) -> torch.Tensor | None:
    """Class indices for ``n`` samples: one name for all, a list cycled, or ``None`` → drawn with ``seed``.

    ``None`` draws each class with its share of the training images (``class_counts`` in ``generator.json``), so
    that samples are compared with held-out data of the same mix (the generator shipped at stop 25, 512 samples:
    17.1 % soft pixels against 19.6 % for uniform draws, FD-VGG16 unchanged; benchmarks/NOTES.md, stop 25); a
    generator that did not record its counts draws uniformly.
    """
    names = generator.class_names
    if not names:
        if classes:
            raise ValueError(f"--class {classes}: this generator is unconditional")
        return None
    if classes is None:
        rng = torch.Generator().manual_seed(seed + 1)
        counts = generator.class_counts
        if not counts:
            return torch.randint(len(names), (n,), generator=rng)
        return torch.multinomial(torch.tensor(counts, dtype=torch.float64), n, replacement=True, generator=rng)
    wanted = [classes] if isinstance(classes, str) else list(classes)
    unknown = [c for c in wanted if c not in names]
    if unknown or not wanted:
        raise ValueError(f"--class {unknown or wanted}: unknown class; choose from {', '.join(names)}")
    return torch.tensor([names.index(wanted[i % len(wanted)]) for i in range(n)])


@torch.no_grad()
def sample_latents(unet: UNet2DModel, scheduler, noise: torch.Tensor, labels: torch.Tensor | None, null_class: int | None,
                   guidance_scale: float = 1.0, num_inference_steps: int = 25) -> torch.Tensor:
    """Denoise ``noise`` into diffusion latents with ``scheduler``; classifier-free guidance when ``guidance_scale≠1``.

    Guidance: ε̂ = ε(x, ∅) + w · (ε(x, c) − ε(x, ∅)) (applied to whatever the model predicts, here v).
    """
    scheduler.set_timesteps(num_inference_steps, device=noise.device)
    x = noise * scheduler.init_noise_sigma
    guided = labels is not None and null_class is not None and guidance_scale != 1.0
    for t in scheduler.timesteps:
        model_in = scheduler.scale_model_input(x, t)
        if guided:
            both = torch.cat([model_in, model_in])
            lab = torch.cat([labels, torch.full_like(labels, null_class)])
            cond, uncond = unet(both, t, class_labels=lab).sample.chunk(2)
            pred = uncond + guidance_scale * (cond - uncond)
        else:
            pred = unet(model_in, t, class_labels=labels).sample
        x = scheduler.step(pred, t, x).prev_sample
    return x


def as_channel_tensor(factor: float | list[float], like: torch.Tensor) -> torch.Tensor:
    """A shift or scale (a number, or one per channel) as a tensor broadcasting over ``like``'s ``(N, C, h, w)``."""
    return torch.as_tensor(factor, dtype=like.dtype, device=like.device).reshape(1, -1, 1, 1)


@torch.no_grad()
def decode_latents(vae, latents: torch.Tensor, shift_factor: float | list[float],
                   scaling_factor: float | list[float]) -> torch.Tensor:
    """Diffusion latents → RGBA images ``(n, 4, H, W)`` in [0, 1] through the RGBA VAE (inverse of the scaling;
    each factor a number, or one per latent channel)."""
    z = latents / as_channel_tensor(scaling_factor, latents) + as_channel_tensor(shift_factor, latents)
    return from_vae_range(vae.decode(z.to(vae.dtype)).sample.float())


def check_sampling_options(n: int, seed: int, guidance_scale: float | None = None,
                           num_inference_steps: int | None = None) -> None:
    """The checks that need no model: ``1 ≤ n ≤`` :data:`MAX_SAMPLES`, ``0 ≤ seed ≤`` :data:`MAX_SEED`, a finite
    guidance scale, at least one step. A ``ValueError`` names the ``alphavae generate`` option at fault."""
    if not 1 <= n <= MAX_SAMPLES:
        raise ValueError(f"--n {n}: must be in 1..{MAX_SAMPLES}")
    if not 0 <= seed <= MAX_SEED:
        raise ValueError(f"--seed {seed}: must be in 0..{MAX_SEED} (2**63 - 1)")
    if guidance_scale is not None and not math.isfinite(guidance_scale):
        raise ValueError(f"--guidance {guidance_scale}: must be a finite number")
    if num_inference_steps is not None and num_inference_steps < 1:
        raise ValueError(f"--steps {num_inference_steps}: must be at least 1")


def iter_samples(generator: LatentGenerator, n: int, seed: int = 0, size: int | None = None,
                 classes: list[str] | str | None = None, guidance_scale: float | None = None,
                 num_inference_steps: int | None = None, batch_size: int = 16) -> Iterator[torch.Tensor]:
    """Sample ``n`` RGBA images, yielding each ``(4, H, W)`` in [0, 1] (on the CPU) as soon as its batch is decoded.

    Memory stays at one batch whatever ``n`` is (the noise is drawn batch by batch from one seeded stream), so a
    caller that writes each image as it comes loses nothing already made when killed. The options are checked
    before this returns (not at the first ``next``): :func:`check_sampling_options`, then ``size`` (the pixel
    side, default the training size) must be a multiple of the VAE factor times the UNet's downsampling, and
    the steps at most the training schedule's. Same seed, same model, same device → the same images.
    """
    info = generator.info
    check_sampling_options(n, seed, guidance_scale, num_inference_steps)
    vae_factor, unet_factor = downsampling_factor(generator.vae), downsampling_factor(generator.unet)
    size = int(info["image_size"] if size is None else size)
    if size <= 0 or size % (vae_factor * unet_factor):
        raise ValueError(f"--size {size}: must be a positive multiple of {vae_factor * unet_factor}")
    steps = int(info.get("num_inference_steps", 25) if num_inference_steps is None else num_inference_steps)
    max_steps = generator.scheduler.config.num_train_timesteps
    if not 1 <= steps <= max_steps:
        raise ValueError(f"--steps {steps}: must be in 1..{max_steps} (the training schedule's length)")
    labels = class_labels(generator, n, classes, seed)
    null_class = len(generator.class_names) if generator.class_names else None
    w = float(info.get("guidance_scale", 1.0) if guidance_scale is None else guidance_scale)
    latent_shape = (generator.unet.config.in_channels, size // vae_factor, size // vae_factor)
    return _sample_batches(generator, n, torch.Generator().manual_seed(seed), latent_shape, labels, null_class, w, steps, batch_size)


@torch.no_grad()
def _sample_batches(generator: LatentGenerator, n: int, noise_rng: torch.Generator, latent_shape: tuple[int, int, int],
                    labels: torch.Tensor | None, null_class: int | None, guidance_scale: float, steps: int,
                    batch_size: int) -> Iterator[torch.Tensor]:
    """The generator behind :func:`iter_samples`, apart so that its checks run when it is called, not at ``next``."""
    device, info = generator.device, generator.info
    for start in range(0, n, batch_size):
        count = min(batch_size, n - start)
        noise = torch.randn((count, *latent_shape), generator=noise_rng)
        lab = None if labels is None else labels[start:start + count].to(device)
        z = sample_latents(generator.unet, generator.scheduler, noise.to(device), lab, null_class, guidance_scale, steps)
        yield from decode_latents(generator.vae, z, info["shift_factor"], info["scaling_factor"]).cpu()


def generate_with(generator: LatentGenerator, n: int, seed: int = 0, size: int | None = None,
                  classes: list[str] | str | None = None, guidance_scale: float | None = None,
                  num_inference_steps: int | None = None, batch_size: int = 16) -> torch.Tensor:
    """Sample ``n`` RGBA images ``(n, 4, H, W)`` in [0, 1] (on the CPU) from a loaded generator, all at once;
    see :func:`iter_samples` (which streams them) for the options and their checks."""
    return torch.stack(list(iter_samples(generator, n, seed, size, classes, guidance_scale, num_inference_steps, batch_size)))


def generate(model_spec: str = "embedded-generator", n: int = 4, seed: int = 0, size: int | None = None,
             classes: list[str] | str | None = None, device: str | torch.device | None = "auto",
             guidance_scale: float | None = None, num_inference_steps: int | None = None) -> torch.Tensor:
    """Load ``model_spec`` and sample ``n`` transparent images: a float tensor ``(n, 4, H, W)`` in [0, 1].

    >>> images = generate("embedded-generator", n=4, seed=0, device="cpu")   # doctest: +SKIP
    """
    generator = load_generator(model_spec, device=device)
    return generate_with(generator, n, seed, size, classes, guidance_scale, num_inference_steps)


def paste(scene: torch.Tensor, rgba: torch.Tensor, top: int, left: int) -> torch.Tensor:
    """Composite an RGBA asset ``(4, h, w)`` over an RGB scene ``(3, H, W)`` at ``(top, left)`` (clipped at the
    edges): A = c·α + scene·(1 − α) where the asset lies, the scene elsewhere. Returns a new tensor."""
    out = scene.clone()
    h, w = rgba.shape[-2:]
    t0, l0 = max(top, 0), max(left, 0)
    t1, l1 = min(top + h, scene.shape[-2]), min(left + w, scene.shape[-1])
    if t1 <= t0 or l1 <= l0:
        return out
    patch = rgba[:, t0 - top : t1 - top, l0 - left : l1 - left]
    alpha = patch[3:4]
    out[:, t0:t1, l0:l1] = patch[:3] * alpha + out[:, t0:t1, l0:l1] * (1 - alpha)
    return out
