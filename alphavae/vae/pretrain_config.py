"""The RGB VAE pretraining run's configuration, apart from the trainer so that reading it (the command line's
``--help``, a model card) imports neither torch nor diffusers."""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass
class PretrainConfig:
    """Everything that defines a pretraining run (saved with every checkpoint and in the model card)."""

    photos: str
    output: str
    steps: int = 4000
    batch_size: int = 32
    crop: int = 128
    scales: tuple[float, ...] = (1.0, 0.7, 0.5, 0.35, 0.25)
    colour_augment: bool = True
    lr: float = 8e-4
    warmup: int = 300
    lr_schedule: str = "cosine"  # a name diffusers.optimization.get_scheduler accepts
    weight_decay: float = 0.01
    kl_weight: float = 1e-6
    lpips_weight: float = 1.0
    lpips_net: str = "vgg"  # SD's VAE was trained with LPIPS-VGG; "alex" is lighter to carry and to run
    adversarial_weight: float = 0.0  # PatchGAN hinge term (times the adaptive weight); 0 leaves it out
    disc_start: int = 2000  # first step with the adversarial term and discriminator updates
    block_out_channels: tuple[int, ...] = (32, 64, 128, 128)
    layers_per_block: int = 1
    latent_channels: int = 4
    norm_num_groups: int = 8
    seed: int = 0
    log_every: int = 50
    checkpoint_every: int = 500
    keep_checkpoints: int = 2
    max_minutes: float | None = None
    device: str = "auto"
    notes: list[str] = field(default_factory=list)
