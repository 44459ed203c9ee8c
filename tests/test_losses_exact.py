"""Each loss term recomputed from its definition in docs/method.md §3, independently of the package's helpers,
and compared exactly (to float rounding). These tests are meant to fail on the plausible slips of a loss
implementation: a swapped KL direction, a missing division, one background instead of two, the [-1, 1] alpha
used as a weight, a sign in ABMSE's cross term, a wrong reduction, an adaptive weight upside down.
``scripts/mutation_check.py`` applies such slips and checks that these tests catch them.

The composites here are written out in [0, 1] (A = c·α + b·(1 − α)) and mapped to [-1, 1] only at the end,
so none of ``alphavae.blending`` / ``alphavae.losses.compositing`` is used to build the expected values.
"""

from __future__ import annotations

import math

import lpips
import pytest
import torch
from diffusers import AutoencoderKL
from torch.distributions import Normal, kl_divergence

from alphavae.blending import composite
from alphavae.losses import (AlphaVAEObjective, LossWeights, PatchDiscriminator, abmse_loss, adaptive_weight,
                             composite_vae, naive_mse_loss, prior_kl, reference_kl)
from alphavae.losses.reconstruction import IMAGENET_MOMENTS
from alphavae.vae.conversion import convert_to_rgba

pytestmark = pytest.mark.usefixtures("one_thread")

TINY = dict(block_out_channels=(8, 16), down_block_types=("DownEncoderBlock2D",) * 2,
            up_block_types=("UpDecoderBlock2D",) * 2, layers_per_block=1, norm_num_groups=4, latent_channels=4)

#: method.md §3.1: ImageNet pixel moments in [-1, 1], typed from the document (not imported).
IMAGENET_MEAN = (-0.0357, -0.0811, -0.1797)
IMAGENET_SECOND = (0.3163, 0.3060, 0.3634)


def _tiny(seed: int) -> AutoencoderKL:
    torch.manual_seed(seed)
    return AutoencoderKL(**TINY).eval()


@pytest.fixture(scope="module")
def reference() -> AutoencoderKL:
    """The frozen RGB reference: a tiny SD-family VAE with random but fixed weights."""
    return _tiny(0).requires_grad_(False)


@pytest.fixture(scope="module")
def model() -> AutoencoderKL:
    """The RGBA model: converted from a *different* RGB VAE, its alpha input made to matter, and its posterior
    variances pushed away from the reference's (so that KL(q‖r) and KL(r‖q) differ clearly)."""
    vae = convert_to_rgba(_tiny(1))
    g = torch.Generator().manual_seed(2)
    with torch.no_grad():
        vae.encoder.conv_in.weight[:, 3].normal_(0, 0.3, generator=g)
        vae.quant_conv.bias[TINY["latent_channels"]:] += 0.8  # the logvar half of the moments
    return vae


def _rgba(b: int = 3, size: int = 16, seed: int = 3) -> torch.Tensor:
    """RGBA in [-1, 1] with soft alpha plus fully transparent and fully opaque rows."""
    g = torch.Generator().manual_seed(seed)
    x = torch.rand(b, 4, size, size, generator=g) * 2 - 1
    x[:, 3, :4] = -1.0
    x[:, 3, 4:8] = 1.0
    return x


def _composite01(x: torch.Tensor, rgb01) -> torch.Tensor:
    """[A(x, b)] in [-1, 1], written out in [0, 1]: c·α + b·(1 − α) with α = (α̃ + 1) / 2."""
    x01 = (x + 1) / 2
    b = torch.as_tensor(rgb01, dtype=x.dtype).view(-1, 3, 1, 1) if not isinstance(rgb01, torch.Tensor) else rgb01
    a = x01[:, 3:4]
    return (x01[:, :3] * a + b * (1 - a)) * 2 - 1


def _normal(vae: AutoencoderKL, inputs: torch.Tensor) -> Normal:
    d = vae.encode(inputs).latent_dist
    return Normal(d.mean, d.std)


def _expected_reference_kl(model: AutoencoderKL, reference: AutoencoderKL, x: torch.Tensor) -> dict[str, torch.Tensor]:
    """method.md §3.4 from explicit encodes: per background KL(q_θ([A; 1]) ‖ q_ref(A)) summed / B, both
    directions, so a test can also show that the wrong variants are far from the right one."""
    out = {}
    for name, b in (("black", (0.0, 0.0, 0.0)), ("white", (1.0, 1.0, 1.0))):
        rgb = _composite01(x, b)
        q = _normal(model, torch.cat([rgb, torch.ones_like(rgb[:, :1])], 1))
        r = _normal(reference, rgb)
        out[name] = kl_divergence(q, r).sum() / x.shape[0]
        out[name + "_swapped"] = kl_divergence(r, q).sum() / x.shape[0]
    out["expected"] = (out["black"] + out["white"]) / 2
    return out


# --- reference KL -------------------------------------------------------------------------------------------


def test_reference_kl_equals_torch_kl_of_explicit_encodes_over_black_and_white(model, reference):
    x = _rgba()
    with torch.no_grad():
        got = reference_kl(model, reference, x)
        parts = _expected_reference_kl(model, reference, x)
    want = parts["expected"]
    assert got.item() == pytest.approx(want.item(), rel=1e-5)
    # the test can tell the plausible wrong versions apart (each is far from the right value):
    wrong = {"KL(ref ‖ model)": (parts["black_swapped"] + parts["white_swapped"]) / 2,
             "sum over backgrounds, not mean": parts["black"] + parts["white"],
             "black composite only": parts["black"],
             "white composite only": parts["white"]}
    for why, value in wrong.items():
        assert abs(value.item() - want.item()) > 0.1 * want.item(), why


def test_reference_kl_divides_by_the_batch_not_by_the_elements(model, reference):
    x = _rgba(b=4, seed=5)
    with torch.no_grad():
        one_by_one = torch.stack([reference_kl(model, reference, x[i:i + 1]) for i in range(4)])
        together = reference_kl(model, reference, x)
    assert together.item() == pytest.approx(one_by_one.mean().item(), rel=1e-5)
    assert together.item() > 1.0  # a sum over 4·8·8 latent elements, not a mean of them


def test_reference_kl_uses_the_opaque_composite_not_the_rgba_input(model, reference):
    """The model encodes [A(x, b); α = 1]: changing the colour hidden under α = 0 changes nothing."""
    x = _rgba()
    hidden = x.clone()
    hidden[:, :3, :4] = -hidden[:, :3, :4]  # rows 0-3 have α = 0: a different hidden colour, same composites
    with torch.no_grad():
        assert reference_kl(model, reference, hidden).item() == pytest.approx(reference_kl(model, reference, x).item(), rel=1e-6)


def test_reference_kl_backgrounds_are_a_parameter(model, reference):
    x = _rgba()
    with torch.no_grad():
        grey = reference_kl(model, reference, x, backgrounds=((0.5, 0.5, 0.5),))
        rgb = _composite01(x, (0.5, 0.5, 0.5))
        want = kl_divergence(_normal(model, torch.cat([rgb, torch.ones_like(rgb[:, :1])], 1)), _normal(reference, rgb)).sum() / 3
    assert grey.item() == pytest.approx(want.item(), rel=1e-5)


# --- prior KL -----------------------------------------------------------------------------------------------


def test_prior_kl_equals_torch_kl_to_the_standard_normal(model):
    x = _rgba(b=2)
    with torch.no_grad():
        post = model.encode(x).latent_dist
        q = Normal(post.mean, post.std)
        want = kl_divergence(q, Normal(torch.zeros_like(post.mean), torch.ones_like(post.std))).sum() / 2
        assert prior_kl(post).item() == pytest.approx(want.item(), rel=1e-5)


# --- compositing ----------------------------------------------------------------------------------------------


def test_composite_is_c_alpha_plus_b_one_minus_alpha():
    g = torch.Generator().manual_seed(7)
    x = torch.rand(2, 4, 5, 6, generator=g)
    b = (0.2, 0.6, 0.9)
    want = torch.stack([x[:, c] * x[:, 3] + b[c] * (1 - x[:, 3]) for c in range(3)], 1)
    torch.testing.assert_close(composite(x, b), want)
    torch.testing.assert_close(composite(x, torch.tensor(b).view(3, 1, 1)), want)
    torch.testing.assert_close(composite_vae(x * 2 - 1, b), want * 2 - 1)
    assert torch.equal(composite(torch.cat([x[:, :3], torch.ones_like(x[:, :1])], 1), b), x[:, :3])  # opaque
    assert torch.allclose(composite(torch.cat([x[:, :3], torch.zeros_like(x[:, :1])], 1), b),
                          torch.tensor(b).view(1, 3, 1, 1).expand(2, 3, 5, 6))  # transparent: the background


# --- ABMSE and naive MSE --------------------------------------------------------------------------------------


def _abmse_by_two_point_backgrounds(pred: torch.Tensor, target: torch.Tensor, mean, second) -> torch.Tensor:
    """E_b Σ‖A(x, b) − A(x̂, b)‖² / B for a background whose channel c is m_c ± s_c with probability ½ each
    (mean m_c, second moment E[b²]_c in [-1, 1]): only per-channel marginals enter a per-channel sum, so this
    is exactly the expectation over any distribution with these moments — computed by compositing twice."""
    m = torch.tensor(mean, dtype=torch.float64)
    s = torch.sqrt(torch.tensor(second, dtype=torch.float64) - m**2)
    total = 0.0
    for b in (m + s, m - s):
        b01 = ((b + 1) / 2).view(1, 3, 1, 1)
        err = _composite01(target.double(), b01) - _composite01(pred.double(), b01)
        total = total + 0.5 * err.square().sum()
    return total / pred.shape[0]


def _pair(b: int = 3, size: int = 8, seed: int = 11) -> tuple[torch.Tensor, torch.Tensor]:
    target = _rgba(b=b, size=size, seed=seed)
    g = torch.Generator().manual_seed(seed + 1)
    pred = (target + 0.4 * torch.randn(target.shape, generator=g)).clamp(-1, 1)
    return pred, target


def test_imagenet_moments_are_the_documented_ones():
    assert IMAGENET_MOMENTS.mean == IMAGENET_MEAN and IMAGENET_MOMENTS.second == IMAGENET_SECOND


def test_abmse_is_the_expected_composite_error_with_imagenet_moments():
    pred, target = _pair()
    want = _abmse_by_two_point_backgrounds(pred, target, IMAGENET_MEAN, IMAGENET_SECOND)
    assert abmse_loss(pred, target).item() == pytest.approx(want.item(), rel=1e-5)
    assert abmse_loss(pred, target, IMAGENET_MOMENTS).item() == pytest.approx(want.item(), rel=1e-5)


def test_abmse_per_pixel_formula_with_a_strong_mean():
    """A background set with a large E[b] so that a sign slip in −2·E[b]·P·Δ cannot hide."""
    from alphavae.losses.reconstruction import BackgroundMoments

    pred, target = _pair(seed=13)
    mean, second = (0.6, -0.5, 0.3), (0.5, 0.4, 0.2)
    want = _abmse_by_two_point_backgrounds(pred, target, mean, second)
    got = abmse_loss(pred, target, BackgroundMoments(mean, second))
    assert got.item() == pytest.approx(want.item(), rel=1e-5)
    flipped = _abmse_by_two_point_backgrounds(pred, target, tuple(-v for v in mean), second)
    assert abs(flipped.item() - want.item()) > 0.05 * want.item()  # E[b] matters in this example


def test_abmse_and_naive_mse_sum_over_elements_and_divide_by_the_batch():
    pred, target = _pair(b=4, seed=17)
    for loss in (abmse_loss, naive_mse_loss):
        whole = loss(pred, target).item()
        parts = [loss(pred[i:i + 1], target[i:i + 1]).item() for i in range(4)]
        assert whole == pytest.approx(sum(parts) / 4, rel=1e-5), loss.__name__
        assert whole > 1.0, loss.__name__  # a sum over 8·8 pixels, not a mean


def test_naive_mse_weighs_all_four_channels_in_vae_range():
    pred, target = _pair(seed=19)
    want = sum(((pred[:, c] - target[:, c]) ** 2).sum() for c in range(4)) / pred.shape[0]
    assert naive_mse_loss(pred, target).item() == pytest.approx(want.item(), rel=1e-6)
    alpha_only = target.clone()
    alpha_only[:, 3] = target[:, 3] - 0.5  # Δ̃ = 0.5 on every pixel: naive MSE pays 0.25 per pixel
    assert naive_mse_loss(alpha_only, target).item() == pytest.approx(0.25 * 8 * 8, rel=1e-6)


# --- adaptive weight ------------------------------------------------------------------------------------------


def _linear_losses(rec_grad, gan_grad):
    """Two losses linear in W with the given gradients (so their norms are known exactly)."""
    w = torch.zeros(len(rec_grad), requires_grad=True)
    rec = (w * torch.tensor(rec_grad)).sum()
    gan = (w * torch.tensor(gan_grad)).sum()
    return rec, gan, w


def test_adaptive_weight_is_the_norm_ratio_with_epsilon_1e_4():
    rec, gan, w = _linear_losses([0.3, 0.4], [1e-4, 0.0])  # ‖∇rec‖ = 0.5, ‖∇gan‖ = 1e-4
    lam = adaptive_weight(rec, gan, w)
    assert lam.item() == pytest.approx(0.5 / (1e-4 + 1e-4), rel=1e-4)  # 2500; without ε it would be 5000
    assert not lam.requires_grad
    rec, gan, w = _linear_losses([0.0, 2.0], [0.6, 0.8])  # 2 / (1 + 1e-4)
    assert adaptive_weight(rec, gan, w).item() == pytest.approx(2 / (1 + 1e-4), rel=1e-5)


def test_adaptive_weight_is_clamped_at_1e4():
    rec, gan, w = _linear_losses([3.0, 4.0], [1e-4, 0.0])  # 5 / 2e-4 = 25 000 → clamped
    assert adaptive_weight(rec, gan, w).item() == pytest.approx(1e4)
    rec, gan, w = _linear_losses([0.3, 0.4], [0.0, 0.0])  # 0.5 / 1e-4 = 5000: under the clamp
    assert adaptive_weight(rec, gan, w).item() == pytest.approx(5000, rel=1e-4)


# --- the whole objective ---------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def plumbing_lpips() -> lpips.LPIPS:
    """A *random-backbone* LPIPS: checks the objective's arithmetic only, never a reported number."""
    torch.manual_seed(0)
    return lpips.LPIPS(net="alex", pretrained=True, pnet_rand=True, verbose=False).eval().requires_grad_(False)


def test_objective_total_is_the_weighted_sum_of_each_term_recomputed(model, reference, plumbing_lpips):
    """L_G = w_rec·ABMSE + w_p·LPIPS + w_kl·KL_prior + w_ref·KL_ref + w_adv·λ·L_GAN, each term from its
    definition, with non-default weights so that every weight and the adaptive weight must be applied."""
    vae = convert_to_rgba(_tiny(1)).train().requires_grad_(True)
    with torch.no_grad():
        vae.load_state_dict(model.state_dict())
    torch.manual_seed(4)
    disc = PatchDiscriminator(base_channels=8).eval()
    weights = LossWeights(reconstruction=1e-3, perceptual=0.3, prior_kl=1e-3, reference_kl=0.05, adversarial=0.5,
                          disc_start=3)
    obj = AlphaVAEObjective(weights, reference_vae=reference, lpips_model=plumbing_lpips, discriminator=disc,
                            sample_posterior=False)
    x01 = (_rgba(b=2, size=32, seed=23) + 1) / 2
    loss, logs, returned = obj.generator_step(vae, x01, step=3)

    x = x01 * 2 - 1
    post = vae.encode(x).latent_dist
    recon = vae.decode(post.mean).sample
    rec = _abmse_by_two_point_backgrounds(recon, x, IMAGENET_MEAN, IMAGENET_SECOND).float()
    perc = sum(plumbing_lpips(_composite01(recon, b), _composite01(x, b)).mean() for b in ((0, 0, 0), (1, 1, 1))) / 2
    prior = kl_divergence(Normal(post.mean, post.std), Normal(0.0, 1.0)).sum() / 2
    with torch.no_grad():
        ref = _expected_reference_kl(vae, reference, x)["expected"]
    gan = -disc(recon).mean()
    w_last = vae.decoder.conv_out.weight
    g_rec = torch.autograd.grad(1e-3 * rec + 0.3 * perc, w_last, retain_graph=True)[0]
    g_gan = torch.autograd.grad(gan, w_last, retain_graph=True)[0]
    lam = min(float(g_rec.norm() / (g_gan.norm() + 1e-4)), 1e4)

    expected = {"reconstruction": rec.item(), "perceptual": perc.item(), "prior_kl": prior.item(),
                "reference_kl": ref.item(), "adversarial": gan.item()}
    for term, value in expected.items():
        assert logs[f"loss/{term}"] == pytest.approx(value, rel=1e-4, abs=1e-6), term
    assert logs["adaptive_weight"] == pytest.approx(lam, rel=1e-3)
    total = (1e-3 * expected["reconstruction"] + 0.3 * expected["perceptual"] + 1e-3 * expected["prior_kl"]
             + 0.05 * expected["reference_kl"] + 0.5 * lam * expected["adversarial"])
    assert loss.item() == pytest.approx(total, rel=1e-4)
    assert logs["weighted/adversarial"] == pytest.approx(0.5 * lam * expected["adversarial"], rel=1e-3)
    torch.testing.assert_close(returned, recon.detach())  # unclamped: what the discriminator step scores
    assert math.isfinite(logs["total"]) and logs["total"] == pytest.approx(loss.item(), rel=1e-6)


def test_objective_adversarial_term_waits_for_disc_start(model, reference):
    vae = convert_to_rgba(_tiny(1))
    with torch.no_grad():
        vae.load_state_dict(model.state_dict())
    obj = AlphaVAEObjective(LossWeights(disc_start=5), reference_vae=reference,
                            discriminator=PatchDiscriminator(base_channels=8), sample_posterior=False)
    x01 = (_rgba(b=2, size=32, seed=29) + 1) / 2
    with torch.no_grad():
        loss4, logs4, _ = obj.generator_step(vae, x01, step=4)
    assert "loss/adversarial" not in logs4
    assert loss4.item() == pytest.approx(sum(v for k, v in logs4.items() if k.startswith("weighted/")), rel=1e-5)


def test_objective_decodes_a_posterior_sample_when_asked(model):
    """``sample_posterior=True`` (the training default) decodes z = μ + σ·ε with ε from the given generator."""
    vae = convert_to_rgba(_tiny(1))
    with torch.no_grad():
        vae.load_state_dict(model.state_dict())
    weights = LossWeights(perceptual=0, prior_kl=0, reference_kl=0, adversarial=0)
    obj = AlphaVAEObjective(weights, generator=torch.Generator().manual_seed(8))
    x01 = (_rgba(b=2, size=16, seed=31) + 1) / 2
    with torch.no_grad():
        _, _, recon = obj.generator_step(vae, x01, step=0)
        post = vae.encode(x01 * 2 - 1).latent_dist
        eps = torch.randn(post.mean.shape, generator=torch.Generator().manual_seed(8))
        sampled = vae.decode(post.mean + post.std * eps).sample
        mode = vae.decode(post.mean).sample
    torch.testing.assert_close(recon, sampled, rtol=0, atol=1e-5)
    assert (recon - mode).abs().max().item() > 1e-3
