"""The training step every RGBA trainer runs: the objective of method.md §3, computed fast and for any number of GPUs.

It computes what :meth:`alphavae.losses.AlphaVAEObjective.generator_step` and ``discriminator_step`` compute
(that formulation, written straight from method.md, stays the reference; ``tests/test_training_step.py`` shows
the two agree) and differs only in how:

* **The adaptive weight without extra backward passes.** λ needs ∇_W L_rec and ∇_W L_GAN at the decoder's last
  layer W only. The step takes ∂L_rec/∂x̂ and ∂L_GAN/∂x̂ at the reconstruction x̂ (one backward each through
  LPIPS and the discriminator, stopping at x̂), gets both W-gradients from them by one weight-gradient
  convolution each, and backpropagates the VAE once through the surrogate ⟨x̂, ∂L_rec/∂x̂ + w·λ·∂L_GAN/∂x̂⟩.
  The reference formulation backpropagates LPIPS and the discriminator twice.
* **Batched encodes and LPIPS.** The image and its two opaque composites go through the trainable encoder in
  one call (3·B), the reference encodes in one call, both LPIPS composites in one call (GroupNorm and LPIPS are
  per image, so batching changes nothing but the launch count). The reference encodes come first, while nothing
  is held for backward, so their buffers do not add to the step's peak memory.
* **No host synchronisation per step.** Logs stay on the device; :class:`DivergenceWatch` records the first
  non-finite step on the device; the trainer reads both back every ``log_every`` steps and before a checkpoint.
* **Random numbers per sample, not per process.** The blend augmentation and the posterior noise are drawn
  for the whole global batch from (seed, step) and sliced like the batch, so N processes train like one.
* **DDP through accelerate.** :class:`GeneratorLoss` and :class:`DiscriminatorLoss` are modules whose forward
  is the whole loss, so ``accelerator.prepare`` wraps them in DistributedDataParallel, which averages the
  gradients in buckets overlapped with the backward pass. The two W-gradients of λ are averaged over the
  processes too, so λ is the one-process value.
* **Kernels** (:func:`optimise_networks`, on a GPU): frozen networks (reference VAE, LPIPS) in bf16 (under bf16 autocast),
  channels_last, and ``torch.compile`` of the encoder, the decoder but its last layer (:func:`decoder_parts`),
  LPIPS and the discriminator, with the VAEs' activations kept channels_last through their group norms
  (:mod:`alphavae.training.layout`; at SD size on an H100, 51.8 images/s without it in stop 21, and in one call of
  stop 22 53.0 with its first version, 68.1 with per-channel statistics: benchmarks/NOTES.md) and the decoder's
  upsampling as a broadcast (:mod:`alphavae.training.upsampling`); the whole step can then be recorded as CUDA
  graphs (:mod:`alphavae.training.graphs`). Five loss functions around the networks are compiled too
  (:class:`LossFunctions`).
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import torch
from diffusers import AutoencoderKL
from diffusers.models.autoencoders.vae import DiagonalGaussianDistribution
from torch import nn

from alphavae.blending import to_vae_range
from alphavae.losses import adversarial as adv
from alphavae.losses import alpha_l1 as alpha_term
from alphavae.losses import kl as kl_terms
from alphavae.losses import perceptual as perc
from alphavae.losses.augmentation import blend_augment, blend_choices
from alphavae.losses.compositing import opaque
from alphavae.losses.latent_noise import add_latent_noise, latent_noise_draws
from alphavae.losses.objective import REC_TERMS, AlphaVAEObjective
from alphavae.training.layout import keep_channels_last
from alphavae.training.upsampling import broadcast_upsampling


def step_generator(seed: int, step: int, device: torch.device | str) -> torch.Generator:
    """The step's random numbers: a generator on ``device`` seeded by (seed, step) alone (exact resume, and the
    same numbers on every process)."""
    return torch.Generator(device=device).manual_seed((seed * 1_000_003 + step) % 2**63)


def global_draws(generator: torch.Generator, global_batch: int, blend_p: float, latent_shape: Sequence[int],
                 rank: int, world_size: int, latent_noise: float = 0.0
                 ) -> tuple[tuple[torch.Tensor, torch.Tensor], torch.Tensor, torch.Tensor | None]:
    """This process's slice (positions ``rank::world_size``, as the batch sampler deals images) of the blend
    choices, the posterior noise ``(B_local, *latent_shape)`` and, when ``latent_noise`` > 0, the latent noise's
    draws (:func:`~alphavae.losses.latent_noise.latent_noise_draws`; else None), drawn for the whole global batch."""
    chosen, picks = blend_choices(global_batch, blend_p, generator)
    noise = torch.randn((global_batch, *latent_shape), generator=generator, device=generator.device)
    part = slice(rank, None, world_size)
    extra = latent_noise_draws(global_batch, latent_shape, latent_noise, generator)[part] if latent_noise > 0 else None
    return (chosen[part], picks[part]), noise[part], extra


@dataclass(frozen=True)
class LossFunctions:
    """The six loss functions :class:`GeneratorLoss` calls around its networks — the reconstruction term (ABMSE or
    naive MSE), the alpha L1 term, the perceptual term (composites and the LPIPS call), the prior KL, the KL to the
    reference and the reference composites — eager or each compiled (:meth:`of`). The rest of the step's glue (the hinge losses, the
    held alpha of ``free_alpha_overshoot``, the adaptive weight's surrogate) stays eager.

    Eager, each operation of a loss is a kernel of its own; compiled, they fuse into a few. On one H100
    (benchmarks/NOTES.md, stop 26) the embedded step at batch 8 ran 323.1 images/s with them compiled against 313.8
    without (24.8 against 25.5 ms, two boots; ``benchmarks/step_ab.py``'s former ``glue`` arm, which patched these
    functions, agreed: 322.7), and its cold warm-up took 93.1 against 89.1 s: a cold 5,000-step run about breaks
    even, longer ones gain. They are compiled whenever the networks are.
    """

    reconstruction: Callable[[torch.Tensor, torch.Tensor], torch.Tensor]
    alpha_l1: Callable[[torch.Tensor, torch.Tensor], torch.Tensor]
    perceptual: Callable[..., torch.Tensor]
    prior_kl: Callable[[DiagonalGaussianDistribution], torch.Tensor]
    kl_to_reference: Callable[..., torch.Tensor]
    reference_composites: Callable[..., torch.Tensor]

    @classmethod
    def of(cls, objective: AlphaVAEObjective, compiled: bool = False) -> LossFunctions:
        """``objective``'s functions (its reconstruction term is the bound method, which reads its weights), each
        ``torch.compile``-d for fixed shapes with ``compiled``."""
        functions = {"reconstruction": objective.reconstruction_term, "alpha_l1": alpha_term.alpha_l1_loss,
                     "perceptual": perc.perceptual_loss,
                     "prior_kl": kl_terms.prior_kl, "kl_to_reference": kl_terms.kl_to_reference,
                     "reference_composites": kl_terms.reference_composites}
        if compiled:
            functions = {name: torch.compile(function, dynamic=False) for name, function in functions.items()}
        return cls(**functions)


class GeneratorLoss(nn.Module):
    """The VAE's loss of one step as one module (its only submodule is the trainable VAE, which DDP wraps).

    ``forward(x01, noise, adversarial, latent_noise)`` returns ``(backward_loss, logs, recon)``: ``noise`` is the
    posterior sample's ε (None: the posterior mean), ``latent_noise`` the latent noise's draws (None: off);
    ``backward_loss`` has the objective's gradient (equal to the loss itself when the adversarial term is off);
    ``logs`` are detached 0-dim tensors (``loss/…``, ``weighted/…``, ``adaptive_weight``, ``total``: the true loss value).
    """

    def __init__(self, vae: AutoencoderKL, objective: AlphaVAEObjective, reduce_mean=None,
                 compiled_losses: bool = False):
        super().__init__()
        self.vae = vae
        self.objective = objective  # not a module: its networks are frozen or the discriminator's own
        self.reduce_mean = reduce_mean  # averages a tensor over the processes (None: one process)
        self.losses = LossFunctions.of(objective, compiled_losses)

    def forward(self, x01: torch.Tensor, noise: torch.Tensor | None, adversarial: bool,
                latent_noise: torch.Tensor | None = None) -> tuple[torch.Tensor, dict[str, torch.Tensor], torch.Tensor]:
        obj, w, f = self.objective, self.objective.weights, self.losses
        x = to_vae_range(x01)
        n = x.shape[0]
        with_reference = obj.active("reference_kl")
        encoder_input = [x]
        if with_reference:
            rgb = f.reference_composites(x, obj.reference_backgrounds)
            encoder_input.append(opaque(rgb))
            with torch.no_grad():  # first, while nothing is held for backward: its buffers stay off the step's peak
                ref_dtype = next(obj.reference_vae.parameters()).dtype
                reference = obj.reference_vae.encode(rgb.to(ref_dtype)).latent_dist
        moments = self.vae.encode(torch.cat(encoder_input)).latent_dist.parameters
        posterior = DiagonalGaussianDistribution(moments[:n])
        z = posterior.mean + posterior.std * noise.to(posterior.mean) if noise is not None else posterior.mean
        if latent_noise is not None:
            z = add_latent_noise(z, latent_noise, self.reduce_mean)
        recon = obj.seen(self.vae.decode(z).sample.float(), x)  # losses in fp32 even under bf16 autocast
        raw: dict[str, torch.Tensor] = {}
        if obj.active("reconstruction"):
            raw["reconstruction"] = f.reconstruction(recon, x)
        if obj.active("alpha_l1"):
            raw["alpha_l1"] = f.alpha_l1(recon, x)
        if obj.active("perceptual"):
            raw["perceptual"] = f.perceptual(recon, x, obj.lpips_model, obj.perceptual_backgrounds, w.perceptual_reduction)
        if obj.active("prior_kl"):
            raw["prior_kl"] = f.prior_kl(posterior)
        if with_reference:
            q = DiagonalGaussianDistribution(moments[n:])
            raw["reference_kl"] = f.kl_to_reference(q, reference, len(obj.reference_backgrounds))
        weighted = {term: getattr(w, term) * value for term, value in raw.items()}
        loss = sum(weighted.values(), start=recon.new_zeros(()))
        backward_loss = loss
        logs: dict[str, torch.Tensor] = {}
        if adversarial:
            gan = adv.generator_adversarial_loss(obj.discriminator(recon))
            lam, grad_recon = self._adaptive_weight(recon, weighted, gan)
            raw["adversarial"], weighted["adversarial"] = gan, w.adversarial * lam * gan
            loss = loss + weighted["adversarial"]
            others = [weighted[t] for t in weighted if t not in REC_TERMS and t != "adversarial"]
            backward_loss = sum(others, start=(recon * grad_recon).sum())
            logs["adaptive_weight"] = lam
        for term, value in raw.items():
            logs[f"loss/{term}"] = value.detach()
            logs[f"weighted/{term}"] = weighted[term].detach()
        logs["total"] = loss.detach()
        return backward_loss, logs, recon.detach()  # unclamped (alpha held if asked): what D scored

    def _adaptive_weight(self, recon: torch.Tensor, weighted: dict[str, torch.Tensor],
                         gan: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(λ, ∂L/∂x̂ of L_rec + w·λ·L_GAN). The discriminator's parameters get no gradient (only x̂'s is taken)."""
        rec_terms = [weighted[t] for t in REC_TERMS if t in weighted]
        if not rec_terms:  # λ is 0 by its definition when nothing reconstructs: no backward through D needed
            return torch.zeros((), device=recon.device), torch.zeros_like(recon)
        g_gan = torch.autograd.grad(gan, recon)[0]
        g_rec = torch.autograd.grad(sum(rec_terms), recon)[0]
        last = self.vae.decoder.conv_out.weight
        w_grads = torch.stack([torch.autograd.grad(recon, last, g, retain_graph=True)[0].float() for g in (g_rec, g_gan)])
        if self.reduce_mean is not None:
            w_grads = self.reduce_mean(w_grads)
        lam = (w_grads[0].norm() / (w_grads[1].norm() + adv.ADAPTIVE_EPS)).clamp(0.0, adv.ADAPTIVE_MAX).detach()
        return lam, g_rec + self.objective.weights.adversarial * lam * g_gan


class DiscriminatorLoss(nn.Module):
    """The discriminator's hinge loss as one module (DDP wraps it): ``forward(x01, recon) → (loss, logs)``, ``recon``
    as :class:`GeneratorLoss` returned it (in [-1, 1] space, unclamped).

    Real and reconstructed images are scored in two calls, as the reference does (BatchNorm statistics per call).
    """

    def __init__(self, discriminator: nn.Module):
        super().__init__()
        self.discriminator = discriminator

    def forward(self, x01: torch.Tensor, recon: torch.Tensor):
        real = self.discriminator(to_vae_range(x01))
        fake = self.discriminator(recon.detach())
        loss = adv.hinge_discriminator_loss(real, fake)
        logs = {"disc/loss": loss.detach(), "disc/logits_real": real.detach().float().mean(),
                "disc/logits_fake": fake.detach().float().mean()}
        return loss, logs


def optimise_networks(model: AutoencoderKL, objective: AlphaVAEObjective, compile_networks: bool,
                      frozen_dtype: torch.dtype | None) -> list[str]:
    """On a GPU: frozen networks in ``frozen_dtype`` (bf16 under bf16 autocast), and with ``compile_networks``
    channels_last and ``torch.compile`` of the trainable encoder and decoder, the discriminator, LPIPS and the
    reference encoder, whose VAEs keep channels_last through their group norms (:func:`keep_channels_last`: their
    GroupNorm modules change class and their 1×1 convolutions get a pre-hook, in place on ``model``, which the
    returned model keeps; state-dict keys do not change); the trainable decoder upsamples by a broadcast
    (:func:`broadcast_upsampling`, also a change of class). Returns notes for ``run.json``."""
    notes = []
    if frozen_dtype is not None or compile_networks:  # own copies: the loaders cache and share these networks
        objective.reference_vae = encoder_copy(objective.reference_vae)
        objective.lpips_model = copy.deepcopy(objective.lpips_model)
    frozen = [net for net in (objective.reference_vae, objective.lpips_model) if net is not None]
    if frozen_dtype is not None:
        for net in frozen:
            net.to(frozen_dtype)
        notes.append(f"frozen networks (reference VAE, LPIPS) in {str(frozen_dtype).removeprefix('torch.')}")
    if compile_networks:
        trainable = [model, objective.discriminator]
        for net in [*trainable, *frozen]:
            if net is not None:
                net.to(memory_format=torch.channels_last)
        for vae in (model, objective.reference_vae):  # before the first (compiling) call
            if vae is not None:
                keep_channels_last(vae)
        broadcast_upsampling(model.decoder)
        parts = [model.encoder, *decoder_parts(model), objective.discriminator, objective.lpips_model,
                 objective.reference_vae.encoder if objective.reference_vae is not None else None]
        for part in parts:
            if part is not None:
                part.compile(dynamic=False)
        notes.append("torch.compile of the encoder, the decoder up to its last layer, the discriminator, LPIPS and the "
                     "reference encoder; channels_last, kept through the VAEs' group norms; the decoder's nearest "
                     "upsampling as a broadcast")
    return notes


def encoder_copy(vae: AutoencoderKL | None) -> AutoencoderKL | None:
    """A copy of the frozen reference VAE without its decoder: the reference KL only encodes (method.md §3.4),
    and at SD size the decoder is 49.5 M of the 83.7 M parameters that would sit on the GPU unused."""
    if vae is None:
        return None
    return copy.deepcopy(vae, memo={id(vae.decoder): None, id(vae.post_quant_conv): None})


def decoder_parts(model: AutoencoderKL) -> list[nn.Module]:
    """The decoder's blocks to compile: all but its last convolution, the layer W of the adaptive weight.

    A compiled module's backward is one graph that computes every gradient it has, so the two W-gradients of
    λ (``autograd.grad(recon, W, …)``) through a compiled decoder would each run the decoder's whole backward;
    with W eager they cost one weight-gradient convolution each, as in the eager step.
    """
    decoder = model.decoder
    return [module for name, child in decoder.named_children() if name != "conv_out"
            for module in (child if isinstance(child, nn.ModuleList) else [child])]


def augment(x01: torch.Tensor, blend_p: float, choices: tuple[torch.Tensor, torch.Tensor],
            channels_last: bool) -> torch.Tensor:
    """The batch after the blend augmentation, in the memory format the networks use."""
    out = blend_augment(x01, blend_p, choices=choices)
    return out.contiguous(memory_format=torch.channels_last) if channels_last else out


class DivergenceWatch:
    """Remembers, on the device, the first step whose logs were not all finite, and those logs.

    :meth:`update` costs a few small kernels and no host synchronisation; :meth:`first` reads the result back.
    """

    def __init__(self):
        self.keys: tuple[str, ...] = ()
        self.step: torch.Tensor | None = None
        self.values: torch.Tensor | None = None

    def update(self, step: int, logs: dict[str, torch.Tensor]) -> None:
        keys = tuple(logs)
        vector = torch.stack([v.float() for v in logs.values()])
        if keys != self.keys:  # the terms changed (the discriminator switched on): settle the old ones first
            found = self.first()
            if found is not None:
                return
            self.keys, self.step, self.values = keys, torch.full((), -1, device=vector.device), vector.clone()
        new = (self.step < 0) & ~torch.isfinite(vector).all()
        self.step = torch.where(new, torch.full_like(self.step, step), self.step)
        self.values = torch.where(new, vector, self.values)

    def first(self) -> tuple[int, dict[str, float]] | None:
        """(step, logs) of the first non-finite step seen, or None."""
        if self.step is None or int(self.step) < 0:
            return None
        return int(self.step), dict(zip(self.keys, self.values.tolist()))
