"""How crisp an RGBA VAE's decoded alpha stays when its latents are a little off.

A generator's samples are latents with some error. If the decoder turns small latent errors into haze (alpha a
little above 0 or below 1), a generator's soft-alpha share cannot come near the data's however well it trains
(issue 16's bar: at most twice the real share). This script decodes the posterior means of real images perturbed
by Gaussian noise of ``s`` × the latents' per-channel standard deviation and prints, per ``s``, the decoded images'
transparent / soft / opaque shares (:func:`alphavae.metric.alpha_shares.alpha_statistics`) and the ALPHA metric's
mean composite PSNR and alpha PSNR against the images. ``s = 0`` is the VAE's own round trip (the posterior std of
the shipped VAEs is about 10⁻³ of the latents', so a posterior sample decodes as the mean does).

Images: an evenly spaced subset of the training split (``--which train``, the default: a diagnostic for choosing a
remedy should not look at the held-out images) or of the held-out split.

A remedy to try, ``--finetune-steps N``: fine-tune the decoder alone (encoder frozen, so the latent space and every
generator trained on it stay valid) on noisy latents, ``z + s·std·ε`` with ``s`` uniform in [0, ``--max-noise``], to
reproduce the image (L1 on premultiplied colour and on alpha, outputs clamped: an overshoot past a saturated target
costs nothing, as ``loss.free_alpha_overshoot``), on 128-px crops (16×16 latents) of training images other than
the measured ones; then measure again, save the VAE to ``--output``, and decode the same ``--samples`` latents of
``--generator`` with the VAE before and after (soft share of generated images). ``--loss abmse`` or
``abmse_alpha_l1`` trains with stage 2's reconstruction terms instead (:data:`FINETUNE_LOSSES`). An experiment,
not the trainer (``trainable: decoder``, method.md §3.9): LPIPS, the GAN and the blend augmentation are not in it.

    python benchmarks/latent_noise_soft_alpha.py --vae embedded-rgba --images 80 --noise 0 0.05 0.1 0.2
    python benchmarks/latent_noise_soft_alpha.py --images 64 --noise 0 0.1 0.2 --finetune-steps 400 --output runs/dec-noise

``--decoded-by VAE [VAE ...]`` only decodes the same ``--samples`` latents of ``--generator`` with each VAE (they must
share the generator's encoder: the shipped one, or decoder fine-tunes of it, ``trainable: decoder``) and prints each
soft share; ``--noise`` is then not measured.

    python benchmarks/latent_noise_soft_alpha.py --decoded-by embedded-rgba runs/dec-a/model-fp16 --samples 256
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import torch
import torch.nn.functional as F

from alphavae.generation.evaluate import evenly_spaced, images_of, split_image_files
from alphavae.generation.sampler import decode_latents, generate_with, load_generator
from alphavae.generation.train import encode_posteriors
from alphavae.blending import to_vae_range
from alphavae.losses import abmse_loss, hold_saturated_alpha
from alphavae.losses.alpha_l1 import alpha_l1_loss
from alphavae.metric.alpha import alpha_metric
from alphavae.metric.alpha_shares import alpha_statistics
from alphavae.training.trainer import freeze_encoder, trainable
from alphavae.vae.loading import load_vae, machine_name, torch_device

BATCH = 16
CROP = 16  # latent crop of the fine-tune: 128 px


def posterior_means(vae, images: torch.Tensor) -> torch.Tensor:
    """Posterior means of ``images`` ``(N, 4, H, W)`` in [0, 1], on the CPU (the generator trainer's encoder pass)."""
    return encode_posteriors(vae, images, batch_size=BATCH, hflip=False, progress=False)[0]


def decode(vae, latents: torch.Tensor) -> torch.Tensor:
    """RGBA in [0, 1] (clamped) of unscaled ``latents``, :data:`BATCH` at a time, on the CPU."""
    return torch.cat([decode_latents(vae, latents[i:i + BATCH].to(vae.device), 0.0, 1.0).cpu()
                      for i in range(0, len(latents), BATCH)])


def measure(vae, images: torch.Tensor, means: torch.Tensor, channel_std: torch.Tensor, levels: list[float],
            seed: int, tag: str) -> None:
    """Print the shares and PSNRs of ``images`` decoded from ``means`` + noise at each level (same noise per call)."""
    print(f"{tag}: noise s | transparent % | soft % | opaque % | mean composite PSNR | α PSNR")
    generator = torch.Generator().manual_seed(seed)
    for s in levels:
        noisy = means + s * channel_std * torch.randn(means.shape, generator=generator)
        decoded = decode(vae, noisy)
        shares = alpha_statistics(decoded)
        report = alpha_metric(decoded, images, metrics=("psnr",))
        print(f"{tag}: {s:7.2f} | {100 * shares['transparent']:13.2f} | {100 * shares['soft']:6.2f} | "
              f"{100 * shares['opaque']:8.2f} | {report.mean['psnr']:19.2f} | {report.alpha['psnr']:6.2f}", flush=True)


#: Losses of the fine-tune experiment: ``l1`` (stop 27's: L1 on premultiplied colour and alpha, outputs clamped), or the
#: trainer's ABMSE on the output with the overshoot held (``abmse``), plus its alpha L1 term at weight 0.5 as
#: configs/decoder_finetune.json has it (``abmse_alpha_l1``): which part of stage 2's objective keeps the haze.
FINETUNE_LOSSES = ("l1", "abmse", "abmse_alpha_l1")


def finetune_loss(kind: str, out: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    """The experiment's loss of the decoder's raw output ``out`` (in [-1, 1]) for the target ``x`` in [0, 1]."""
    if kind == "l1":
        out = (out.clamp(-1, 1) + 1) / 2
        return F.l1_loss(out[:, :3] * out[:, 3:], x[:, :3] * x[:, 3:]) + F.l1_loss(out[:, 3:], x[:, 3:])
    target = to_vae_range(x)
    seen = hold_saturated_alpha(out, target)
    loss = abmse_loss(seen, target)
    return loss + 0.5 * alpha_l1_loss(seen, target) if kind == "abmse_alpha_l1" else loss


def finetune_decoder(vae, images: torch.Tensor, means: torch.Tensor, channel_std: torch.Tensor, steps: int,
                     max_noise: float, lr: float, seed: int, loss_kind: str = "l1") -> None:
    """Train ``vae``'s decoder (and post-quant conv) in place on noisy latent crops of ``means`` to give ``images``,
    with :func:`finetune_loss` ``loss_kind``."""
    vae.requires_grad_(True)
    freeze_encoder(vae)  # as the trainer's decoder-only runs: the decoder and post_quant_conv train
    optimiser = torch.optim.AdamW(trainable(vae), lr=lr, betas=(0.5, 0.9), weight_decay=0.0)
    generator, device, start = torch.Generator().manual_seed(seed), vae.device, time.perf_counter()
    span, factor = means.shape[-1] - CROP + 1, images.shape[-1] // means.shape[-1]
    vae.train()
    for step in range(1, steps + 1):
        idx = torch.randint(len(means), (8,), generator=generator)
        i, j = torch.randint(0, span, (2,), generator=generator).tolist()
        z = means[idx, :, i:i + CROP, j:j + CROP]
        x = images[idx, :, factor * i:factor * (i + CROP), factor * j:factor * (j + CROP)].to(device)
        s = max_noise * torch.rand(len(idx), 1, 1, 1, generator=generator)
        out = vae.decode((z + s * channel_std * torch.randn(z.shape, generator=generator)).to(device)).sample
        loss = finetune_loss(loss_kind, out, x)
        optimiser.zero_grad()
        loss.backward()
        optimiser.step()
        if step % 100 == 0 or step == steps:
            print(f"fine-tune step {step}: loss {loss.item():.4f}, {time.perf_counter() - start:.0f} s", flush=True)
    vae.eval()
    for p in vae.parameters():
        p.requires_grad_(False)


def generated_soft_share(generator_spec: str, vae_spec: str, n: int, seed: int, device: torch.device) -> float:
    """Soft-alpha share of ``n`` samples of ``generator_spec`` decoded by ``vae_spec`` (same latents for any VAE)."""
    generator = load_generator(generator_spec, device=device, vae_spec=vae_spec)
    return alpha_statistics(generate_with(generator, n, seed=seed))["soft"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--vae", default="embedded-rgba", help="RGBA VAE SPEC (default: the shipped embedded-rgba)")
    parser.add_argument("--images", type=int, default=80, help="images of the split, evenly spaced")
    parser.add_argument("--which", choices=("train", "heldout"), default="train")
    parser.add_argument("--noise", type=float, nargs="+", default=[0.0, 0.05, 0.1, 0.2, 0.3],
                        help="noise levels s, in units of the latents' per-channel std")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--device", choices=("auto", "cpu", "cuda"), default="auto")
    parser.add_argument("--finetune-steps", type=int, default=0, help="fine-tune the decoder this many steps (0: measure only)")
    parser.add_argument("--max-noise", type=float, default=0.2, help="fine-tune: largest noise level s")
    parser.add_argument("--lr", type=float, default=2e-5, help="fine-tune: AdamW learning rate")
    parser.add_argument("--loss", choices=FINETUNE_LOSSES, default="l1", help="fine-tune: its loss (default l1, stop 27's)")
    parser.add_argument("--fit-images", type=int, default=480, help="fine-tune: training images (none of the measured ones)")
    parser.add_argument("--output", type=Path, help="fine-tune: where to save the fine-tuned VAE (required with it)")
    parser.add_argument("--generator", default="embedded-generator", help="fine-tune: generator whose samples are decoded")
    parser.add_argument("--samples", type=int, default=64, help="generated samples decoded (fine-tune: before and after)")
    parser.add_argument("--decoded-by", nargs="+", metavar="VAE", help="only: the soft share of --generator's samples "
                        "decoded by each of these VAEs")
    args = parser.parse_args()
    if args.images < 2:
        parser.error(f"--images {args.images}: need at least 2 (a per-channel std)")
    if any(s < 0 for s in args.noise) or args.max_noise < 0:
        parser.error("--noise and --max-noise: levels must be >= 0")
    if args.finetune_steps and args.output is None:
        parser.error("--finetune-steps needs --output DIR (where the fine-tuned VAE goes)")

    device = torch_device(args.device)
    if args.decoded_by:
        for spec in args.decoded_by:
            share = generated_soft_share(args.generator, spec, args.samples, args.seed, device)
            print(f"{args.samples} samples of {args.generator} (seed {args.seed}) decoded by {spec}: {100 * share:.2f} % soft "
                  f"({machine_name(device)})", flush=True)
        return
    vae = load_vae(args.vae).to(device).float().eval()
    root, files = split_image_files(args.which)
    measured = evenly_spaced(files, args.images)
    images = images_of(root, measured, 256)
    means = posterior_means(vae, images)
    channel_std = means.std(dim=(0, 2, 3), keepdim=True)
    print(f"{args.vae} on {len(images)} {args.which} images at 256 px, {machine_name(device)}; "
          f"latent per-channel std {channel_std.flatten().mean():.3f} (mean over channels); "
          f"the images: {100 * alpha_statistics(images)['soft']:.1f} % soft")
    measure(vae, images, means, channel_std, args.noise, args.seed, "before")
    if not args.finetune_steps:
        return
    root, train = split_image_files("train")
    fit = images_of(root, evenly_spaced([f for f in train if f not in set(measured)], args.fit_images), 256)
    finetune_decoder(vae, fit, posterior_means(vae, fit), channel_std, args.finetune_steps, args.max_noise, args.lr,
                     args.seed, args.loss)
    measure(vae, images, means, channel_std, args.noise, args.seed, "after ")
    vae.save_pretrained(args.output)
    for tag, spec in (("before", args.vae), ("after ", str(args.output))):
        share = generated_soft_share(args.generator, spec, args.samples, args.seed, device)
        print(f"{tag}: {args.samples} samples of {args.generator} decoded by {spec}: {100 * share:.2f} % soft", flush=True)


if __name__ == "__main__":
    main()
