"""The whole AlphaVAE objective: the loss terms, their weights (paper defaults), and the two training steps.

    L_G = w_rec·L_rec + w_p·L_perc + w_kl·KL_prior + w_ref·KL_ref + [step ≥ disc_start] · w_adv·λ·L_GAN
    L_D = [step ≥ disc_start] · hinge(D(x), D(x̂))

Two additions that are not the paper's, both off by default, for the decoder fine-tune of method.md §3.9: an L1
term on alpha (``alpha_l1``, one more reconstruction term) and noise on the decoder's latents (``latent_noise``); and
a third reconstruction loss besides ABMSE and naive MSE, L1 on the premultiplied image (``premultiplied_l1``).

A term whose weight is 0, or whose network is missing (no LPIPS model, no reference VAE, no discriminator),
is skipped and listed in :attr:`AlphaVAEObjective.notes` — never replaced by a stand-in. Every active term is
logged unweighted (``loss/<term>``) and weighted (``weighted/<term>``).
"""

from __future__ import annotations

import copy
from collections.abc import Sequence
from dataclasses import asdict, dataclass, fields

import torch
from diffusers import AutoencoderKL
from diffusers.models.autoencoders.vae import DiagonalGaussianDistribution
from torch import nn

from alphavae.blending import to_vae_range
from alphavae.losses import adversarial as adv
from alphavae.losses import alpha_l1 as alpha_term
from alphavae.losses import augmentation as aug
from alphavae.losses import kl as kl_terms
from alphavae.losses import naive_mse as mse_term
from alphavae.losses import perceptual as perc
from alphavae.losses import premultiplied_l1 as l1_term
from alphavae.losses import reconstruction as rec_term
from alphavae.losses.compositing import BLACK_WHITE, hold_saturated_alpha
from alphavae.losses.latent_noise import DEFAULT_SCALE, add_latent_noise, latent_noise_draws
from alphavae.losses.reconstruction import IMAGENET_MOMENTS, BackgroundMoments
from alphavae.vae.conversion import convert_to_rgba, is_rgba

#: Reconstruction terms ``LossWeights.reconstruction_loss`` can name.
RECONSTRUCTION_LOSSES = ("abmse", "mse", "premultiplied_l1")
#: The terms of the generator loss, in logging order.
TERMS = ("reconstruction", "alpha_l1", "perceptual", "prior_kl", "reference_kl", "adversarial")
#: Terms that are not the paper's: off (weight 0) by default, and then not noted as skipped.
EXTRA_TERMS = ("alpha_l1",)
#: The terms that make up L_rec, the numerator of the adaptive weight λ.
REC_TERMS = ("reconstruction", "alpha_l1", "perceptual")


@dataclass
class LossWeights:
    """Weights of the terms (the paper's defaults), when the GAN starts, which reconstruction loss, and the
    blend-augmentation probability the trainer applies to each batch."""

    reconstruction: float = rec_term.DEFAULT_WEIGHT
    alpha_l1: float = alpha_term.DEFAULT_WEIGHT  # not the paper's: method.md §3.9
    perceptual: float = perc.DEFAULT_WEIGHT
    prior_kl: float = kl_terms.PRIOR_KL_WEIGHT
    reference_kl: float = kl_terms.REFERENCE_KL_WEIGHT
    adversarial: float = adv.DEFAULT_WEIGHT
    disc_start: int = adv.DISC_START
    reconstruction_loss: str = "abmse"
    blend_p: float = aug.BLEND_P
    perceptual_reduction: str = "image_mean"  # the paper's; "per_pixel" gives LPIPS a real share (taming's)
    free_alpha_overshoot: bool = False  # the paper's; True: the terms see alpha held at a saturated target's bound
    latent_noise: float = DEFAULT_SCALE  # not the paper's: s_max of the decoder's latent noise (method.md §3.9)

    def __post_init__(self) -> None:
        def number(value) -> bool:
            return isinstance(value, (int, float)) and not isinstance(value, bool) and value == value

        for name in TERMS:
            value = getattr(self, name)
            if not number(value) or value < 0:
                raise ValueError(f"'loss.{name}' must be a number ≥ 0, got {value!r}")
        if self.reconstruction_loss not in RECONSTRUCTION_LOSSES:
            raise ValueError(f"'loss.reconstruction_loss' must be one of {RECONSTRUCTION_LOSSES}, got {self.reconstruction_loss!r}")
        if self.perceptual_reduction not in perc.REDUCTIONS:
            raise ValueError(f"'loss.perceptual_reduction' must be one of {perc.REDUCTIONS}, got {self.perceptual_reduction!r}")
        if not number(self.latent_noise) or self.latent_noise < 0:
            raise ValueError(f"'loss.latent_noise' must be a number ≥ 0, got {self.latent_noise!r}")
        if not number(self.blend_p) or not 0 <= self.blend_p <= 1:
            raise ValueError(f"'loss.blend_p' must be in [0, 1], got {self.blend_p!r}")
        if not isinstance(self.free_alpha_overshoot, bool):
            raise ValueError(f"'loss.free_alpha_overshoot' must be true or false, got {self.free_alpha_overshoot!r}")
        if not number(self.disc_start) or int(self.disc_start) != self.disc_start or self.disc_start < 0:
            raise ValueError(f"'loss.disc_start' must be a whole number of steps ≥ 0, got {self.disc_start!r}")

    @classmethod
    def from_dict(cls, values: dict) -> LossWeights:
        """Build from a config mapping; an unknown key or a bad value is a ValueError naming ``loss.<key>``."""
        if not isinstance(values, dict):
            raise ValueError(f"'loss' must be an object of loss weights, got {values!r}")
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(values) - known)
        if unknown:
            raise ValueError(f"unknown key 'loss.{unknown[0]}' (known: {', '.join(sorted(known))})")
        return cls(**values)

    def to_dict(self) -> dict:
        return asdict(self)


class AlphaVAEObjective:
    """Computes the generator and discriminator losses of one training step (method.md §3).

    ``reference_vae``: frozen RGB VAE for the reference KL; ``lpips_model``: from
    :func:`alphavae.metric.backbones.load_lpips`; ``discriminator``: e.g. :class:`PatchDiscriminator`. The
    discriminator's parameters are the caller's to optimise (after :meth:`discriminator_step`).
    ``sample_posterior``: decode a sample of q(z|x) (the usual VAE training) rather than its mode.
    """

    def __init__(self, weights: LossWeights | None = None, reference_vae: AutoencoderKL | None = None,
                 lpips_model: nn.Module | None = None, discriminator: nn.Module | None = None,
                 moments: BackgroundMoments = IMAGENET_MOMENTS,
                 perceptual_backgrounds: Sequence[Sequence[float]] = BLACK_WHITE,
                 reference_backgrounds: Sequence[Sequence[float]] = BLACK_WHITE,
                 sample_posterior: bool = True, generator: torch.Generator | None = None):
        self.weights = weights or LossWeights()
        self.reference_vae = reference_vae.eval().requires_grad_(False) if reference_vae is not None else None
        self.lpips_model = lpips_model.eval().requires_grad_(False) if lpips_model is not None else None
        self.discriminator = discriminator
        self.moments = moments
        self.perceptual_backgrounds = tuple(perceptual_backgrounds)
        self.reference_backgrounds = tuple(reference_backgrounds)
        self.sample_posterior = sample_posterior
        self.generator = generator
        self.skipped = self._skipped_terms()

    def _skipped_terms(self) -> dict[str, str]:
        w, skipped = self.weights, {}
        for term in TERMS:
            if getattr(w, term) == 0:
                skipped[term] = "weight is 0"
        missing = {"perceptual": (self.lpips_model, "no LPIPS model (run `alphavae weights fetch` for the ImageNet backbones)"),
                   "reference_kl": (self.reference_vae, "no reference RGB VAE given"),
                   "adversarial": (self.discriminator, "no discriminator given")}
        for term, (net, why) in missing.items():
            if net is None and term not in skipped:
                skipped[term] = why
        return skipped

    @property
    def notes(self) -> list[str]:
        """One line per skipped term of the paper's, e.g. ``"perceptual skipped: no LPIPS model (...)"``."""
        return [f"{term} skipped: {why}" for term, why in self.skipped.items() if term not in EXTRA_TERMS]

    def active(self, term: str, step: int | None = None) -> bool:
        """Whether ``term`` contributes (the adversarial term also needs ``step ≥ disc_start``)."""
        if term in self.skipped:
            return False
        return term != "adversarial" or step is None or step >= self.weights.disc_start

    def seen(self, recon: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        """The decoder's output ``recon`` as every term (and the discriminator) sees it for the target ``x``:
        itself, or with ``free_alpha_overshoot`` its alpha held where it overshoots a saturated target
        (:func:`alphavae.losses.compositing.hold_saturated_alpha`)."""
        return hold_saturated_alpha(recon, x) if self.weights.free_alpha_overshoot else recon

    def reconstruction_term(self, pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        """ABMSE, naive MSE or L1 on the premultiplied image (``weights.reconstruction_loss``) on RGBA images in
        [-1, 1]."""
        if self.weights.reconstruction_loss == "abmse":
            return rec_term.abmse_loss(pred, target, self.moments)
        if self.weights.reconstruction_loss == "premultiplied_l1":
            return l1_term.premultiplied_l1_loss(pred, target)
        return mse_term.naive_mse_loss(pred, target)

    def generator_step(self, vae: AutoencoderKL, x01: torch.Tensor, step: int,
                       last_layer_weight: torch.Tensor | None = None,
                       latent_noise: torch.Tensor | None = None) -> tuple[torch.Tensor, dict[str, float], torch.Tensor]:
        """Loss for the VAE on a batch ``(B, 4, H, W)`` in [0, 1]; returns ``(loss, logs, recon)``.

        ``last_layer_weight`` (default: the decoder's ``conv_out.weight``) is W of the adaptive weight.
        ``latent_noise``: the draws ``s·ε`` of :func:`~alphavae.losses.latent_noise.latent_noise_draws` when
        ``weights.latent_noise`` is on (None: drawn here from ``self.generator``).
        ``recon`` is the decoder's output as the losses saw it: in [-1, 1] space, *unclamped* (detached). The
        discriminator step must score exactly this tensor: trained on a clamped copy, D never sees the values
        outside [-1, 1] that its adversarial gradient then pushes the VAE towards (measured: reconstruction
        error ×1.6 over a 5,000-step run, ``benchmarks/NOTES.md``). Show it with :func:`alphavae.blending.from_vae_range`.
        """
        x = to_vae_range(x01)
        posterior, recon = self._reconstruct(vae, x, latent_noise)
        raw = self._raw_terms(vae, recon, x, posterior)
        weighted = {term: getattr(self.weights, term) * value for term, value in raw.items()}
        logs: dict[str, float] = {}
        if self.active("adversarial", step):
            raw["adversarial"], weighted["adversarial"], logs["adaptive_weight"] = self._adversarial(
                vae, recon, weighted, last_layer_weight)
        loss = sum(weighted.values(), start=recon.new_zeros(()))
        for term in raw:
            logs[f"loss/{term}"] = float(raw[term].detach())
            logs[f"weighted/{term}"] = float(weighted[term].detach())
        logs["total"] = float(loss.detach())
        return loss, logs, recon.detach()

    def _reconstruct(self, vae: AutoencoderKL, x: torch.Tensor, latent_noise: torch.Tensor | None = None,
                     generator: torch.Generator | None = None) -> tuple[DiagonalGaussianDistribution, torch.Tensor]:
        """(q(z|x), x̂ as the terms see it): a posterior sample (or its mode) drawn from ``generator`` (default: the
        objective's), plus the latent noise: ``latent_noise``'s draws when given (as the fast step applies them),
        else drawn here when ``weights.latent_noise`` is on."""
        generator = generator if generator is not None else self.generator
        posterior = vae.encode(x).latent_dist
        z = posterior.sample(generator=generator) if self.sample_posterior else posterior.mode()
        if latent_noise is None and self.weights.latent_noise > 0:
            latent_noise = latent_noise_draws(len(z), z.shape[1:], self.weights.latent_noise, generator, z.device)
        if latent_noise is not None:
            z = add_latent_noise(z, latent_noise.to(z.device))
        return posterior, self.seen(vae.decode(z).sample.float(), x)  # losses in fp32 even under bf16 autocast

    def _raw_terms(self, vae: AutoencoderKL, recon: torch.Tensor, x: torch.Tensor,
                   posterior: DiagonalGaussianDistribution) -> dict[str, torch.Tensor]:
        """Every active term but the adversarial one, unweighted."""
        raw: dict[str, torch.Tensor] = {}
        if self.active("reconstruction"):
            raw["reconstruction"] = self.reconstruction_term(recon, x)
        if self.active("alpha_l1"):
            raw["alpha_l1"] = alpha_term.alpha_l1_loss(recon, x)
        if self.active("perceptual"):
            raw["perceptual"] = perc.perceptual_loss(recon, x, self.lpips_model, self.perceptual_backgrounds,
                                                     self.weights.perceptual_reduction)
        if self.active("prior_kl"):
            raw["prior_kl"] = kl_terms.prior_kl(posterior)
        if self.active("reference_kl"):
            raw["reference_kl"] = kl_terms.reference_kl(vae, self.reference_vae, x, self.reference_backgrounds)
        return raw

    def _adversarial(self, vae: AutoencoderKL, recon: torch.Tensor, weighted: dict[str, torch.Tensor],
                     last_layer_weight: torch.Tensor | None) -> tuple[torch.Tensor, torch.Tensor, float]:
        """(L_GAN, w_adv·λ·L_GAN, λ); the discriminator's own parameters get no gradient from it."""
        d = self.discriminator
        was = [p.requires_grad for p in d.parameters()]
        d.requires_grad_(False)
        try:
            gan = adv.generator_adversarial_loss(d(recon))
        finally:
            for p, flag in zip(d.parameters(), was):
                p.requires_grad_(flag)
        rec = sum((weighted[t] for t in REC_TERMS if t in weighted), start=recon.new_zeros(()))
        if torch.is_grad_enabled() and gan.requires_grad and rec.requires_grad:
            w = last_layer_weight if last_layer_weight is not None else vae.decoder.conv_out.weight
            lam = adv.adaptive_weight(rec, gan, w)
        else:  # no graph (evaluation) or no reconstruction terms: λ is 0 by its definition or cannot be measured
            lam = torch.zeros((), device=recon.device)
        return gan, self.weights.adversarial * lam * gan, float(lam)

    def discriminator_step(self, recon: torch.Tensor, x01: torch.Tensor, step: int) -> tuple[torch.Tensor, dict[str, float]]:
        """Hinge loss of the discriminator on real ``x01`` (in [0, 1]) and the reconstruction ``recon`` exactly as
        :meth:`generator_step` returned it (in [-1, 1] space, unclamped: what the adversarial term scored).

        Before ``disc_start`` (or without a discriminator) returns a zero tensor that needs no backward.
        """
        if not self.active("adversarial", step):
            return torch.zeros((), device=x01.device), {}
        real = self.discriminator(to_vae_range(x01))
        fake = self.discriminator(recon.detach())
        loss = adv.hinge_discriminator_loss(real, fake)
        return loss, {"disc/loss": float(loss.detach()), "disc/logits_real": float(real.detach().mean()),
                      "disc/logits_fake": float(fake.detach().mean())}


def build_objective(vae: AutoencoderKL, weights: LossWeights, device: torch.device | str,
                    lpips_model: nn.Module | None = None, disc_channels: int = 64,
                    generator: torch.Generator | None = None) -> tuple[AutoencoderKL, AlphaVAEObjective]:
    """The RGBA model to train and its objective, as every trainer builds them (method.md §2–3).

    An RGB ``vae`` is converted to RGBA (a copy; it stays untouched) and, when the reference KL is on, serves
    frozen as the reference. An RGBA ``vae`` (fine-tuning one, method.md §3.9) is copied; it has no RGB reference,
    so the reference KL must be off. A PatchGAN of ``disc_channels`` base channels is built when the adversarial
    weight is positive; ``lpips_model`` is the real LPIPS (none: the term is skipped and noted).
    """
    rgba = is_rgba(vae)
    if rgba and weights.reference_kl > 0:
        raise ValueError("'loss.reference_kl' must be 0 to fine-tune an RGBA VAE: the reference KL needs the RGB VAE "
                         "it was made from")
    model = (copy.deepcopy(vae) if rgba else convert_to_rgba(vae)).to(device).train().requires_grad_(True)
    reference = vae.to(device).eval().requires_grad_(False) if weights.reference_kl > 0 else None
    disc = adv.PatchDiscriminator(in_channels=4, base_channels=disc_channels).to(device).train() if weights.adversarial > 0 else None
    objective = AlphaVAEObjective(weights, reference_vae=reference, lpips_model=lpips_model, discriminator=disc,
                                  generator=generator)
    return model, objective


def gradient_shares(vae: AutoencoderKL, objective: AlphaVAEObjective, x01: torch.Tensor, step: int) -> dict[str, float]:
    """Each weighted term's share of the gradient on the VAE's weights at ``step``: ‖∇ w_t·L_t‖ / Σ_t ‖∇ w_u·L_u‖.

    What steers training is the gradient, not the loss value: a term can be large and still move nothing, or
    small and dominate. One backward per term (a teaching and ablation diagnostic, not part of a step). The
    adversarial term is measured with its adaptive weight λ, as the step applies it.
    """
    params = [p for p in vae.parameters() if p.requires_grad]
    x = to_vae_range(x01)
    posterior, recon = objective._reconstruct(vae, x, generator=torch.Generator(x.device).manual_seed(0))
    w = objective.weights
    terms = {name: getattr(w, name) * value for name, value in objective._raw_terms(vae, recon, x, posterior).items()}
    if objective.active("adversarial", step):
        _, terms["adversarial"], _ = objective._adversarial(vae, recon, terms, None)
    norms = {}
    for name, value in terms.items():
        grads = torch.autograd.grad(value, params, retain_graph=True, allow_unused=True)
        norms[name] = float(torch.sqrt(sum((g.float() ** 2).sum() for g in grads if g is not None)))
    total = sum(norms.values()) or 1.0
    return {name: n / total for name, n in norms.items()}
