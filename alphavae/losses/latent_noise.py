"""Latent noise: train the decoder on latents a little off, as a generator's samples are (method.md §3.9).

A generator's sample is a latent with some error. Decoded by a VAE trained only on its encoder's own latents, that
error comes back as haze: soft alpha where the image is transparent or opaque (benchmarks/NOTES.md, stop 27: stage 1 of
the shipped ``embedded-rgba`` decodes its posterior means with 10 % soft pixels, and with 23 % at a noise of 0.2 × the
latents' standard deviation). Not in the paper. With ``loss.latent_noise`` = s_max > 0 the decoder sees

    z' = z + s·σ_c·ε,    s ~ U(0, s_max) per image,  ε ~ N(0, I),

where σ_c is the standard deviation of the batch's latents per channel (over every process's batch), so the noise
is in the latents' own units whatever the VAE. Default 0: the paper's objective.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch

#: Default s_max: off.
DEFAULT_SCALE = 0.0


def latent_noise_draws(n: int, latent_shape: Sequence[int], scale: float,
                       generator: torch.Generator | None = None, device: torch.device | str | None = None) -> torch.Tensor:
    """``s·ε`` for ``n`` images, ``(n, *latent_shape)``: s ~ U(0, ``scale``) per image, ε standard normal."""
    device = generator.device if generator is not None else device  # a generator draws on its own device
    s = scale * torch.rand((n, 1, 1, 1), generator=generator, device=device)
    return s * torch.randn((n, *latent_shape), generator=generator, device=device)


def add_latent_noise(z: torch.Tensor, draws: torch.Tensor,
                     reduce_mean: Callable[[torch.Tensor], torch.Tensor] | None = None) -> torch.Tensor:
    """``z + σ_c·draws``, σ_c the per-channel standard deviation of ``z`` over batch and space (no gradient through
    it); ``reduce_mean`` averages the two moments over the processes (None: one process)."""
    zf = z.detach().double()  # E[z²] − E[z]² cancels: a channel whose mean is far from 0 needs the precision
    moments = torch.stack([zf.mean(dim=(0, 2, 3)), zf.square().mean(dim=(0, 2, 3))])
    if reduce_mean is not None:
        moments = reduce_mean(moments)
    sigma = (moments[1] - moments[0].square()).clamp(min=0).sqrt()
    return z + (sigma.view(1, -1, 1, 1).to(draws.dtype) * draws).to(z.dtype)
