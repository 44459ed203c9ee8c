"""The two KL terms: to the prior N(0, I) (weight 1e-6) and to a frozen RGB reference VAE (weight 1e-16).

Both compare diagonal Gaussians, for which the KL has a closed form, per latent element:

    KL(N(μ_p, σ_p²) ‖ N(μ_q, σ_q²)) = ½ · [ (σ_p² + (μ_p − μ_q)²) / σ_q² − 1 + log σ_q² − log σ_p² ]

*Prior KL*: μ_q = 0, σ_q = 1, summed over latent elements and divided by the batch size — the same as
diffusers' ``DiagonalGaussianDistribution.kl()`` (a sum per image) averaged over the batch.

*Reference KL* (method.md §3.4): for b ∈ {black, white}, encode the opaque composite [A(x, b); α = 1] with
the RGBA model being trained and its RGB colour with a frozen copy of the original RGB VAE, and average
KL(q_θ ‖ q_ref) over the two backgrounds. It keeps RGBA latents where the RGB diffusion model expects them.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from diffusers import AutoencoderKL
from diffusers.models.autoencoders.vae import DiagonalGaussianDistribution

from alphavae.losses.compositing import BLACK_WHITE, composite_vae, opaque

#: The paper's weights.
PRIOR_KL_WEIGHT = 1e-6
REFERENCE_KL_WEIGHT = 1e-16


def gaussian_kl(mean_p: torch.Tensor, logvar_p: torch.Tensor, mean_q: torch.Tensor, logvar_q: torch.Tensor) -> torch.Tensor:
    """Element-wise KL(N(mean_p, exp(logvar_p)) ‖ N(mean_q, exp(logvar_q))), closed form (broadcasts)."""
    return 0.5 * ((logvar_p.exp() + (mean_p - mean_q).square()) / logvar_q.exp() - 1 + logvar_q - logvar_p)


def prior_kl(posterior: DiagonalGaussianDistribution) -> torch.Tensor:
    """KL(q(z|x) ‖ N(0, I)) summed over latent elements, divided by the batch size."""
    mean, logvar = posterior.mean.float(), posterior.logvar.float()
    zero = torch.zeros_like(mean)
    return gaussian_kl(mean, logvar, zero, zero).sum() / mean.shape[0]


def reference_composites(x: torch.Tensor, backgrounds: Sequence[Sequence[float]] = BLACK_WHITE) -> torch.Tensor:
    """The opaque-colour composites A(x, b) in [-1, 1] for each background, stacked: ``(len(backgrounds)·B, 3, H, W)``."""
    return torch.cat([composite_vae(x, b) for b in backgrounds])


def kl_to_reference(q: DiagonalGaussianDistribution, r: DiagonalGaussianDistribution, n_backgrounds: int) -> torch.Tensor:
    """KL(q ‖ r) summed over latent elements, divided by the batch size and averaged over the backgrounds, for
    posteriors of the ``n_backgrounds``·B composites stacked as :func:`reference_composites` stacks them."""
    kl = gaussian_kl(q.mean.float(), q.logvar.float(), r.mean.float(), r.logvar.float())
    return kl.sum() / (q.mean.shape[0] // n_backgrounds) / n_backgrounds


def reference_kl(vae: AutoencoderKL, reference_vae: AutoencoderKL, x: torch.Tensor,
                 backgrounds: Sequence[Sequence[float]] = BLACK_WHITE) -> torch.Tensor:
    """Mean over ``backgrounds`` of KL(q_θ(z | [A(x, b); 1]) ‖ q_ref(z | A(x, b))), summed, / batch size.

    ``vae`` is the 4-channel model being trained, ``reference_vae`` the frozen 3-channel original (no gradient
    flows into it); ``x`` is RGBA ``(B, 4, H, W)`` in [-1, 1]. Each background's composites are encoded on
    their own, as method.md writes it (the training step batches them: :mod:`alphavae.training.step`).
    """
    total = x.new_zeros(())
    ref_dtype = next(reference_vae.parameters()).dtype
    for b in backgrounds:
        rgb = composite_vae(x, b)
        q = vae.encode(opaque(rgb)).latent_dist
        with torch.no_grad():
            r = reference_vae.encode(rgb.to(ref_dtype)).latent_dist
        total = total + kl_to_reference(q, r, 1)
    return total / len(backgrounds)
