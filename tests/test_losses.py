"""Every loss term against an independent computation: closed forms vs sampling, zeros at a perfect
reconstruction, gradients where (and only where) they should be."""

from __future__ import annotations

import math

import lpips
import pytest
import torch
from diffusers import AutoencoderKL
from diffusers.models.autoencoders.vae import DiagonalGaussianDistribution

from alphavae.blending import BACKGROUNDS
from alphavae.losses.alpha_l1 import alpha_l1_loss
from alphavae.losses.premultiplied_l1 import premultiplied_l1_loss, premultiplied_l1_map
from alphavae.losses.latent_noise import add_latent_noise, latent_noise_draws
from alphavae.vae.conversion import convert_to_rgba
from alphavae.losses import (BLACK_WHITE, GRID_COLOURS, IMAGENET_MOMENTS, PUBLISHED_GREY_WHITE, AlphaVAEObjective,
                             BackgroundMoments, LossWeights, PatchDiscriminator, abmse_loss, abmse_map,
                             adaptive_weight, blend_augment, composite_vae, gaussian_kl, generator_adversarial_loss,
                             hinge_discriminator_loss, hold_saturated_alpha, moments_of, naive_mse_loss, perceptual_loss, prior_kl,
                             reference_kl, sampled_composite_loss)

TINY = dict(block_out_channels=(8, 16), down_block_types=("DownEncoderBlock2D",) * 2,
            up_block_types=("UpDecoderBlock2D",) * 2, layers_per_block=1, norm_num_groups=4, latent_channels=4)


def _pair(seed: int = 0, b: int = 2, size: int = 8) -> tuple[torch.Tensor, torch.Tensor]:
    """A target and a prediction, RGBA in [-1, 1], with some fully transparent target pixels."""
    g = torch.Generator().manual_seed(seed)
    target = torch.rand(b, 4, size, size, generator=g) * 2 - 1
    target[:, 3, :2] = -1.0
    pred = (target + 0.3 * torch.randn(target.shape, generator=g)).clamp(-1.2, 1.2)
    return pred, target


def _tiny_rgb(seed: int = 0) -> AutoencoderKL:
    torch.manual_seed(seed)
    return AutoencoderKL(**TINY).eval()


# --- ABMSE -------------------------------------------------------------------------------------------------


def test_moments_of_known_sets():
    grid = moments_of(GRID_COLOURS)  # {-1, 0, 1} uniformly per channel: mean 0, E[b²] = 2/3
    assert grid.mean == pytest.approx((0, 0, 0), abs=1e-12) and grid.second == pytest.approx((2 / 3,) * 3)
    m = moments_of([[0, 0, 0], [1, 1, 1]], weights=[3, 1])  # -1 w.p. ¾, +1 w.p. ¼
    assert m.mean == pytest.approx((-0.5,) * 3) and m.second == pytest.approx((1.0,) * 3)
    with pytest.raises(ValueError, match="weights"):
        moments_of([[0, 0, 0]], weights=[1, 2])
    with pytest.raises(ValueError, match="variance"):
        BackgroundMoments((0.9, 0, 0), (0.1, 1, 1))


def test_abmse_equals_exact_average_over_a_finite_set_of_backgrounds():
    pred, target = _pair()
    colours = torch.tensor(list(BACKGROUNDS.values()))
    exact = sampled_composite_loss(pred, target, colours).double().mean()
    assert abmse_loss(pred, target, moments_of(colours)).item() == pytest.approx(exact.item(), rel=1e-5)


@pytest.mark.parametrize("distribution", ["grid", "uniform"])
def test_abmse_equals_monte_carlo_mean_within_sampling_error(distribution):
    pred, target = _pair(seed=1)
    g = torch.Generator().manual_seed(7)
    n = 4000
    if distribution == "grid":  # the 27 grid colours with unequal probabilities ∝ 1..27 (so E[b] ≠ 0)
        probs = torch.arange(1.0, 28.0) / torch.arange(1.0, 28.0).sum()
        samples = GRID_COLOURS[torch.multinomial(probs, n, replacement=True, generator=g)]
        b = GRID_COLOURS.double() * 2 - 1
        mean, second = (probs.double()[:, None] * b).sum(0), (probs.double()[:, None] * b * b).sum(0)
        moments = BackgroundMoments(tuple(mean.tolist()), tuple(second.tolist()))
    else:  # b ~ U[0.25, 1]³, i.e. U[-0.5, 1] in VAE space: E[b] = 0.25, E[b²] = (1 + 0.125) / 4.5 = 0.25
        samples = 0.25 + 0.75 * torch.rand(n, 3, generator=g)
        moments = BackgroundMoments((0.25,) * 3, (0.25,) * 3)
    per_background = sampled_composite_loss(pred, target, samples).double()
    mc, se = per_background.mean().item(), per_background.std().item() / math.sqrt(n)
    analytic = abmse_loss(pred, target, moments).item()
    assert se > 0 and abs(mc - analytic) < 4 * se, (mc, analytic, se)
    wrong = abmse_loss(pred, target, BackgroundMoments((0.0,) * 3, moments.second)).item()
    assert abs(mc - wrong) > 4 * se  # the test can tell the E[b] term apart


def test_abmse_ignores_colour_under_zero_alpha_but_naive_mse_does_not():
    pred, target = _pair(seed=2)
    pred[:, 3, :2] = -1.0  # predicted alpha 0 where the target is transparent
    pred.requires_grad_(True)
    abmse_loss(pred, target).backward()
    g_abmse = pred.grad.clone()
    pred.grad = None
    naive_mse_loss(pred, target).backward()
    hidden = (slice(None), slice(0, 3), slice(0, 2))
    assert torch.all(g_abmse[hidden] == 0)
    assert g_abmse[:, :3, 2:].abs().sum() > 0 and g_abmse[:, 3].abs().sum() > 0
    assert pred.grad[hidden].abs().sum() > 0
    changed = target.clone()
    changed[:, :3, :2] = torch.rand_like(changed[:, :3, :2])  # different hidden colour, same composites
    assert abmse_loss(pred, changed).item() == pytest.approx(abmse_loss(pred, target).item(), rel=1e-6)


def test_reconstruction_losses_are_zero_at_a_perfect_reconstruction_and_use_the_paper_reduction():
    pred, target = _pair()
    assert abmse_loss(target, target).item() == 0 and naive_mse_loss(target, target).item() == 0
    manual = ((pred - target) ** 2).sum() / pred.shape[0]
    assert naive_mse_loss(pred, target).item() == pytest.approx(manual.item(), rel=1e-6)
    assert abmse_map(pred, target, IMAGENET_MOMENTS).shape == (2, 8, 8)


# --- compositing and perceptual -----------------------------------------------------------------------------


def test_composite_in_vae_range_matches_composite_in_unit_range():
    _, x = _pair()
    x01 = (x + 1) / 2
    want = x01[:, :3] * x01[:, 3:] + torch.tensor([0.2, 0.5, 1.0]).view(3, 1, 1) * (1 - x01[:, 3:])
    torch.testing.assert_close(composite_vae(x, (0.2, 0.5, 1.0)), want * 2 - 1)


def test_published_pair_is_grey_and_white():
    _, x = _pair()
    x[:, 3] = -1.0  # fully transparent: the composite is the background itself
    assert torch.all(composite_vae(x, BLACK_WHITE[0]) == -1) and torch.all(composite_vae(x, PUBLISHED_GREY_WHITE[0]) == 0)


@pytest.fixture(scope="module")
def plumbing_lpips() -> lpips.LPIPS:
    """A *random-backbone* LPIPS: for shapes and gradients only, never a reported number or a training loss."""
    torch.manual_seed(0)
    return lpips.LPIPS(net="alex", pretrained=True, pnet_rand=True, verbose=False).eval().requires_grad_(False)


def test_perceptual_plumbing(plumbing_lpips):
    pred, target = _pair(size=32)
    assert perceptual_loss(target, target, plumbing_lpips).item() == pytest.approx(0.0, abs=1e-6)
    pred.requires_grad_(True)
    loss = perceptual_loss(pred, target, plumbing_lpips)
    loss.backward()
    assert loss.item() > 0 and pred.grad.abs().sum() > 0
    one = sum(plumbing_lpips(composite_vae(pred, b), composite_vae(target, b)).mean() for b in BLACK_WHITE) / 2
    assert loss.item() == pytest.approx(one.item(), rel=1e-5)


# --- KL terms -----------------------------------------------------------------------------------------------


def test_gaussian_kl_matches_torch_distributions():
    g = torch.Generator().manual_seed(3)
    mp, mq = torch.randn(50, generator=g), torch.randn(50, generator=g)
    lp, lq = torch.randn(50, generator=g), torch.randn(50, generator=g)
    want = torch.distributions.kl_divergence(torch.distributions.Normal(mp, (0.5 * lp).exp()),
                                             torch.distributions.Normal(mq, (0.5 * lq).exp()))
    torch.testing.assert_close(gaussian_kl(mp, lp, mq, lq), want, rtol=1e-5, atol=1e-6)


def test_prior_kl_matches_diffusers_and_is_zero_at_the_prior():
    g = torch.Generator().manual_seed(4)
    post = DiagonalGaussianDistribution(torch.randn(3, 8, 4, 4, generator=g))
    assert prior_kl(post).item() == pytest.approx(post.kl().mean().item(), rel=1e-5)
    assert prior_kl(DiagonalGaussianDistribution(torch.zeros(3, 8, 4, 4))).item() == 0


def test_reference_kl_is_zero_for_the_untrained_conversion_and_positive_after_a_change():
    rgb = _tiny_rgb()
    rgba = convert_to_rgba(rgb)
    _, x = _pair(size=16)
    assert reference_kl(rgba, rgb, x).item() == pytest.approx(0.0, abs=1e-6)
    with torch.no_grad():
        rgba.encoder.conv_in.weight[:, 3] += 0.5  # now the alpha input (always +1 here) moves the latent
    rgba.requires_grad_(True)
    loss = reference_kl(rgba, rgb, x)
    loss.backward()
    assert loss.item() > 0 and rgba.encoder.conv_in.weight.grad.abs().sum() > 0
    assert all(p.grad is None for p in rgb.parameters())


# --- adversarial --------------------------------------------------------------------------------------------


def test_patch_discriminator_shape_and_hinge_losses():
    d = PatchDiscriminator(base_channels=8)
    assert d(torch.zeros(2, 4, 64, 64)).shape == (2, 1, 6, 6)
    assert hinge_discriminator_loss(torch.full((4,), 1.5), torch.full((4,), -2.0)).item() == 0
    assert hinge_discriminator_loss(torch.zeros(4), torch.zeros(4)).item() == pytest.approx(1.0)
    assert generator_adversarial_loss(torch.tensor([1.0, 3.0])).item() == -2.0


def test_adaptive_weight_matches_its_definition():
    torch.manual_seed(5)
    w = torch.randn(6, 5, requires_grad=True)
    x = torch.randn(3, 5)
    rec = (x @ w.T).square().sum()
    gan = -(x @ w.T).tanh().mean()
    g_rec = torch.autograd.grad((x @ w.T).square().sum(), w)[0]
    g_gan = torch.autograd.grad(-(x @ w.T).tanh().mean(), w)[0]
    want = g_rec.norm() / (g_gan.norm() + 1e-4)
    lam = adaptive_weight(rec, gan, w)
    assert not lam.requires_grad and lam.item() == pytest.approx(want.item(), rel=1e-5)
    (rec + gan).backward()  # the graph was kept for the real backward pass
    assert adaptive_weight((x @ w.T).square().sum(), 0 * (x @ w.T).sum(), w).item() == 1e4  # clamped


# --- blend augmentation -------------------------------------------------------------------------------------


def test_blend_augment_probability_colours_and_reproducibility():
    g = torch.Generator().manual_seed(6)
    x = torch.rand(2000, 4, 2, 2, generator=g)
    out = blend_augment(x, generator=torch.Generator().manual_seed(1))
    again = blend_augment(x, generator=torch.Generator().manual_seed(1))
    assert torch.equal(out, again)
    replaced = (out != x).flatten(1).any(1)
    share, se = replaced.float().mean().item(), math.sqrt(0.3 * 0.7 / len(x))
    assert abs(share - 0.3) < 4 * se
    r = out[replaced]
    assert torch.all(r[:, 3] == 1)
    xr = x[replaced]
    b = (r[:, :3] - xr[:, :3] * xr[:, 3:]) / (1 - xr[:, 3:])  # solve A(x, b) for b
    b = b[..., 0, 0]
    assert torch.cdist(b, GRID_COLOURS).min(1).values.max() < 1e-3
    assert torch.equal(blend_augment(x, p=0.0), x) and torch.all(blend_augment(x, p=1.0)[:, 3] == 1)
    with pytest.raises(ValueError, match="p="):
        blend_augment(x, p=1.5)


# --- the objective ------------------------------------------------------------------------------------------


def test_loss_weights_defaults_and_validation():
    w = LossWeights()
    assert (w.reconstruction, w.perceptual, w.prior_kl, w.reference_kl, w.adversarial, w.disc_start, w.blend_p) == (
        1.0, 0.5, 1e-6, 1e-16, 1.0, 4000, 0.3)
    assert w.reconstruction_loss == "abmse" and LossWeights.from_dict(w.to_dict()) == w
    with pytest.raises(ValueError, match="prior_kl"):
        LossWeights(prior_kl=-1)
    with pytest.raises(ValueError, match="reconstruction_loss"):
        LossWeights(reconstruction_loss="l1")
    with pytest.raises(ValueError, match="lr"):
        LossWeights.from_dict({"lr": 1})


def test_objective_logs_each_term_and_skips_missing_networks():
    rgb = _tiny_rgb()
    vae = convert_to_rgba(rgb).train().requires_grad_(True)
    disc = PatchDiscriminator(base_channels=8)
    weights = LossWeights(disc_start=2, prior_kl=1e-3, reference_kl=1e-2)
    obj = AlphaVAEObjective(weights, reference_vae=rgb, discriminator=disc, generator=torch.Generator().manual_seed(0))
    assert obj.notes == ["perceptual skipped: no LPIPS model (run `alphavae weights fetch` for the ImageNet backbones)"]
    x01 = (_pair(size=32)[1] + 1) / 2

    loss, logs, recon = obj.generator_step(vae, x01, step=0)
    assert "loss/adversarial" not in logs and "loss/perceptual" not in logs
    assert recon.shape == x01.shape and not recon.requires_grad
    for term in ("reconstruction", "prior_kl", "reference_kl"):
        assert logs[f"weighted/{term}"] == pytest.approx(getattr(weights, term) * logs[f"loss/{term}"], rel=1e-5)
    assert logs["total"] == pytest.approx(sum(v for k, v in logs.items() if k.startswith("weighted/")), rel=1e-5)
    d_loss, d_logs = obj.discriminator_step(recon, x01, step=0)
    assert d_loss.item() == 0 and not d_loss.requires_grad and d_logs == {}

    loss, logs, recon = obj.generator_step(vae, x01, step=2)
    assert logs["adaptive_weight"] > 0
    assert logs["weighted/adversarial"] == pytest.approx(logs["adaptive_weight"] * logs["loss/adversarial"], rel=1e-4)
    loss.backward()
    assert all(p.grad is None for p in disc.parameters())  # the generator step leaves D alone
    assert vae.decoder.conv_out.weight.grad is not None
    d_loss, d_logs = obj.discriminator_step(recon, x01, step=2)
    d_loss.backward()
    assert d_logs["disc/loss"] > 0 and all(p.grad is not None for p in disc.parameters())


def test_objective_with_mse_and_zero_weights():
    vae = convert_to_rgba(_tiny_rgb())
    obj = AlphaVAEObjective(LossWeights(reconstruction_loss="mse", perceptual=0, prior_kl=0), sample_posterior=False)
    assert "perceptual skipped: weight is 0" in obj.notes and "prior_kl skipped: weight is 0" in obj.notes
    x01 = (_pair(size=16)[1] + 1) / 2
    with torch.no_grad():
        loss, logs, _ = obj.generator_step(vae, x01, step=10**6)
        recon = vae(x01 * 2 - 1).sample
    assert set(logs) == {"loss/reconstruction", "weighted/reconstruction", "total"}
    assert logs["total"] == pytest.approx(naive_mse_loss(recon, x01 * 2 - 1).item(), rel=1e-5)


def test_objective_without_reconstruction_terms_gives_the_gan_no_weight():
    vae = convert_to_rgba(_tiny_rgb()).train().requires_grad_(True)
    obj = AlphaVAEObjective(LossWeights(reconstruction=0, perceptual=0, prior_kl=0, disc_start=0),
                            discriminator=PatchDiscriminator(base_channels=8))
    assert "reconstruction skipped: weight is 0" in obj.notes
    loss, logs, _ = obj.generator_step(vae, (_pair(size=32)[1] + 1) / 2, step=0)
    assert "loss/reconstruction" not in logs and logs["adaptive_weight"] == 0 and loss.item() == 0


def test_saturated_alpha_is_held_only_where_it_overshoots_its_target_s_bound():
    # transparent ×2, opaque ×2, soft ×2, opaque after a float resize, nearly but not saturated (3/255 in)
    target = torch.zeros(1, 4, 1, 8)
    target[0, 3, 0] = torch.tensor([-1.0, -1.0, 1.0, 1.0, 0.2, 0.2, 0.9999998, 1 - 3 / 255])
    pred = torch.randn(1, 4, 1, 8)
    pred[0, 3, 0] = torch.tensor([-1.2, -0.9, 1.3, 0.9, 1.3, -1.2, 1.1, 1.1])
    pred.requires_grad_(True)
    held = hold_saturated_alpha(pred, target)
    assert held[0, 3, 0].tolist() == pytest.approx([-1.0, -0.9, 1.0, 0.9, 1.3, -1.2, 1.0, 1.1])
    assert torch.equal(held[:, :3], pred[:, :3])
    held[:, 3].sum().backward()
    assert pred.grad[0, 3, 0].tolist() == [0.0, 1.0, 0.0, 1.0, 1.0, 1.0, 0.0, 1.0]  # overshoot past a saturated target: no gradient


@pytest.mark.parametrize("free", [False, True])
def test_with_free_overshoot_a_noisy_saturated_alpha_settles_past_the_bound(free):
    """Why the option exists: fit one alpha value to a transparent target (-1) through decoder-like noise. With
    the plain squared error it centres on -1 and about half the noisy outputs stay inside (soft after the clamp);
    with the overshoot held, it moves past -1 and nearly every output clamps to exactly 0."""
    noise = 0.05 * torch.randn(4096, generator=torch.Generator().manual_seed(0))
    a = torch.zeros((), requires_grad=True)
    target = -torch.ones(1, 4, 1, 4096)
    optimizer = torch.optim.SGD([a], lr=0.5)
    for _ in range(400):
        pred = torch.cat([torch.zeros(1, 3, 1, 4096), (a + noise).view(1, 1, 1, -1)], dim=1)
        seen = hold_saturated_alpha(pred, target) if free else pred
        loss = (seen - target).square().mean()
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    inside = float(((a.detach() + noise) > -1).float().mean())
    assert inside < 0.05 if free else 0.35 < inside < 0.65


def test_alpha_l1_is_the_summed_absolute_alpha_error_per_image_and_ignores_colour():
    target = torch.zeros(2, 4, 4, 4)
    pred = target.clone()
    pred[:, :3] = 0.7  # colour alone costs nothing
    assert alpha_l1_loss(pred, target).item() == 0
    pred[0, 3, 0, 0], pred[1, 3, :2, :2] = 0.5, -0.25  # one pixel off by 0.5, four by 0.25
    assert alpha_l1_loss(pred, target).item() == pytest.approx((0.5 + 4 * 0.25) / 2)
    with pytest.raises(ValueError, match="shapes differ"):
        alpha_l1_loss(pred, target[:, :, :2])


def test_premultiplied_l1_is_the_absolute_error_of_colour_times_alpha_and_of_alpha():
    target = torch.full((2, 4, 3, 3), -1.0)  # transparent, black
    target[0, :, 0, 0] = torch.tensor([1.0, 0.0, -1.0, 1.0])  # one opaque pixel: R = 1, G = ½, B = 0 (in [0, 1])
    pred = target.clone()
    pred[1, :3] = 0.6  # colour under α = 0 costs nothing
    assert premultiplied_l1_loss(pred, target).item() == 0
    pred[0, :, 0, 0] = torch.tensor([0.5, 0.0, -1.0, 0.0])  # α̂ = ½ (α̃ off by 1): ĉ·α̂ = (0.25, 0, −0.5)
    pred[1, 3, 2, 2] = -0.5  # α̂ = ¼ over colour 0.6: ĉ·α̂ = 0.15 per channel, α̃ off by 0.5
    want = ((1 - 0.25) + 0 + (-1 + 0.5) * -1 + 1.0) + (3 * 0.15 + 0.5)
    assert premultiplied_l1_loss(pred, target).item() == pytest.approx(want / 2)
    assert premultiplied_l1_map(pred, target).shape == (2, 3, 3)
    with pytest.raises(ValueError, match=r"\(B, 4, H, W\)"):
        premultiplied_l1_loss(pred[:, :3], target[:, :3])


def test_the_objective_s_reconstruction_term_follows_reconstruction_loss():
    pred, target = _pair()
    terms = {name: AlphaVAEObjective(LossWeights(reconstruction_loss=name)).reconstruction_term(pred, target)
             for name in ("abmse", "mse", "premultiplied_l1")}
    assert terms["abmse"] == abmse_loss(pred, target) and terms["mse"] == naive_mse_loss(pred, target)
    assert terms["premultiplied_l1"] == premultiplied_l1_loss(pred, target)
    assert len({float(v) for v in terms.values()}) == 3


def test_latent_noise_is_in_units_of_each_channel_s_spread_and_agrees_over_processes():
    g = torch.Generator().manual_seed(0)
    z = torch.randn(6, 3, 5, 5, generator=g) * torch.tensor([0.1, 1.0, 10.0]).view(1, 3, 1, 1) + 4.0
    ones = torch.ones_like(z)
    step = add_latent_noise(z, ones) - z
    sigma = z.transpose(0, 1).reshape(3, -1).std(dim=1, unbiased=False)
    assert torch.allclose(step, sigma.view(1, 3, 1, 1).expand_as(z), rtol=1e-4)  # σ_c per channel, not the mean's 4
    halves = (z[:3], z[3:])  # two processes: their moments averaged give the whole batch's σ
    moments = [torch.stack([h.double().mean(dim=(0, 2, 3)), h.double().square().mean(dim=(0, 2, 3))]) for h in halves]
    both = (moments[0] + moments[1]) / 2
    step0 = add_latent_noise(halves[0], ones[:3], reduce_mean=lambda m: both) - halves[0]
    assert torch.allclose(step0, step[:3], rtol=1e-4)
    draws = latent_noise_draws(64, (1, 16, 16), 0.2, torch.Generator().manual_seed(1))
    per_image = draws.flatten(1).std(dim=1)  # one s per image: the images' spreads run over [0, 0.2]
    assert float(per_image.min()) < 0.03 and float(per_image.max()) > 0.17 and float(per_image.max()) < 0.25
    assert float(draws.square().mean().sqrt()) == pytest.approx(0.2 / math.sqrt(3), rel=0.15)  # E[s²] = s_max²/3
    with pytest.raises(ValueError, match="latent_noise"):
        LossWeights(latent_noise=-0.1)
