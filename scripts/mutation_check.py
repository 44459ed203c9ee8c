"""Mutation check: apply deliberate bugs to a copy of the package and check that the tests catch each one.

Each mutation names a file, an exact snippet of its current source (which must occur exactly once), the
buggy replacement, and the few test files or test ids that should fail on it. The script copies the
project (``alphavae/``, ``tests/``, ``conftest.py``, ``data/``, ``configs/``, ``results/``, ``pyproject.toml``,
``README.md``, ``docs/``) into a temporary folder once per worker; for each mutation it replaces the snippet
there, runs the equivalent of

    cd <copy> && PYTHONPATH=<copy> python -m pytest -x -q -p no:randomly -p no:cacheprovider -o addopts="" <tests>

and restores the file. A mutation is *caught* when pytest fails. Before the mutations, each worker runs its
selections on the unmodified copy: they must all pass, or a "caught" would mean nothing (exit status 2).

Speed: a worker imports torch, diffusers, lpips, … once and forks one child per pytest run (the child imports
``alphavae`` fresh from the mutated copy), so a run costs its tests, not ~10 s of third-party imports.

    python scripts/mutation_check.py              # all mutations, 2 at a time
    python scripts/mutation_check.py --list       # the mutations and their tests, nothing run
    python scripts/mutation_check.py --only reference_kl_swapped,abmse_cross_term_sign --jobs 1

Exit status 0 when every mutation is caught; 1 when one is missed or its snippet is not found exactly
once (so that a refactor moving the code is noticed and the list updated); 2 when the baseline fails.
"""

from __future__ import annotations

import argparse
import gc
import importlib
import json
import os
import signal
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
#: What a copy holds: the package, the tests and what they read.
COPIED = ("alphavae", "tests", "conftest.py", "data", "configs", "results", "pyproject.toml", "README.md", "docs")


@dataclass(frozen=True)
class Mutation:
    name: str
    file: str
    original: str
    replacement: str
    tests: tuple[str, ...]
    why: str = ""


LX = "tests/test_losses_exact.py"
L = "tests/test_losses.py"
M = "tests/test_metrics.py"
C = "tests/test_conversion.py"

MUTATIONS: tuple[Mutation, ...] = (
    # --- compositing -----------------------------------------------------------------------------------------
    Mutation("composite_premultiplied", "alphavae/blending.py",
             "return colour * alpha + b * (1 - alpha)", "return colour + b * (1 - alpha)",
             (f"{LX}::test_composite_is_c_alpha_plus_b_one_minus_alpha",), "straight colour treated as premultiplied"),
    Mutation("composite_background_weight", "alphavae/blending.py",
             "return colour * alpha + b * (1 - alpha)", "return colour * alpha + b * alpha",
             (f"{M}::test_per_background_psnr_and_luma_ssim_match_numpy_and_skimage",), "background weighted by α"),
    Mutation("composite_vae_alpha_unmapped", "alphavae/losses/compositing.py",
             "return (x[..., 3:4, :, :] + 1) / 2", "return x[..., 3:4, :, :].clamp(0, 1)",
             (LX,), "the [-1, 1] alpha used as the compositing weight"),
    Mutation("saturated_alpha_held_both_ways", "alphavae/losses/compositing.py",
             "torch.where(low & (a < -1), -1.0, torch.where(high & (a > 1), 1.0, a))",
             "a.clamp(-1, 1)",
             (f"{L}::test_saturated_alpha_is_held_only_where_it_overshoots_its_target_s_bound",),
             "undershoot and soft targets clamped too"),
    Mutation("free_overshoot_ignored_by_the_step", "alphavae/training/step.py",
             "recon = obj.seen(self.vae.decode(z).sample.float(), x)", "recon = self.vae.decode(z).sample.float()",
             ("tests/test_training_step.py::test_the_step_gives_the_reference_losses_and_weights",),
             "the trainer's step trains the paper's objective when free_alpha_overshoot is on"),
    Mutation("free_overshoot_ignored_everywhere", "alphavae/losses/objective.py",
             "return hold_saturated_alpha(recon, x) if self.weights.free_alpha_overshoot else recon", "return recon",
             ("tests/test_training_step.py::test_free_alpha_overshoot_changes_what_the_step_trains",),
             "the option accepted and ignored"),
    # --- ABMSE and naive MSE ---------------------------------------------------------------------------------
    Mutation("abmse_cross_term_sign", "alphavae/losses/reconstruction.py",
             "(p * p - 2 * e_b * p * d + e_b2 * d * d)", "(p * p + 2 * e_b * p * d + e_b2 * d * d)",
             (f"{LX}::test_abmse_per_pixel_formula_with_a_strong_mean",)),
    Mutation("abmse_moments_swapped", "alphavae/losses/reconstruction.py",
             "e_b, e_b2 = moments.as_tensors(pred)", "e_b2, e_b = moments.as_tensors(pred)",
             (f"{LX}::test_abmse_is_the_expected_composite_error_with_imagenet_moments",)),
    Mutation("abmse_alpha_in_vae_range", "alphavae/losses/reconstruction.py",
             "a, a_hat = alpha01(target), alpha01(pred)", "a, a_hat = target[..., 3:4, :, :], pred[..., 3:4, :, :]",
             (f"{LX}::test_abmse_is_the_expected_composite_error_with_imagenet_moments",)),
    Mutation("abmse_mean_reduction", "alphavae/losses/reconstruction.py",
             "return abmse_map(pred, target, moments).sum() / pred.shape[0]",
             "return abmse_map(pred, target, moments).mean()",
             (f"{LX}::test_abmse_and_naive_mse_sum_over_elements_and_divide_by_the_batch",)),
    Mutation("imagenet_second_moment_typo", "alphavae/losses/reconstruction.py",
             "second=(0.3163, 0.3060, 0.3634)", "second=(0.3163, 0.3060, 0.3364)",
             (f"{LX}::test_imagenet_moments_are_the_documented_ones",)),
    Mutation("naive_mse_drops_alpha", "alphavae/losses/naive_mse.py",
             "return (pred - target).square().sum(dim=-3)", "return (pred - target)[..., :3, :, :].square().sum(dim=-3)",
             (f"{LX}::test_naive_mse_weighs_all_four_channels_in_vae_range",)),
    Mutation("naive_mse_mean_reduction", "alphavae/losses/naive_mse.py",
             "return naive_mse_map(pred, target).sum() / pred.shape[0]", "return naive_mse_map(pred, target).mean()",
             (f"{LX}::test_abmse_and_naive_mse_sum_over_elements_and_divide_by_the_batch",)),
    # --- KL terms --------------------------------------------------------------------------------------------
    Mutation("prior_kl_mean_reduction", "alphavae/losses/kl.py",
             "return gaussian_kl(mean, logvar, zero, zero).sum() / mean.shape[0]",
             "return gaussian_kl(mean, logvar, zero, zero).mean()",
             (f"{LX}::test_prior_kl_equals_torch_kl_to_the_standard_normal",)),
    Mutation("gaussian_kl_log_ratio_sign", "alphavae/losses/kl.py",
             "- 1 + logvar_q - logvar_p)", "- 1 + logvar_p - logvar_q)",
             (f"{LX}::test_prior_kl_equals_torch_kl_to_the_standard_normal",)),
    Mutation("reference_kl_swapped", "alphavae/losses/kl.py",
             "kl = gaussian_kl(q.mean.float(), q.logvar.float(), r.mean.float(), r.logvar.float())",
             "kl = gaussian_kl(r.mean.float(), r.logvar.float(), q.mean.float(), q.logvar.float())",
             (f"{LX}::test_reference_kl_equals_torch_kl_of_explicit_encodes_over_black_and_white",),
             "KL(ref ‖ model) instead of KL(model ‖ ref)"),
    Mutation("reference_kl_not_averaged", "alphavae/losses/kl.py",
             "return total / len(backgrounds)", "return total",
             (f"{LX}::test_reference_kl_equals_torch_kl_of_explicit_encodes_over_black_and_white",),
             "summed over the backgrounds instead of averaged"),
    Mutation("reference_kl_black_only", "alphavae/losses/kl.py",
             "for b in backgrounds:", "for b in backgrounds[:1]:",
             (f"{LX}::test_reference_kl_equals_torch_kl_of_explicit_encodes_over_black_and_white",),
             "only the black composite"),
    Mutation("reference_kl_encodes_rgba_input", "alphavae/losses/kl.py",
             "q = vae.encode(opaque(rgb)).latent_dist", "q = vae.encode(x).latent_dist",
             (f"{LX}::test_reference_kl_equals_torch_kl_of_explicit_encodes_over_black_and_white",),
             "the model encodes x instead of [A(x, b); 1]"),
    # --- ALPHA metric ----------------------------------------------------------------------------------------
    Mutation("ssim_sigma", "alphavae/metric/alpha.py",
             "SSIM_WINDOW, SSIM_SIGMA = 11, 1.5", "SSIM_WINDOW, SSIM_SIGMA = 11, 1.0",
             (f"{M}::test_per_background_psnr_and_luma_ssim_match_numpy_and_skimage",)),
    Mutation("luma_bt709", "alphavae/metric/alpha.py",
             "LUMA_BT601 = (0.299, 0.587, 0.114)", "LUMA_BT601 = (0.2126, 0.7152, 0.0722)",
             (f"{M}::test_per_background_psnr_and_luma_ssim_match_numpy_and_skimage",)),
    Mutation("ssim_backgrounds_cross_term", "alphavae/metric/alpha.py",
             "f_pxpy + beta * (f_pxqy + f_qxpy) + beta**2 * f_qxqy", "f_pxpy + 2 * beta * f_pxqy + beta**2 * f_qxqy",
             (f"{M}::test_per_background_psnr_and_luma_ssim_match_numpy_and_skimage",)),
    Mutation("mean_over_backgrounds_drops_one", "alphavae/metric/alpha.py",
             "mean[m] = float(np.mean(vals)) if vals else None", "mean[m] = float(np.mean(vals[1:])) if vals else None",
             (f"{M}::test_per_background_psnr_and_luma_ssim_match_numpy_and_skimage",)),
    Mutation("psnr_data_range_255", "alphavae/metric/alpha.py",
             "return 10 * torch.log10(1 / mse)", "return 10 * torch.log10(255**2 / mse)",
             (f"{M}::test_psnr_of_a_uniform_offset_is_closed_form",)),
    Mutation("sad_mean_not_thousands", "alphavae/metric/alpha.py",
             "return diff.flatten(1).sum(1) / 1000", "return diff.flatten(1).mean(1)",
             (f"{M}::test_alpha_metrics_match_numpy_and_scipy",)),
    # --- conversion ------------------------------------------------------------------------------------------
    Mutation("alpha_bias_zero", "alphavae/vae/conversion.py",
             "ALPHA_OUTPUT_BIAS = 1.0", "ALPHA_OUTPUT_BIAS = 0.0",
             (f"{C}::test_dtype_is_kept",), "α = ½ instead of 1 at initialisation"),
    Mutation("alpha_input_weights_random", "alphavae/vae/conversion.py",
             "new.weight.zero_()\n        new.weight[:, : conv.in_channels] = conv.weight",
             "new.weight[:, : conv.in_channels] = conv.weight",
             (f"{C}::test_rgb_output_equals_original_for_any_alpha_and_alpha_is_one",)),
    Mutation("alpha_output_weights_random", "alphavae/vae/conversion.py",
             "new.weight.zero_()\n        new.weight[: conv.out_channels] = conv.weight",
             "new.weight[: conv.out_channels] = conv.weight",
             (f"{C}::test_rgb_output_equals_original_for_any_alpha_and_alpha_is_one",)),
    # --- adversarial -----------------------------------------------------------------------------------------
    Mutation("adaptive_weight_inverted", "alphavae/losses/adversarial.py",
             "(g_rec.norm() / (g_gan.norm() + eps))", "(g_gan.norm() / (g_rec.norm() + eps))",
             (f"{LX}::test_adaptive_weight_is_the_norm_ratio_with_epsilon_1e_4",)),
    Mutation("adaptive_weight_clamp", "alphavae/losses/adversarial.py",
             "ADAPTIVE_MAX = 1e4", "ADAPTIVE_MAX = 1e5",
             (f"{LX}::test_adaptive_weight_is_clamped_at_1e4",)),
    Mutation("adaptive_weight_epsilon", "alphavae/losses/adversarial.py",
             "ADAPTIVE_EPS = 1e-4", "ADAPTIVE_EPS = 1e-8",
             (f"{LX}::test_adaptive_weight_is_the_norm_ratio_with_epsilon_1e_4",)),
    Mutation("hinge_fake_sign", "alphavae/losses/adversarial.py",
             "torch.relu(1 + logits_fake).mean()", "torch.relu(1 - logits_fake).mean()",
             (f"{L}::test_patch_discriminator_shape_and_hinge_losses",)),
    # --- the objective ---------------------------------------------------------------------------------------
    Mutation("objective_weights_ignored", "alphavae/losses/objective.py",
             "weighted = {term: getattr(self.weights, term) * value for term, value in raw.items()}",
             "weighted = {term: value for term, value in raw.items()}",
             (f"{LX}::test_objective_total_is_the_weighted_sum_of_each_term_recomputed",)),
    Mutation("objective_sums_raw_terms", "alphavae/losses/objective.py",
             "loss = sum(weighted.values(), start=recon.new_zeros(()))",
             "loss = sum(raw.values(), start=recon.new_zeros(()))",
             (f"{LX}::test_objective_total_is_the_weighted_sum_of_each_term_recomputed",)),
    Mutation("objective_gan_without_lambda", "alphavae/losses/objective.py",
             "return gan, self.weights.adversarial * lam * gan, float(lam)",
             "return gan, self.weights.adversarial * gan, float(lam)",
             (f"{LX}::test_objective_total_is_the_weighted_sum_of_each_term_recomputed",)),
    Mutation("objective_lambda_without_perceptual", "alphavae/losses/objective.py",
             'REC_TERMS = ("reconstruction", "alpha_l1", "perceptual")',
             'REC_TERMS = ("reconstruction", "alpha_l1")',
             (f"{LX}::test_objective_total_is_the_weighted_sum_of_each_term_recomputed",)),
    Mutation("latent_noise_one_spread_for_all_channels", "alphavae/losses/latent_noise.py",
             "sigma.view(1, -1, 1, 1).to(draws.dtype)", "sigma.mean().view(1, 1, 1, 1).to(draws.dtype)",
             (f"{L}::test_latent_noise_is_in_units_of_each_channel_s_spread_and_agrees_over_processes",)),
    Mutation("step_ignores_latent_noise", "alphavae/training/step.py",
             "z = add_latent_noise(z, latent_noise, self.reduce_mean)", "z = z",
             ("tests/test_training_step.py::test_the_step_gives_the_reference_losses_and_weights",)),
    Mutation("latent_noise_spread_per_process", "alphavae/training/step.py",
             "z = add_latent_noise(z, latent_noise, self.reduce_mean)", "z = add_latent_noise(z, latent_noise)",
             ("tests/test_training.py::test_two_processes_train_like_one_process_on_the_same_global_batch",)),
    Mutation("decoder_only_trains_quant_conv", "alphavae/training/trainer.py",
             "model.quant_conv.requires_grad_(False)", "model.quant_conv.requires_grad_(True)",
             ("tests/test_training.py::test_a_decoder_only_run_keeps_the_encoder_and_resumes_exactly",)),
    Mutation("premultiplied_l1_straight_colour", "alphavae/losses/premultiplied_l1.py",
             "colour = target[..., :3, :, :] * alpha01(target) - pred[..., :3, :, :] * alpha01(pred)",
             "colour = target[..., :3, :, :] - pred[..., :3, :, :]",
             (f"{L}::test_premultiplied_l1_is_the_absolute_error_of_colour_times_alpha_and_of_alpha",)),
    Mutation("objective_premultiplied_l1_is_mse", "alphavae/losses/objective.py",
             'if self.weights.reconstruction_loss == "premultiplied_l1":',
             'if self.weights.reconstruction_loss == "no such loss":',
             (f"{L}::test_the_objective_s_reconstruction_term_follows_reconstruction_loss",)),
    Mutation("objective_reference_kl_on_unit_range", "alphavae/losses/objective.py",
             "kl_terms.reference_kl(vae, self.reference_vae, x, self.reference_backgrounds)",
             "kl_terms.reference_kl(vae, self.reference_vae, x01, self.reference_backgrounds)",
             (f"{LX}::test_objective_total_is_the_weighted_sum_of_each_term_recomputed",)),
    Mutation("objective_never_samples", "alphavae/losses/objective.py",
             "z = posterior.sample(generator=generator) if self.sample_posterior else posterior.mode()",
             "z = posterior.mode()",
             (f"{LX}::test_objective_decodes_a_posterior_sample_when_asked",)),
    # --- blend augmentation ----------------------------------------------------------------------------------
    Mutation("blend_probability_inverted", "alphavae/losses/augmentation.py",
             "chosen = torch.rand(n, generator=generator, device=device) < p",
             "chosen = torch.rand(n, generator=generator, device=device) > p",
             (f"{L}::test_blend_augment_probability_colours_and_reproducibility",)),
    Mutation("blend_p_default", "alphavae/losses/augmentation.py",
             "BLEND_P = 0.3", "BLEND_P = 0.5",
             (f"{L}::test_loss_weights_defaults_and_validation",)),
    Mutation("blend_keeps_alpha", "alphavae/losses/augmentation.py",
             "torch.cat([composite(x01, b), torch.ones_like(x01[:, 3:4])], dim=1)",
             "torch.cat([composite(x01, b), x01[:, 3:4]], dim=1)",
             (f"{L}::test_blend_augment_probability_colours_and_reproducibility",)),
    # --- reconstruction and generation -----------------------------------------------------------------------
    Mutation("atomic_write_in_place", "alphavae/imageio.py",
             "write(str(tmp))\n        os.replace(tmp, path)", "write(str(path))",
             ("tests/test_interrupts.py::test_sigkill_mid_write_leaves_complete_files_and_a_hidden_temporary_a_rerun_ignores",),
             "a PNG written straight to its final name, so a kill leaves it half-written"),
    Mutation("reconstruct_folder_writes_input", "alphavae/vae/reconstruct.py",
             "outputs = reconstruct(vae, torch.stack([x for _, x in items]))[..., : key[0], : key[1]]",
             "outputs = torch.stack([x for _, x in items])[..., : key[0], : key[1]]",
             ("tests/test_reconstruct_pixels.py",), "alphavae reconstruct writes its input back"),
    Mutation("reconstruct_samples_posterior", "alphavae/vae/reconstruct.py",
             "out = vae.decode(vae.encode(x).latent_dist.mode()).sample",
             "out = vae.decode(vae.encode(x).latent_dist.sample()).sample",
             ("tests/test_reconstruct_pixels.py::test_reconstruct_is_encode_posterior_mean_decode",)),
    Mutation("decode_latents_scaling", "alphavae/generation/sampler.py",
             "z = latents / as_channel_tensor(scaling_factor, latents)", "z = latents * as_channel_tensor(scaling_factor, latents)",
             ("tests/test_generate_pixels.py::test_decode_latents_inverts_the_latent_scaling",)),
    Mutation("sampler_leading_spacing", "alphavae/generation/sampler.py",
             'timestep_spacing="trailing"', 'timestep_spacing="leading"',
             ("tests/test_generation.py::test_sampling_starts_at_the_last_training_timestep",)),
    Mutation("class_list_not_cycled", "alphavae/generation/sampler.py",
             "names.index(wanted[i % len(wanted)])", "names.index(wanted[0])",
             ("tests/test_generate_pixels.py::test_cli_pngs_equal_the_in_process_sampler",)),
    # --- the trainer's step ----------------------------------------------------------------------------------
    Mutation("step_surrogate_without_adversarial_weight", "alphavae/training/step.py",
             "return lam, g_rec + self.objective.weights.adversarial * lam * g_gan", "return lam, g_rec + lam * g_gan",
             ("tests/test_training_step.py::test_the_step_gives_the_reference_losses_and_weights",)),
    Mutation("step_reference_kl_from_the_image_latents", "alphavae/training/step.py",
             "q = DiagonalGaussianDistribution(moments[n:])", "q = DiagonalGaussianDistribution(moments[:n].repeat(2, 1, 1, 1))",
             ("tests/test_training_step.py::test_the_step_gives_the_reference_losses_and_weights",)),
    Mutation("step_draws_not_sliced_like_the_batch", "alphavae/training/step.py",
             "part = slice(rank, None, world_size)", "part = slice(rank * (global_batch // world_size), (rank + 1) * (global_batch // world_size))",
             ("tests/test_training_step.py::test_global_draws_split_like_the_batch_over_processes",)),
    Mutation("step_discriminator_sees_clamped_reconstructions", "alphavae/training/step.py",
             "fake = self.discriminator(recon.detach())", "fake = self.discriminator(recon.detach().clamp(-1, 1))",
             ("tests/test_training_step.py::test_the_discriminator_step_scores_the_reconstruction_the_adversarial_term_scored",)),
    Mutation("objective_discriminator_sees_clamped_reconstructions", "alphavae/losses/objective.py",
             "fake = self.discriminator(recon.detach())", "fake = self.discriminator(recon.detach().clamp(-1, 1))",
             ("tests/test_training_step.py::test_the_discriminator_step_scores_the_reconstruction_the_adversarial_term_scored",)),
    Mutation("graphs_inputs_copied_once", "alphavae/training/graphs.py",
             "fixed.copy_(value, non_blocking=True)", "fixed.detach()",
             ("tests/test_training_graphs.py::test_the_graphs_fixed_input_path_trains_exactly_as_the_eager_step",),
             "every step would train on the first step's batch and draws"),
    Mutation("graphs_resume_keeps_saved_rate_form", "alphavae/training/optim.py",
             'group[key] = torch.tensor(value, device=device) if capturable and key == "lr" else value',
             'group[key] = group[key]',
             ("tests/test_training_graphs.py::test_an_optimisers_checkpoint_resumes_with_or_without_capturable_rates",)),
    Mutation("compile_auto_on_every_gpu_process", "alphavae/training/trainer.py",
             'one_gpu = accelerator.device.type == "cuda" and accelerator.num_processes == 1',
             'one_gpu = accelerator.device.type == "cuda"',
             ("tests/test_training_graphs.py::test_auto_optimises_one_gpu_process_only",)),
    Mutation("graphs_record_checkpointing_on_old_torch", "alphavae/training/trainer.py",
             "elif config.gradient_checkpointing and torch.__version__ < (2, 10):", "elif False:",
             ("tests/test_training_graphs.py::test_graphs_with_gradient_checkpointing_need_torch_2_10",)),
    Mutation("layout_shortcut_input_left_nchw", "alphavae/training/layout.py",
             "child.register_forward_pre_hook(channels_last_input)", "pass",
             ("tests/test_training_layout.py::test_every_convolution_gets_channels_last_input_on_a_gpu_after_keep_channels_last",)),
    Mutation("layout_group_norm_biased_variance", "alphavae/training/layout.py",
             "correction=0", "correction=1",
             ("tests/test_training_layout.py::test_the_layout_keeping_group_norm_computes_group_norm",)),
    Mutation("layout_not_applied_when_compiling", "alphavae/training/step.py",
             "                keep_channels_last(vae)", "                pass",
             ("tests/test_training_layout.py::test_compiled_vaes_keep_channels_last_and_the_others_do_not",)),
    Mutation("resume_moments_left_contiguous", "alphavae/training/optim.py",
             "state[key] = torch.empty_like(param, dtype=value.dtype).copy_(value)", "pass",
             ("tests/test_training_graphs.py::test_a_resumed_optimiser_keeps_its_channels_last_parameters_layout",),
             "the first step of a resumed compiled GPU run fails in fused AdamW"),
    Mutation("autocast_bf16_on_emulating_gpus", "alphavae/vae/loading.py",
             "torch.cuda.get_device_capability(device)[0] >= 8", "torch.cuda.get_device_capability(device)[0] >= 7",
             ("tests/test_vae.py::test_autocast_is_bf16_only_where_a_gpu_has_it_natively",)),
    Mutation("auto_precision_bf16_on_every_gpu", "alphavae/training/trainer.py",
             'return "no" if cpu or autocast_dtype(torch.device("cuda")) is None else "bf16"', 'return "no" if cpu else "bf16"',
             ("tests/test_vae.py::test_autocast_is_bf16_only_where_a_gpu_has_it_natively",)),
    Mutation("resumed_ema_left_on_the_cpu", "alphavae/training/optim.py",
             "ema.shadow_params = [torch.empty_like(p).copy_(s) for s, p in zip(ema.shadow_params, parameters, strict=True)]",
             "ema.shadow_params = list(ema.shadow_params)",
             ("tests/test_training_graphs.py::test_a_resumed_ema_follows_its_parameters",)),
    Mutation("layout_group_norm_without_between_channel_variance", "alphavae/training/layout.py",
             "var_g = (var_c + (mean_c - mean_g).square()).mean(2, keepdim=True)", "var_g = var_c.mean(2, keepdim=True)",
             ("tests/test_training_layout.py::test_the_layout_keeping_group_norm_computes_group_norm",),
             "the law of total variance without its second term: each group's spread of channel means is lost"),
    Mutation("graphs_recorded_in_global_capture_mode", "alphavae/training/graphs.py",
             "with torch.cuda.graph(graph, capture_error_mode=CAPTURE_ERROR_MODE):", "with torch.cuda.graph(graph):",
             ("tests/test_training_graphs.py::test_a_recording_lets_other_threads_call_cuda",),
             "the DataLoader's pin-memory thread invalidates the trainer's first capture on a GPU"),
    Mutation("generator_resume_ignores_its_shape", "alphavae/generation/train.py",
             "if (tuple(saved) if isinstance(saved, (list, tuple)) else saved) != now:", "if False:",
             ("tests/test_generation.py::test_the_unet_has_the_configured_widths_and_a_resume_keeps_them",),
             "a resume with other widths fails deep in load_state_dict with a multi-line size mismatch"),
    Mutation("min_snr_weights_over_snr", "alphavae/generation/train.py",
             '"v_prediction": snr + 1,', '"v_prediction": snr,',
             ("tests/test_generation.py::test_min_snr_weights_cap_the_clean_timesteps",),
             "the ε-target weights used for a v target"),
    Mutation("generator_ignores_snr_gamma", "alphavae/generation/train.py",
             "if config.snr_gamma is None:", "if True:",
             ("tests/test_generation.py::test_min_snr_gamma_weights_the_trained_loss",)),
    Mutation("generator_ignores_dropout", "alphavae/generation/sampler.py",
             "        dropout=dropout,\n", "",
             ("tests/test_generation.py::test_dropout_acts_while_training_is_saved_and_is_off_when_sampling",)),
    Mutation("generator_init_ignored", "alphavae/generation/train.py",
             "before = warm_start(unet, config, class_names, shift, scale) if config.init and found is None else 0",
             "before = 0",
             ("tests/test_generation.py::test_a_warm_start_begins_at_the_given_generator_and_counts_its_steps",),
             "a warm start silently trains from random weights"),
    Mutation("generator_resume_forgets_steps_before", "alphavae/generation/train.py",
             'int(shared.get("steps_before", 0))', "0",
             ("tests/test_generation.py::test_a_resumed_warm_start_needs_no_init_folder",)),
    Mutation("reference_copy_keeps_its_decoder", "alphavae/training/step.py",
             "memo={id(vae.decoder): None, id(vae.post_quant_conv): None}", "memo={}",
             ("tests/test_training_layout.py::test_the_trainers_reference_copy_only_encodes",)),
    Mutation("loss_functions_never_compiled", "alphavae/training/step.py",
             "        if compiled:\n            functions = {", "        if False:\n            functions = {",
             ("tests/test_training_step.py::test_compiled_loss_functions_wrap_the_eager_ones",
              "tests/test_training_step.py::test_the_step_gives_the_reference_losses_and_weights"),
             "the trainer's compiled step silently runs its loss functions eager (2.9 % slower on an H100)"),
)


# ------------------------------------------------------------------------------------------------------ running
#: The environment of every test run: the root conftest.py's defaults, set *before* the third-party imports
#: (huggingface_hub reads HF_HUB_OFFLINE when it is imported).
TEST_ENV = {"ALPHAVAE_MODE": "fast", "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1", "TQDM_DISABLE": "1",
            "PYTHONDONTWRITEBYTECODE": "1"}
#: Imported once per worker before it forks a child per run; never ``alphavae`` itself, which each child
#: imports fresh from the (mutated) copy. Pure speed: they cost ~10 s of CPU per interpreter.
PRELOAD = ("numpy", "scipy.ndimage", "torch", "torch.nn.functional", "torchvision", "PIL.Image", "diffusers",
           "diffusers.models.autoencoders.autoencoder_kl", "diffusers.models.unets.unet_2d",
           "diffusers.schedulers.scheduling_ddpm", "diffusers.schedulers.scheduling_dpmsolver_multistep",
           "lpips", "skimage.metrics", "safetensors.torch", "tqdm.auto", "pytest")
PYTEST_ARGS = ("-x", "-q", "-p", "no:randomly", "-p", "no:cacheprovider", "-o", "addopts=", "-W", "ignore")
BASELINE = "(baseline)"


def check_snippets(root: Path, mutations) -> dict[str, str]:
    """``{name: problem}`` for every mutation whose snippet is not found exactly once (or is a no-op)."""
    problems = {}
    for m in mutations:
        path = root / m.file
        if not path.is_file():
            problems[m.name] = f"{m.file}: no such file"
            continue
        count = path.read_text().count(m.original)
        if count != 1:
            problems[m.name] = f"{m.file}: snippet found {count} times (expected once): {m.original!r}"
        elif m.original == m.replacement:
            problems[m.name] = "replacement equals the original"
    return problems


def make_copy(dest: Path) -> Path:
    dest.mkdir(parents=True)
    ignore = shutil.ignore_patterns("__pycache__", "*.pyc", ".pytest_cache")
    for name in COPIED:
        src = ROOT / name
        if src.is_dir():
            shutil.copytree(src, dest / name, ignore=ignore)
        elif src.is_file():
            shutil.copy2(src, dest / name)
    return dest


def _status(code: int | None) -> str:
    if code is None:
        return "caught (timeout)"
    return {0: "MISSED", 1: "caught", 2: "caught (collection)"}.get(code, f"ERROR (pytest exit {code})")


def _last_line(path: Path) -> str:
    lines = [line for line in path.read_text(errors="replace").splitlines() if line.strip()]
    return lines[-1].strip() if lines else ""


def _fork_pytest(copy: Path, tests, timeout: float, log: Path) -> int | None:
    """Run pytest on ``tests`` in a forked child (output to ``log``); its exit code, or None on timeout."""
    import pytest

    pid = os.fork()
    if pid == 0:  # child: a fresh import of alphavae from the copy, then pytest
        code = 3
        try:
            fd = os.open(log, os.O_WRONLY | os.O_CREAT | os.O_TRUNC)
            os.dup2(fd, 1)
            os.dup2(fd, 2)
            code = int(pytest.main([*PYTEST_ARGS, *tests]))
        finally:
            sys.stdout.flush()
            sys.stderr.flush()
            os._exit(code)
    deadline = time.monotonic() + timeout
    while True:
        done, status = os.waitpid(pid, os.WNOHANG)
        if done:
            return os.waitstatus_to_exitcode(status)
        if time.monotonic() > deadline:
            os.kill(pid, signal.SIGKILL)
            os.waitpid(pid, 0)
            return None
        time.sleep(0.05)


def worker(copy: Path, names: list[str], timeout: float) -> int:
    """``--worker``: in ``copy``, run the baseline of ``names``' selections, then each mutation; one JSON line
    per run on stdout."""
    os.environ.update(TEST_ENV, PYTHONPATH=str(copy))
    os.chdir(copy)
    sys.path.insert(0, str(copy))
    sys.dont_write_bytecode = True
    for module in PRELOAD:
        try:
            importlib.import_module(module)
        except ImportError:
            pass
    from importlib.metadata import entry_points

    for plugin in entry_points(group="pytest11"):  # e.g. nbval, which pytest would import in every child
        try:
            plugin.load()
        except Exception:  # noqa: BLE001 - a broken plugin is pytest's to report, in the child
            pass
    assert "alphavae" not in sys.modules
    gc.collect()
    gc.freeze()  # the children's gc.collect() then skips (and does not copy-on-write) everything loaded here
    by_name = {m.name: m for m in MUTATIONS}
    log = copy.parent / f"{copy.name}.log"
    runs = [(BASELINE, None, sorted({t for n in names for t in by_name[n].tests}))]
    runs += [(n, by_name[n], list(by_name[n].tests)) for n in names]
    for name, m, tests in runs:
        path = copy / m.file if m else None
        original = path.read_text() if path else None
        start = time.monotonic()
        try:
            if m:
                path.write_text(original.replace(m.original, m.replacement, 1))
            code = _fork_pytest(copy, tests, timeout * (4 if m is None else 1), log)
        finally:
            if m:
                path.write_text(original)
        print(json.dumps({"name": name, "code": code, "tail": _last_line(log), "seconds": time.monotonic() - start}),
              flush=True)
        if m is None and code != 0:
            return 2
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--list", action="store_true", help="list the mutations and their tests, run nothing")
    parser.add_argument("--only", help="comma-separated mutation names")
    parser.add_argument("--jobs", type=int, default=2, help="workers, one copy of the project each (default 2)")
    parser.add_argument("--python", default=sys.executable, help="interpreter with the project's dependencies")
    parser.add_argument("--timeout", type=float, default=300, help="seconds per pytest run (a timeout counts as caught)")
    parser.add_argument("--worker", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--names", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.worker:
        return worker(args.worker, args.names.split(","), args.timeout)

    names = [m.name for m in MUTATIONS]
    assert len(names) == len(set(names)), "duplicate mutation names"
    mutations = list(MUTATIONS)
    if args.only:
        wanted = [n.strip() for n in args.only.split(",") if n.strip()]
        unknown = sorted(set(wanted) - set(names))
        if unknown:
            parser.error(f"unknown mutation(s) {unknown}; see --list")
        mutations = [m for m in mutations if m.name in wanted]

    problems = check_snippets(ROOT, mutations)
    if args.list:
        for m in mutations:
            flag = f"  !! {problems[m.name]}" if m.name in problems else ""
            print(f"{m.name:<38} {m.file:<36} {' '.join(m.tests)}{flag}")
            if m.why:
                print(f"{'':<38} ({m.why})")
        print(f"{len(mutations)} mutations")
        return 1 if problems else 0

    start = time.monotonic()
    runnable = [m for m in mutations if m.name not in problems]
    results: dict[str, dict] = {n: {"status": "SNIPPET NOT FOUND", "tail": problems[n], "seconds": 0.0} for n in problems}
    baseline_failed = False
    jobs = max(1, min(args.jobs, len(runnable)))
    with tempfile.TemporaryDirectory(prefix="alphavae-mutants-") as tmp:
        shares = [runnable[i::jobs] for i in range(jobs)]
        procs = []
        for i, share in enumerate(shares):
            copy = make_copy(Path(tmp) / f"copy{i}")
            cmd = [args.python, str(Path(__file__).resolve()), "--worker", str(copy), "--timeout", str(args.timeout),
                   "--names", ",".join(m.name for m in share)]
            procs.append(subprocess.Popen(cmd, stdout=subprocess.PIPE, text=True))

        def read(proc: subprocess.Popen) -> None:
            nonlocal baseline_failed
            for line in proc.stdout:
                r = json.loads(line)
                if r["name"] == BASELINE:
                    ok = r["code"] == 0
                    baseline_failed |= not ok
                    print(f"  {'baseline (unmodified copy)':<38} {'ok' if ok else 'FAILED':<20} {r['seconds']:5.0f} s  {r['tail']}",
                          flush=True)
                    continue
                r["status"] = _status(r["code"])
                results[r["name"]] = r
                print(f"  {r['name']:<38} {r['status']:<20} {r['seconds']:5.0f} s  {r['tail']}", flush=True)
            proc.wait()

        threads = [threading.Thread(target=read, args=(p,)) for p in procs]
        for t in threads:
            t.start()
        for t in threads:
            t.join()

    if baseline_failed:
        print("baseline failed: the selected tests must pass on the unmodified code", file=sys.stderr)
        return 2
    print()
    print(f"{'mutation':<38} {'file':<36} {'result':<20} {'s':>5}")
    print("-" * 102)
    for m in mutations:
        r = results.get(m.name, {"status": "NOT RUN", "seconds": 0.0})
        print(f"{m.name:<38} {m.file:<36} {r['status']:<20} {r['seconds']:5.0f}")
    print("-" * 102)
    missed = [m.name for m in mutations if not results.get(m.name, {}).get("status", "").startswith("caught")]
    print(f"score: {len(mutations) - len(missed)}/{len(mutations)} caught; {time.monotonic() - start:.0f} s wall, "
          f"{jobs} worker(s)")
    if missed:
        print("missed, not applied or not run: " + ", ".join(missed))
    return 1 if missed else 0


if __name__ == "__main__":
    sys.exit(main())
