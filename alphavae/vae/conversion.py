"""Extending a pretrained RGB VAE to RGBA by surgery on two convolutions (method.md §2).

Only the first layer of the encoder and the last layer of the decoder see pixels, so only they change:

* encoder ``conv_in`` 3 → 4 input channels: the RGB weights are copied, the new alpha-input weights are
  **0** and the bias is kept — the encoder ignores alpha, so the latent of any RGBA image is the latent of
  its colour channels;
* decoder ``conv_out`` 3 → 4 output channels: RGB weights and biases are copied, the alpha-output weights
  are **0** and its bias is **+1** — in the VAE's [-1, 1] range that is α = 1, fully opaque, everywhere.

So at initialisation the RGBA VAE *is* the RGB VAE on the colour channels, for any input alpha, and it says
"opaque" for alpha. Latent shape, ``scaling_factor`` and ``shift_factor`` are unchanged, which is why a
diffusion model trained on the RGB latents still understands the RGBA VAE's latents. Works for any diffusers
``AutoencoderKL``: Stable Diffusion style (4 latent channels, quant convs), FLUX style (16 channels, no
quant convs) and the project's small embedded VAE.
"""

from __future__ import annotations

import copy
import os
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path

import torch
from diffusers import AutoencoderKL
from torch import nn

#: Bias of the new alpha output channel: +1 in [-1, 1] space is α = 1 (opaque).
ALPHA_OUTPUT_BIAS = 1.0


def _widen_input(conv: nn.Conv2d) -> nn.Conv2d:
    """A copy of ``conv`` with one more input channel whose weights are zero (the bias is kept)."""
    new = nn.Conv2d(conv.in_channels + 1, conv.out_channels, conv.kernel_size, conv.stride, conv.padding,
                    conv.dilation, conv.groups, conv.bias is not None, conv.padding_mode,
                    device=conv.weight.device, dtype=conv.weight.dtype)
    with torch.no_grad():
        new.weight.zero_()
        new.weight[:, : conv.in_channels] = conv.weight
        if conv.bias is not None:
            new.bias.copy_(conv.bias)
    new.requires_grad_(conv.weight.requires_grad)
    return new


def _widen_output(conv: nn.Conv2d, bias: float) -> nn.Conv2d:
    """A copy of ``conv`` with one more output channel: zero weights, constant ``bias``."""
    new = nn.Conv2d(conv.in_channels, conv.out_channels + 1, conv.kernel_size, conv.stride, conv.padding,
                    conv.dilation, conv.groups, True, conv.padding_mode,
                    device=conv.weight.device, dtype=conv.weight.dtype)
    with torch.no_grad():
        new.weight.zero_()
        new.weight[: conv.out_channels] = conv.weight
        new.bias.fill_(bias)
        new.bias[: conv.out_channels] = conv.bias if conv.bias is not None else 0.0
    new.requires_grad_(conv.weight.requires_grad)
    return new


def is_rgba(vae: AutoencoderKL) -> bool:
    """Whether ``vae`` takes and gives four channels (an RGBA VAE, converted or fine-tuned)."""
    return (vae.config.in_channels, vae.config.out_channels) == (4, 4)


def convert_to_rgba(vae: AutoencoderKL) -> AutoencoderKL:
    """Return a new 4-channel (RGBA) ``AutoencoderKL`` made from a 3-channel one; ``vae`` is left untouched.

    The config says ``in_channels = out_channels = 4``, so ``save_pretrained`` / ``from_pretrained`` round-trip
    the result. Raises ``ValueError`` for a VAE that is not RGB (3 input and 3 output channels).
    """
    if not isinstance(vae, AutoencoderKL):
        raise TypeError(f"convert_to_rgba expects a diffusers AutoencoderKL, got {type(vae).__name__}")
    ins, outs = vae.config.in_channels, vae.config.out_channels
    conv_in, conv_out = vae.encoder.conv_in, vae.decoder.conv_out
    if (ins, outs, conv_in.in_channels, conv_out.out_channels) != (3, 3, 3, 3):
        raise ValueError(
            f"convert_to_rgba needs an RGB VAE (3 input and 3 output channels); this one has in_channels={ins}, "
            f"out_channels={outs} (encoder conv_in takes {conv_in.in_channels}, decoder conv_out gives "
            f"{conv_out.out_channels}) — is it already RGBA?"
        )
    rgba = copy.deepcopy(vae)
    rgba.encoder.conv_in = _widen_input(conv_in)
    rgba.decoder.conv_out = _widen_output(conv_out, ALPHA_OUTPUT_BIAS)
    rgba.register_to_config(in_channels=4, out_channels=4)
    return rgba


@dataclass(frozen=True)
class LayerChange:
    """One convolution the surgery replaced: its name and weight shapes before and after."""

    name: str
    before: tuple[int, ...]
    after: tuple[int, ...]


def surgery_summary(rgb: AutoencoderKL, rgba: AutoencoderKL) -> list[LayerChange]:
    """Every parameter whose shape differs between the RGB VAE and its RGBA conversion (for display)."""
    before = dict(rgb.named_parameters())
    return [LayerChange(name, tuple(before[name].shape), tuple(p.shape))
            for name, p in rgba.named_parameters() if before[name].shape != p.shape]


def convert_and_save(spec: str, output: str | os.PathLike, overwrite: bool = False,
                     dtype: torch.dtype = torch.float32) -> list[LayerChange]:
    """Load the RGB VAE ``spec`` (see :func:`alphavae.vae.loading.load_vae`), convert it, and ``save_pretrained`` it
    into ``output`` atomically: written to a temporary folder beside it, then renamed into place.

    A non-empty ``output`` is refused unless ``overwrite``; an existing file there is always refused.
    Returns the layers the surgery changed.
    """
    from alphavae.vae.loading import load_vae

    output = Path(output)
    if output.exists() and not output.is_dir():
        raise NotADirectoryError(f"--output {output}: exists and is not a folder")
    if output.is_dir() and any(output.iterdir()) and not overwrite:
        raise FileExistsError(f"--output {output}: folder is not empty (pass --overwrite to replace it)")
    rgb = load_vae(spec, dtype=dtype)
    rgba = convert_to_rgba(rgb)
    output.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{output.name}.", suffix=".tmp", dir=output.parent))
    try:
        rgba.save_pretrained(tmp, safe_serialization=True)
        if output.exists():
            old = output.with_name(f".{output.name}.old-{tmp.name}")
            os.replace(output, old)
            os.replace(tmp, output)
            shutil.rmtree(old)
        else:
            os.replace(tmp, output)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return surgery_summary(rgb, rgba)
