"""The trainer's step (``alphavae.training.step``) computes the reference formulation (``AlphaVAEObjective``,
written from method.md), only faster: same losses and same weights after several CPU steps, the adaptive
weight and the discriminator included.

Tolerance: relative 1e-4 on every logged value (the reference KL of two nearly equal Gaussians is a
difference of close numbers: 1e-9 changes in the weights show at 1e-5 there) and absolute 1e-6 on every weight after 4 steps (fp32 on a CPU;
the two differ only in summation order: batched encodes and LPIPS, and the surrogate backward of the adaptive
weight). The steps are SGD steps: Adam divides each gradient by its own running size, which turns the round-off
on gradients that are zero in exact arithmetic (a conv bias right before a GroupNorm) into steps of the full
learning rate, so weights after Adam would compare round-off, not the formulation.
"""

from __future__ import annotations

import dataclasses

import pytest
import torch
from diffusers import AutoencoderKL

from alphavae.losses import LossWeights, kl, perceptual
from alphavae.losses.augmentation import blend_augment, blend_choices
from alphavae.losses.objective import build_objective
from alphavae.metric.backbones import load_lpips
from alphavae.training.step import (DiscriminatorLoss, DivergenceWatch, GeneratorLoss, LossFunctions, global_draws,
                                    step_generator)

pytestmark = pytest.mark.usefixtures("one_thread")

STEPS = 4
#: Every term on, with KL weights large enough to move the weights, and the GAN from step 1.
WEIGHTS = LossWeights(perceptual=0.5, prior_kl=1e-3, reference_kl=1e-2, adversarial=0.5, disc_start=1, blend_p=0.5)


def tiny_rgb_vae() -> AutoencoderKL:
    torch.manual_seed(0)
    return AutoencoderKL(in_channels=3, out_channels=3, block_out_channels=(8, 16), layers_per_block=1,
                         latent_channels=4, norm_num_groups=8, down_block_types=("DownEncoderBlock2D",) * 2,
                         up_block_types=("UpDecoderBlock2D",) * 2, sample_size=32)


def images(n: int = 4, size: int = 32) -> torch.Tensor:
    g = torch.Generator().manual_seed(1)
    x = torch.rand(n, 4, size, size, generator=g)
    x[:, 3] = (x[:, 3] > 0.4).float() * torch.rand(n, size, size, generator=g).clamp(min=0.5)
    return x


def run(fast: bool, weights: LossWeights = WEIGHTS,
        compiled_losses: bool = False) -> tuple[list[dict[str, float]], dict[str, torch.Tensor]]:
    """STEPS steps of the reference formulation or of the step's modules (their loss functions compiled with
    ``compiled_losses``), from identical starts and draws."""
    lpips = load_lpips("alex") if weights.perceptual > 0 else None
    torch.manual_seed(2)  # the same discriminator initialisation for both
    vae, objective = build_objective(tiny_rgb_vae(), weights, "cpu", lpips, disc_channels=8)
    optimizer, disc = torch.optim.SGD(vae.parameters(), 1e-5), objective.discriminator
    disc_optimizer = torch.optim.SGD(disc.parameters(), 1e-2)
    gen_loss, disc_loss = GeneratorLoss(vae, objective, compiled_losses=compiled_losses), DiscriminatorLoss(disc)
    assert is_compiled(gen_loss.losses.perceptual) == compiled_losses  # the flag reaches the step
    history, batch = [], images()
    for step in range(STEPS):
        choices, _, latent_noise = global_draws(step_generator(0, step, "cpu"), len(batch), weights.blend_p, (4, 16, 16),
                                                0, 1, weights.latent_noise)
        # the reference draws its posterior sample as diffusers does, from the objective's generator
        noise = torch.randn((len(batch), 4, 16, 16), generator=torch.Generator().manual_seed(100 + step))
        x01 = blend_augment(batch, weights.blend_p, choices=choices)
        adversarial = objective.active("adversarial", step)
        if fast:
            loss, logs, recon = gen_loss(x01, noise, adversarial, latent_noise)
            logs = {k: float(v) for k, v in logs.items()}
        else:
            objective.generator = torch.Generator().manual_seed(100 + step)
            loss, logs, recon = objective.generator_step(vae, x01, step, latent_noise=latent_noise)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        if adversarial:
            d_loss, d_logs = (disc_loss(x01, recon) if fast else objective.discriminator_step(recon, x01, step))
            disc_optimizer.zero_grad()
            d_loss.backward()
            disc_optimizer.step()
            logs.update({k: float(v) for k, v in d_logs.items()})
        history.append(logs)
    state = {f"vae.{k}": v for k, v in vae.state_dict().items()}
    state.update({f"disc.{k}": v for k, v in disc.state_dict().items()})
    return history, state


#: The decoder fine-tune's additions (method.md §3.9): the alpha L1 term and the latent noise; then with L1 on the
#: premultiplied image in ABMSE's place.
FINETUNE = {"alpha_l1": 0.05, "latent_noise": 0.3}
FINETUNE_L1 = {**FINETUNE, "reconstruction_loss": "premultiplied_l1"}


@pytest.mark.parametrize(("free_overshoot", "compiled_losses", "finetune"),
                         [(False, False, None), (True, False, None), (False, True, None), (True, False, FINETUNE),
                          (False, True, FINETUNE), (True, True, FINETUNE_L1)])
def test_the_step_gives_the_reference_losses_and_weights(free_overshoot, compiled_losses, finetune):
    """The same tolerances with the loss functions compiled, but the reference KL's (the difference of close numbers
    above): compiled, Inductor's fp32 kernels sum in another order, and it is held within 1e-4 of its largest value
    in the run, as ``tests/test_training_graphs.py`` holds the compiled networks' (measured: 8e-4 relative at step 1).
    With ``finetune`` the alpha L1 term is on and the decoder sees noisy latents (and, with ``FINETUNE_L1``, the
    reconstruction term is L1 on the premultiplied image)."""
    weights = dataclasses.replace(WEIGHTS, free_alpha_overshoot=free_overshoot, **(finetune or {}))
    reference, ref_state = run(fast=False, weights=weights)
    fast, fast_state = run(fast=True, weights=weights, compiled_losses=compiled_losses)
    assert [set(a) for a in reference] == [set(b) for b in fast]
    assert "loss/adversarial" in fast[-1] and "disc/loss" in fast[-1] and "loss/reference_kl" in fast[-1]
    assert ("loss/alpha_l1" in fast[-1]) == bool(finetune)
    assert fast[-1]["adaptive_weight"] > 0
    for step, (a, b) in enumerate(zip(reference, fast)):
        for key in a:
            near_zero = compiled_losses and key.endswith("/reference_kl")  # its loss and its weighted value
            floor = 1e-4 * max(logs[key] for logs in reference) if near_zero else 1e-9
            assert b[key] == pytest.approx(a[key], rel=1e-4, abs=floor), (step, key)
    for key, value in ref_state.items():
        assert torch.allclose(fast_state[key], value, rtol=0, atol=1e-6), key
    start_vae, _ = build_objective(tiny_rgb_vae(), WEIGHTS, "cpu", None)
    moved = max(float((value - ref_state[f"vae.{key}"]).abs().max()) for key, value in start_vae.state_dict().items())
    assert moved > 1e-3  # the steps did train, by far more than the tolerance


def is_compiled(function) -> bool:
    """Whether ``function`` is a ``torch.compile`` wrapper (it keeps the function it wraps under this name)."""
    return hasattr(function, "_torchdynamo_orig_callable")


def test_compiled_loss_functions_wrap_the_eager_ones():
    _, objective = build_objective(tiny_rgb_vae(), WEIGHTS, "cpu", None, disc_channels=8)
    eager, compiled = LossFunctions.of(objective), LossFunctions.of(objective, compiled=True)
    expected = {"reconstruction": objective.reconstruction_term, "perceptual": perceptual.perceptual_loss,
                "prior_kl": kl.prior_kl, "kl_to_reference": kl.kl_to_reference,
                "reference_composites": kl.reference_composites}
    for name, function in expected.items():
        assert getattr(eager, name) == function and not is_compiled(getattr(eager, name)), name
        assert getattr(compiled, name)._torchdynamo_orig_callable == function, name


def test_free_alpha_overshoot_changes_what_the_step_trains():
    plain, plain_state = run(fast=True)
    free, free_state = run(fast=True, weights=dataclasses.replace(WEIGHTS, free_alpha_overshoot=True))
    assert plain[0]["total"] == free[0]["total"]  # the converted VAE's alpha starts exactly at +1: nothing to hold
    alpha_out = "vae.decoder.conv_out.weight"
    assert float((plain_state[alpha_out] - free_state[alpha_out]).abs().max()) > 1e-6  # the held pixels' gradient is gone


def test_without_reconstruction_terms_the_adaptive_weight_is_zero_in_both():
    weights = LossWeights(reconstruction=0.0, perceptual=0.0, prior_kl=1e-3, reference_kl=0.0, adversarial=1.0,
                          disc_start=0)
    reference, _ = run(fast=False, weights=weights)
    fast, _ = run(fast=True, weights=weights)
    assert all(entry["adaptive_weight"] == 0 for entry in reference + fast)
    assert fast[-1]["total"] == pytest.approx(reference[-1]["total"], rel=1e-5)


def test_global_draws_split_like_the_batch_over_processes():
    one = global_draws(step_generator(3, 7, "cpu"), 6, 0.5, (4, 2, 2), 0, 1, latent_noise=0.2)
    for rank in range(2):
        (chosen, picks), noise, extra = global_draws(step_generator(3, 7, "cpu"), 6, 0.5, (4, 2, 2), rank, 2, 0.2)
        assert torch.equal(chosen, one[0][0][rank::2]) and torch.equal(picks, one[0][1][rank::2])
        assert torch.equal(noise, one[1][rank::2]) and torch.equal(extra, one[2][rank::2])
    without = global_draws(step_generator(3, 7, "cpu"), 6, 0.5, (4, 2, 2), 0, 1)
    assert without[2] is None and torch.equal(without[1], one[1])  # the paper's draws do not change when it is off
    assert not torch.equal(global_draws(step_generator(3, 8, "cpu"), 6, 0.5, (4, 2, 2), 0, 1)[1], one[1])
    chosen, _ = blend_choices(10_000, 0.3, torch.Generator().manual_seed(0))
    assert chosen.float().mean() == pytest.approx(0.3, abs=0.02)


def test_divergence_watch_names_the_first_bad_step_without_reading_back_each_step():
    watch = DivergenceWatch()
    finite = {"loss/reconstruction": torch.tensor(1.0), "total": torch.tensor(1.0)}
    watch.update(0, finite)
    watch.update(1, {"loss/reconstruction": torch.tensor(float("nan")), "total": torch.tensor(float("nan"))})
    watch.update(2, {"loss/reconstruction": torch.tensor(float("inf")), "total": torch.tensor(1.0)})
    step, values = watch.first()
    assert step == 1 and values["loss/reconstruction"] != values["loss/reconstruction"]
    fresh = DivergenceWatch()
    fresh.update(0, finite)
    fresh.update(1, {**finite, "disc/loss": torch.tensor(0.5)})  # the discriminator switches on
    assert fresh.first() is None


def test_the_discriminator_step_scores_the_reconstruction_the_adversarial_term_scored():
    """D must be trained on exactly what the VAE's adversarial term shows it: the unclamped reconstruction.

    A clamped copy hides every value outside [-1, 1] from D, so the VAE can fool D there unopposed (the bug of
    the first 5,000-step run: the generator's hinge term read D(x̂) ≈ +6.5 while D's own step read −3.5).
    The VAE here is scaled to overshoot [-1, 1]; both formulations are checked.
    """
    vae, objective = build_objective(tiny_rgb_vae(), WEIGHTS, "cpu", None, disc_channels=8)
    with torch.no_grad():
        vae.decoder.conv_out.weight.mul_(50)
    seen: list[torch.Tensor] = []
    hook = objective.discriminator.register_forward_pre_hook(lambda _, args: seen.append(args[0].detach().clone()))
    x01 = images()
    for name, (generator_step, discriminator_step) in {
        "reference": (lambda: objective.generator_step(vae, x01, 1), lambda r: objective.discriminator_step(r, x01, 1)),
        "step": (lambda: GeneratorLoss(vae, objective)(x01, None, True), lambda r: DiscriminatorLoss(objective.discriminator)(x01, r)),
    }.items():
        seen.clear()
        _, _, recon = generator_step()
        shown = seen[-1]
        assert shown.abs().max() > 1.5, f"{name}: the test VAE should overshoot [-1, 1]"
        discriminator_step(recon)
        real, fake = seen[-2], seen[-1]
        torch.testing.assert_close(real, x01 * 2 - 1)
        torch.testing.assert_close(fake, shown, rtol=0, atol=0, msg=f"{name}: D trained on another tensor than the one the VAE's term scored")
    hook.remove()
