"""The trainer's configuration: a JSON file read into a validated dataclass.

One JSON file describes one run (``configs/*.json``). Every key is checked: an unknown key, a wrong type or
a value out of range is a ``ConfigError`` naming the key and the file, so a typo never silently falls back to
a default. The loss weights are a nested ``"loss"`` object with the fields of
:class:`alphavae.losses.objective.LossWeights` (paper defaults when left out), checked here too, so every error
in a config file surfaces when it is read, not at step 0.
"""

from __future__ import annotations

import dataclasses
import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from diffusers.optimization import SchedulerType

from alphavae.losses import LossWeights
from alphavae.training.optim import PAPER_BETAS

#: Learning-rate schedules a config can name (diffusers.optimization.get_scheduler's names).
LR_SCHEDULES = tuple(s.value for s in SchedulerType)
#: The smallest image side the PatchGAN's three strided layers can take (the side must also be a multiple of 8,
#: the VAE's downsampling).
MIN_IMAGE_SIZE = 32
#: The values of the ``trainable`` key: every weight, or the decoder alone (encoder frozen: method.md §3.9).
TRAINABLE_CHOICES = ("all", "decoder")
#: The values of the ``compile`` key.
COMPILE_CHOICES = ("auto", "on", "off")
#: Seeds are in [0, SEED_LIMIT) (what ``accelerate.utils.set_seed`` and numpy's seeding accept).
SEED_LIMIT = 2**32


class ConfigError(ValueError):
    """A training configuration that cannot be used; the message names the file and the key."""


@dataclass
class TrainConfig:
    """One training run. Defaults are the paper's (method.md §3) except where the comment says why not."""

    vae: str = "embedded"  # SPEC of the pretrained RGB VAE to extend (alphavae.vae.loading.load_vae), or of an RGBA VAE to fine-tune
    trainable: str = "all"  # all | decoder: the decoder alone, encoder frozen, so the latent space stays (method.md §3.9)
    data: str = "rgba-train"  # a folder of RGBA images, "sample" (shipped), or a folder name under the shared data
    split: str | None = "split-rgba-train.json"  # held-out split file (relative: to the config's folder); None = no held-out set
    extra_data: str | None = None  # a second folder of RGBA images, all trained on (rgba-extra: scripts/rebuild_rgba_extra.py)
    image_size: int = 256  # long side, premultiplied resize, centred on a transparent square
    max_images: int | None = None  # use only the first N training images of data (toy runs; extra_data is not capped)
    steps: int = 30000
    batch_size: int = 8  # global batch: split evenly over the processes
    lr: float = 1e-5
    disc_lr: float | None = None  # discriminator learning rate (None: same as lr)
    betas: tuple[float, float] = PAPER_BETAS
    weight_decay: float = 0.01  # AdamW's default (the paper does not give one)
    warmup_steps: int = 100
    lr_schedule: str = "cosine"  # any name diffusers.optimization.get_scheduler accepts
    loss: dict[str, Any] = field(default_factory=dict)  # fields of LossWeights; left out = paper default
    ema_decay: float | None = None  # None: no EMA; else the EMA weights are the ones saved at the end
    gradient_checkpointing: bool = False
    # torch.compile + channels_last of the networks, and the whole step as CUDA graphs (alphavae.training.graphs):
    # off | on | auto (on one GPU process; graphs need bf16 or fp32). Measured on an H200 (benchmarks/NOTES.md,
    # "Stop 18"), embedded VAE at batch 8: eager 113 images/s, graphs 134, both 280 after about 2 minutes of
    # compilation; SD size at batch 16: 36.4 eager, 56.7 both.
    compile: str = "auto"
    cuda_graphs: str = "auto"
    mixed_precision: str = "auto"  # auto (bf16 on a GPU that has it natively, else none) | bf16 | fp16 | no
    device: str = "auto"  # auto | cpu
    seed: int = 0
    num_workers: int = 2
    log_every: int = 10
    sample_every: int = 500  # TensorBoard reconstructions on checkerboards
    n_samples: int = 4
    checkpoint_every: int = 500
    keep_checkpoints: int = 2
    lpips_net: str = "vgg"  # LPIPS backbone of the perceptual term: vgg (as taming's VAE loss, the official code) or alex
    description: str = ""  # free text: what this run is, and why it differs from the paper

    def validate(self, source: str = "<config>") -> TrainConfig:
        """Check ranges and choices; returns ``self``. Raises :class:`ConfigError` naming the key."""
        positive = ("image_size", "steps", "batch_size", "log_every", "sample_every", "checkpoint_every", "keep_checkpoints")
        for key in positive:
            if getattr(self, key) <= 0:
                raise ConfigError(f"{source}: '{key}' must be > 0, got {getattr(self, key)}")
        for key in ("warmup_steps", "num_workers", "n_samples"):
            if getattr(self, key) < 0:
                raise ConfigError(f"{source}: '{key}' must be >= 0, got {getattr(self, key)}")
        for key in ("data", "extra_data"):  # "" would be the working directory: every image under it
            if getattr(self, key) is not None and not getattr(self, key).strip():
                raise ConfigError(f"{source}: '{key}' must name a folder, got an empty string")
        if self.max_images is not None and self.max_images < self.batch_size:
            raise ConfigError(f"{source}: 'max_images' ({self.max_images}) must be at least 'batch_size' ({self.batch_size})")
        if self.lr <= 0 or (self.disc_lr is not None and self.disc_lr <= 0):
            raise ConfigError(f"{source}: 'lr' and 'disc_lr' must be > 0")
        if len(self.betas) != 2 or not all(0 <= b < 1 for b in self.betas):
            raise ConfigError(f"{source}: 'betas' must be two numbers in [0, 1), got {self.betas}")
        if self.ema_decay is not None and not 0 < self.ema_decay < 1:
            raise ConfigError(f"{source}: 'ema_decay' must be in (0, 1) or null, got {self.ema_decay}")
        if self.mixed_precision not in ("auto", "bf16", "fp16", "no"):
            raise ConfigError(f"{source}: 'mixed_precision' must be auto, bf16, fp16 or no, got {self.mixed_precision!r}")
        if self.compile not in COMPILE_CHOICES:
            raise ConfigError(f"{source}: 'compile' must be one of {', '.join(COMPILE_CHOICES)}, got {self.compile!r}")
        if self.cuda_graphs not in COMPILE_CHOICES:
            raise ConfigError(f"{source}: 'cuda_graphs' must be one of {', '.join(COMPILE_CHOICES)}, got {self.cuda_graphs!r}")
        if self.device not in ("auto", "cpu"):
            raise ConfigError(f"{source}: 'device' must be auto or cpu, got {self.device!r}")
        if self.trainable not in TRAINABLE_CHOICES:
            raise ConfigError(f"{source}: 'trainable' must be one of {', '.join(TRAINABLE_CHOICES)}, got {self.trainable!r}")
        if self.lpips_net not in ("alex", "vgg"):
            raise ConfigError(f"{source}: 'lpips_net' must be alex or vgg, got {self.lpips_net!r}")
        if self.lr_schedule not in LR_SCHEDULES:
            raise ConfigError(f"{source}: 'lr_schedule' must be one of {', '.join(LR_SCHEDULES)}, got {self.lr_schedule!r}")
        if self.image_size < MIN_IMAGE_SIZE or self.image_size % 8:
            raise ConfigError(f"{source}: 'image_size' must be a multiple of 8 and at least {MIN_IMAGE_SIZE}, got {self.image_size}")
        if not 0 <= self.seed < SEED_LIMIT:
            raise ConfigError(f"{source}: 'seed' must be in [0, 2**32), got {self.seed}")
        self.loss_weights(source)
        return self

    def loss_weights(self, source: str = "<config>") -> LossWeights:
        """The ``loss`` object as :class:`LossWeights`; an unknown key or a bad value names ``loss.<key>``."""
        try:
            return LossWeights.from_dict(self.loss)
        except (TypeError, ValueError) as exc:
            raise ConfigError(f"{source}: {exc}") from exc

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-able dict (what ``save`` writes and ``load_config`` reads back)."""
        d = dataclasses.asdict(self)
        d["betas"] = list(self.betas)
        return d

    def save(self, path: str | os.PathLike) -> Path:
        """Write the config as JSON (the trainer stores the one it ran with beside its outputs)."""
        path = Path(path)
        path.write_text(json.dumps(self.to_dict(), indent=2) + "\n")
        return path



def _check_type(key: str, value: Any, annotation: str, source: str) -> Any:
    """Coerce/validate one value against its (string) annotation; error names the key."""
    optional = "None" in annotation
    if value is None:
        if optional:
            return None
        raise ConfigError(f"{source}: '{key}' must not be null")
    base = annotation.replace(" | None", "").strip()
    ok = {
        "str": isinstance(value, str),
        "int": isinstance(value, int) and not isinstance(value, bool),
        "float": isinstance(value, (int, float)) and not isinstance(value, bool),
        "bool": isinstance(value, bool),
        "tuple[float, float]": isinstance(value, list) and all(isinstance(v, (int, float)) for v in value),
        "dict[str, Any]": isinstance(value, dict),
    }[base]
    if not ok:
        raise ConfigError(f"{source}: '{key}' must be {base}, got {value!r}")
    if base == "float":
        return float(value)
    if base.startswith("tuple"):
        return tuple(float(v) for v in value)
    return value


def config_from_dict(raw: dict[str, Any], source: str = "<config>") -> TrainConfig:
    """Build and validate a :class:`TrainConfig` from a dict; unknown keys are an error naming them."""
    if not isinstance(raw, dict):
        raise ConfigError(f"{source}: a config must be a JSON object")
    fields = {f.name: f for f in dataclasses.fields(TrainConfig)}
    unknown = sorted(set(raw) - set(fields))
    if unknown:
        raise ConfigError(f"{source}: unknown key '{unknown[0]}' (known keys: {', '.join(fields)})")
    values = {k: _check_type(k, v, str(fields[k].type), source) for k, v in raw.items()}
    return TrainConfig(**values).validate(source)


def read_json(path: Path, what: str) -> Any:
    """The JSON in ``path``; a missing file or bad JSON is a :class:`ConfigError` naming the file."""
    try:
        return json.loads(path.read_text())
    except FileNotFoundError as exc:
        raise ConfigError(f"{path}: {what} not found") from exc
    except json.JSONDecodeError as exc:
        raise ConfigError(f"{path}: not valid JSON ({exc})") from exc


def load_config(path: str | os.PathLike, **overrides: Any) -> TrainConfig:
    """Read a JSON config file; relative ``split`` paths are resolved against the file's folder.

    ``overrides`` replace keys after reading (they are validated the same way).
    """
    path = Path(path)
    raw = read_json(path, "config file")
    if isinstance(raw, dict):
        raw = {**raw, **overrides}
    config = config_from_dict(raw, str(path))
    if config.split is not None and not Path(config.split).is_absolute():
        config.split = str((path.parent / config.split).resolve())
    return config
