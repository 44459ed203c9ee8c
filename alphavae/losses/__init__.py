"""The AlphaVAE training objective, one module per term (method.md §3), each usable on its own.

All terms take RGBA images ``(B, 4, H, W)`` in the VAE's [-1, 1] range and reduce like the paper: summed over
all elements, divided by the batch size. :mod:`~alphavae.losses.objective` combines them with the paper's
weights; the trainer applies :func:`blend_augment` to each batch first.
"""

from alphavae.losses.adversarial import (PatchDiscriminator, adaptive_weight, generator_adversarial_loss,
                                         hinge_discriminator_loss)
from alphavae.losses.augmentation import BLEND_P, GRID_COLOURS, blend_augment
from alphavae.losses.compositing import (BLACK_WHITE, PUBLISHED_GREY_WHITE, alpha01, composite_vae,
                                         hold_saturated_alpha)
from alphavae.losses.kl import gaussian_kl, prior_kl, reference_kl
from alphavae.losses.naive_mse import naive_mse_loss, naive_mse_map
from alphavae.losses.objective import AlphaVAEObjective, LossWeights
from alphavae.losses.perceptual import perceptual_loss
from alphavae.losses.premultiplied_l1 import premultiplied_l1_loss, premultiplied_l1_map
from alphavae.losses.reconstruction import (CANONICAL_MOMENTS, GRID_MOMENTS, IMAGENET_MOMENTS, BackgroundMoments,
                                            abmse_loss, abmse_map, moments_of, sampled_composite_loss)

__all__ = [
    "AlphaVAEObjective", "LossWeights", "PatchDiscriminator", "adaptive_weight", "generator_adversarial_loss",
    "hinge_discriminator_loss", "BLEND_P", "GRID_COLOURS", "blend_augment", "BLACK_WHITE", "PUBLISHED_GREY_WHITE",
    "alpha01", "composite_vae", "hold_saturated_alpha", "gaussian_kl", "prior_kl", "reference_kl", "naive_mse_loss",
    "naive_mse_map", "perceptual_loss", "premultiplied_l1_loss", "premultiplied_l1_map", "CANONICAL_MOMENTS",
    "GRID_MOMENTS", "IMAGENET_MOMENTS", "BackgroundMoments", "abmse_loss", "abmse_map", "moments_of",
    "sampled_composite_loss",
]
