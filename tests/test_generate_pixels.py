"""``alphavae generate`` writes what the in-process sampler makes, and the shipped generator's alpha is real.

tests/test_generate_cli.py checks the files and that *some* pixel has α < 1, which a CLI that ignored
``--guidance`` or ``--class``, or a generator with nearly opaque output, would still pass. Here:

* the PNGs written through ``alphavae.cli.main`` (in-process) equal
  :func:`alphavae.generation.sampler.generate_with` with the same seed, size, classes, guidance and steps
  within 8-bit rounding, and those settings each change the images (so the comparison has power);
* :func:`decode_latents` inverts the latent scaling: decoding ``(z − shift)·scale`` of a real image's
  posterior mean gives the VAE's reconstruction of it, with the VAE's scalars and with per-channel factors
  (which whiten each channel); per-channel factors of the wrong length are refused at load;
* at the shipped defaults (25 steps, guidance 2) the samples have a real share of transparent and of opaque
  pixels (results/generation.json: 67 % and 24 % over 512 samples; a VAE that ignores alpha gives 0 % / 100 %).
"""

from __future__ import annotations

import json
import shutil

import pytest
import torch

from alphavae.cli import main
from alphavae.generation.sampler import decode_latents, generate_with, load_generator
from alphavae.imageio import load_rgba
from alphavae.paths import models_dir, sample_dir
from alphavae.vae.reconstruct import reconstruct

pytestmark = pytest.mark.usefixtures("one_thread")

TOLERANCE = 0.5 / 255 + 1e-5
SETTINGS = dict(seed=5, size=64, classes=["food", "plants"], guidance_scale=3.5, num_inference_steps=3)


@pytest.fixture(scope="module")
def generator():
    return load_generator("embedded-generator", device="cpu")


def test_cli_pngs_equal_the_in_process_sampler(generator, tmp_path):
    out = tmp_path / "g"
    assert main(["generate", "--model", "embedded-generator", "--n", "3", "--seed", "5", "--size", "64",
                 "--steps", "3", "--guidance", "3.5", "--class", "food,plants", "--device", "cpu",
                 "--output", str(out)]) == 0
    names = sorted(p.name for p in out.glob("*.png"))
    assert names == ["0000-food.png", "0001-plants.png", "0002-food.png"]  # the class list is cycled
    want = generate_with(generator, 3, **SETTINGS)
    for i, name in enumerate(names):
        got = load_rgba(out / name)
        assert got.shape == want[i].shape == (4, 64, 64)
        err = (got - want[i]).abs().max().item()
        assert err <= TOLERANCE, f"{name}: differs from generate_with by {err * 255:.2f}/255"
    # every setting passed on the command line changes the images, so the comparison above can fail:
    for change in (dict(seed=6), dict(guidance_scale=2.0), dict(num_inference_steps=4), dict(classes=["plants", "food"])):
        other = generate_with(generator, 3, **{**SETTINGS, **change})
        assert (other - want).abs().max().item() > 10 / 255, change


def test_decode_latents_inverts_the_latent_scaling(generator):
    info, vae = generator.info, generator.vae
    assert info["scaling_factor"] == pytest.approx(vae.config.scaling_factor)
    assert info["shift_factor"] == pytest.approx(getattr(vae.config, "shift_factor", None) or 0.0)
    x = load_rgba(sample_dir() / "people" / "smiley003.png")[None, :, 64:128, 64:128]
    with torch.no_grad():
        z = vae.encode(x * 2 - 1).latent_dist.mean
    latents = (z - info["shift_factor"]) * info["scaling_factor"]
    decoded = decode_latents(vae, latents, info["shift_factor"], info["scaling_factor"])
    torch.testing.assert_close(decoded, reconstruct(vae, x), rtol=0, atol=1e-5)


def test_per_channel_normalisation_whitens_each_channel_and_decodes_back(generator):
    from alphavae.generation.sampler import as_channel_tensor
    from alphavae.generation.train import latent_normalisation

    vae = generator.vae
    x = torch.stack([load_rgba(sample_dir() / "people" / "smiley003.png")[:, 64:128, 64:128],
                     load_rgba(sample_dir() / "people" / "smiley003.png")[:, 0:64, 0:64]])
    with torch.no_grad():
        z = vae.encode(x * 2 - 1).latent_dist.mean
    shift, scale = latent_normalisation("channel", vae, z)
    assert len(shift) == len(scale) == z.shape[1]
    latents = (z - as_channel_tensor(shift, z)) * as_channel_tensor(scale, z)
    torch.testing.assert_close(latents.mean((0, 2, 3)), torch.zeros(z.shape[1]), rtol=0, atol=1e-5)
    torch.testing.assert_close(latents.std((0, 2, 3)), torch.ones(z.shape[1]), rtol=0, atol=1e-4)
    decoded = decode_latents(vae, latents, shift, scale)
    torch.testing.assert_close(decoded, reconstruct(vae, x), rtol=0, atol=1e-5)
    assert latent_normalisation("vae", vae, z) == (getattr(vae.config, "shift_factor", None) or 0.0, vae.config.scaling_factor)


def test_a_per_channel_factor_of_the_wrong_length_is_refused(tmp_path):
    from alphavae.generation.sampler import GeneratorLoadError

    folder = tmp_path / "gen"
    shutil.copytree(models_dir() / "embedded-generator", folder)
    info = json.loads((folder / "generator.json").read_text())
    (folder / "generator.json").write_text(json.dumps({**info, "scaling_factor": [1.0, 2.0]}))
    with pytest.raises(GeneratorLoadError, match=r'"scaling_factor" has 2 values; the UNet has 16'):
        load_generator(str(folder))


def test_shipped_generator_makes_transparent_and_opaque_pixels(shipped_generator_samples):
    images = shipped_generator_samples()  # the defaults: 256 px, 25 steps, guidance 2.0, seed 0
    assert images.shape == (4, 4, 256, 256)
    alpha = images[:, 3]
    transparent, opaque = (alpha < 0.01).float().mean().item(), (alpha > 0.99).float().mean().item()
    # real clip art is 68 % transparent (held out); 4 samples vary: the shipped 14.4 M generator's 4 are 76 %
    # transparent and 6.3 % opaque. An empty sample is ~100 %, an unconverted decoder's 0 %.
    assert 0.05 <= transparent <= 0.9, transparent
    assert 0.01 <= opaque <= 0.8, opaque
    assert ((alpha < 0.01).flatten(1).float().mean(1) > 0).all()  # every sample has see-through pixels
