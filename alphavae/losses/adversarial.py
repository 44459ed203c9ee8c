"""Adversarial term: a PatchGAN discriminator on 4-channel images, hinge loss, and the adaptive weight.

* Discriminator (3 strided layers, pix2pix's PatchGAN) scores overlapping patches of an RGBA image in [-1, 1].
* Hinge loss: L_D = ½ · [ mean(relu(1 − D(x))) + mean(relu(1 + D(x̂))) ];  generator: L_GAN = −mean(D(x̂)).
* Adaptive weight, so the GAN gradient never swamps the reconstruction's at the decoder's last layer W:
  λ = ‖∇_W L_rec‖ / (‖∇_W L_GAN‖ + 1e-4), clamped to [0, 1e4], treated as a constant (detached).
The paper's weight is 1, switched on from step 4000 (``DISC_START``).
"""

from __future__ import annotations

import torch
from torch import nn

#: The paper's weight and start step for the adversarial term.
DEFAULT_WEIGHT = 1.0
DISC_START = 4000
#: The adaptive weight's ε and clamp (taming-transformers' values).
ADAPTIVE_EPS = 1e-4
ADAPTIVE_MAX = 1e4


class PatchDiscriminator(nn.Module):
    """PatchGAN: conv(4×4, stride 2) + LeakyReLU, ``n_layers − 1`` more strided conv + BatchNorm + LeakyReLU
    blocks doubling the width (max 8×), one stride-1 block, and a 1-channel stride-1 conv giving patch logits.
    """

    def __init__(self, in_channels: int = 4, base_channels: int = 64, n_layers: int = 3):
        super().__init__()
        layers: list[nn.Module] = [nn.Conv2d(in_channels, base_channels, 4, 2, 1), nn.LeakyReLU(0.2, True)]
        mult = 1
        for n in range(1, n_layers + 1):
            prev, mult = mult, min(2**n, 8)
            stride = 2 if n < n_layers else 1
            layers += [nn.Conv2d(base_channels * prev, base_channels * mult, 4, stride, 1, bias=False),
                       nn.BatchNorm2d(base_channels * mult), nn.LeakyReLU(0.2, True)]
        layers.append(nn.Conv2d(base_channels * mult, 1, 4, 1, 1))
        self.main = nn.Sequential(*layers)
        self.apply(self._init)

    @staticmethod
    def _init(module: nn.Module) -> None:
        if isinstance(module, nn.Conv2d):
            nn.init.normal_(module.weight, 0.0, 0.02)
        elif isinstance(module, nn.BatchNorm2d):
            nn.init.normal_(module.weight, 1.0, 0.02)
            nn.init.zeros_(module.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Patch logits ``(B, 1, h, w)`` for images ``(B, in_channels, H, W)`` in [-1, 1]."""
        return self.main(x)


def hinge_discriminator_loss(logits_real: torch.Tensor, logits_fake: torch.Tensor) -> torch.Tensor:
    """½ · [mean(relu(1 − real)) + mean(relu(1 + fake))]: zero once real ≥ 1 and fake ≤ −1."""
    return 0.5 * (torch.relu(1 - logits_real).mean() + torch.relu(1 + logits_fake).mean())


def generator_adversarial_loss(logits_fake: torch.Tensor) -> torch.Tensor:
    """The generator's hinge term, −mean(D(x̂))."""
    return -logits_fake.mean()


def adaptive_weight(rec_loss: torch.Tensor, gan_loss: torch.Tensor, last_layer_weight: torch.Tensor,
                    eps: float = ADAPTIVE_EPS, max_weight: float = ADAPTIVE_MAX) -> torch.Tensor:
    """λ = ‖∇_W rec_loss‖ / (‖∇_W gan_loss‖ + eps), clamped to [0, max_weight], detached.

    Both losses must depend on ``last_layer_weight`` through the autograd graph (kept for the backward pass).
    """
    g_rec = torch.autograd.grad(rec_loss, last_layer_weight, retain_graph=True)[0]
    g_gan = torch.autograd.grad(gan_loss, last_layer_weight, retain_graph=True)[0]
    return (g_rec.norm() / (g_gan.norm() + eps)).clamp(0.0, max_weight).detach()
