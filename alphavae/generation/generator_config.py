"""The generator's shape and training run configuration, apart from the trainer so that reading them (the
command line's ``--help``) imports neither torch nor diffusers."""

from __future__ import annotations

from dataclasses import dataclass, field

#: How latents are scaled for the diffusion model: ``vae`` — the VAE's own scalar ``(z − shift_factor) ·
#: scaling_factor``; ``channel`` — per latent channel, ``(z − mean_c) / std_c`` over the training latents, so every
#: channel has unit variance against the unit noise (a 16-channel VAE's channels differ in spread by ~3.5×).
LATENT_NORMALISATIONS = ("vae", "channel")


@dataclass(frozen=True)
class UNetShape:
    """Width and depth of the denoiser. The default (≈3.9 M parameters, 7.8 MB in fp16) is the small recipe; the
    shipped ``embedded-generator`` is wider (96, 192, 256: ≈ 14.4 M parameters, 28.8 MB), see its card."""

    block_out_channels: tuple[int, ...] = (64, 96, 128)
    layers_per_block: int = 1
    attention_head_dim: int = 32
    norm_num_groups: int = 16



def widths_problem(widths: tuple[int, ...]) -> str | None:
    """What is wrong with a UNet's widths per level, or ``None``. ``build_unet`` makes two levels at least, every
    width split into :attr:`UNetShape.norm_num_groups` groups, and every level but the first with attention, whose
    heads have :attr:`UNetShape.attention_head_dim` channels."""
    groups, head = UNetShape.norm_num_groups, UNetShape.attention_head_dim
    if len(widths) < 2 or any(w < 1 for w in widths) or widths[0] % groups or any(w % head for w in widths[1:]):
        return (f"expected two or more widths: the first a positive multiple of {groups}, the others (with attention) "
                f"of {head}")
    return None


@dataclass
class GeneratorConfig:
    """Everything that defines a generator training run (saved in ``generator.json`` and checkpoints)."""

    vae: str = "embedded-rgba"
    # a generator folder whose UNet weights start this run (a warm start: new optimiser, warm-up and cosine schedule;
    # EMA from those weights), to train a shipped model further in pieces that each fit one GPU call
    init: str | None = None
    data: str | None = None  # folder of RGBA images; default: shared rgba-train
    split: str | None = None  # split file; default: configs/split-rgba-train.json
    image_size: int = 256
    class_conditional: bool = True
    cond_drop_prob: float = 0.1
    prediction_type: str = "v_prediction"
    num_train_timesteps: int = 1000
    # Min-SNR-γ loss weighting (Hang et al., ICCV 2023): each sample's MSE times min(SNR_t, γ)/(SNR_t + 1) for
    # v-prediction (÷ SNR_t for ε), so the nearly clean timesteps stop dominating the gradient; None = plain MSE
    snr_gamma: float | None = None
    block_out_channels: tuple[int, ...] = UNetShape.block_out_channels
    layers_per_block: int = UNetShape.layers_per_block
    # dropout in the UNet's residual blocks while training (diffusers `UNet2DModel(dropout=…)`; Nichol & Dhariwal,
    # ICML 2021, regularise small data sets with 0.1–0.3): on 1,200 images long training moves the samples toward the
    # training images (benchmarks/NOTES.md, stop 33); 0 = none. Sampling never drops.
    dropout: float = 0.0
    steps: int = 3000
    batch_size: int = 128
    lr: float = 4e-4
    warmup: int = 200
    weight_decay: float = 0.01
    ema_decay: float = 0.999
    hflip: bool = True
    latent_normalisation: str = "vae"  # one of LATENT_NORMALISATIONS
    seed: int = 0
    log_every: int = 50
    checkpoint_every: int = 1000
    keep_checkpoints: int = 2
    max_minutes: float | None = None  # stop this call (with a checkpoint) after this long; --resume continues
    guidance_scale: float = 2.0
    num_inference_steps: int = 25
    device: str = "auto"
    # torch.compile of the UNet: the eager step of the 3.9 M-parameter default ran 16.7 steps/s at batch 128 on an H200
    # (benchmarks/NOTES.md "Stop 17"), likely launch-bound. Compiled, it trained the generator shipped then on an H100
    # (stop 23: three runs sharing the card, about 20 steps/s each), but it has not been timed alone against eager:
    # off by default.
    compile: bool = False
    notes: list[str] = field(default_factory=list)

    def __post_init__(self):
        self.block_out_channels = tuple(self.block_out_channels)
        problem = widths_problem(self.block_out_channels)
        if problem:
            raise ValueError(f"--block-out-channels {','.join(map(str, self.block_out_channels))}: {problem}")
        if not 0 <= self.dropout < 1:
            raise ValueError(f"--dropout {self.dropout}: must be at least 0 and below 1")
        if self.snr_gamma is not None and not self.snr_gamma > 0:
            raise ValueError(f"--snr-gamma {self.snr_gamma}: must be positive (or left out for plain MSE)")
        if self.latent_normalisation not in LATENT_NORMALISATIONS:
            raise ValueError(f"--latent-normalisation {self.latent_normalisation!r}: must be one of "
                             f"{', '.join(LATENT_NORMALISATIONS)}")
