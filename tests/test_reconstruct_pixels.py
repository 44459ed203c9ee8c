"""``alphavae reconstruct`` writes the VAE's reconstruction, pixel for pixel.

tests/test_reconstruct_cli.py checks counts, sizes, modes and errors; a command that wrote its inputs back
unchanged would pass all of those. Here the PNGs written through ``alphavae.cli.main`` (in-process) must equal
:func:`alphavae.vae.reconstruct.reconstruct` of the same images within 8-bit rounding (0.5/255), must differ
from the inputs, and ``reconstruct`` itself must equal an explicit encode → posterior mean → decode.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
import torch

from alphavae.cli import main
from alphavae.imageio import load_rgba, pad_to_multiple
from alphavae.paths import sample_dir
from alphavae.vae.loading import load_vae
from alphavae.vae.reconstruct import reconstruct

pytestmark = pytest.mark.usefixtures("one_thread")

#: Two 256×256 images (batched together) and two whose sides are not multiples of 8 (padded).
SAMPLES = ("people/smiley003.png", "electronics/antenna.png", "food/bowl_of_steaming_soup_01.png",
           "unsorted/simbol_donna.png")
#: 8-bit rounding of the PNG, plus float noise between batched and single-image convolutions.
TOLERANCE = 0.5 / 255 + 1e-5


@pytest.fixture(scope="module")
def vae():
    return load_vae("embedded-rgba")


@pytest.fixture(scope="module")
def written(tmp_path_factory) -> tuple[Path, Path]:
    root = tmp_path_factory.mktemp("recon")
    src, out = root / "in", root / "out"
    for name in SAMPLES:
        (src / name).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(sample_dir() / name, src / name)
    assert main(["reconstruct", "--vae", "embedded-rgba", "--input", str(src), "--output", str(out),
                 "--batch-size", "2", "--device", "cpu"]) == 0
    return src, out


def _in_process(vae, x: torch.Tensor) -> torch.Tensor:
    """What cli.md says the command does: pad bottom/right with transparent pixels to a multiple of 8,
    reconstruct (posterior mode), crop back."""
    padded, (h, w) = pad_to_multiple(x, 8)
    return reconstruct(vae, padded[None])[0, :, :h, :w]


@pytest.mark.parametrize("name", SAMPLES)
def test_cli_png_equals_in_process_reconstruction_and_not_the_input(written, vae, name):
    src, out = written
    x = load_rgba(src / name)
    got = load_rgba((out / name).with_suffix(".png"))
    want = _in_process(vae, x)
    assert got.shape == x.shape == want.shape
    err = (got - want).abs().max().item()
    assert err <= TOLERANCE, f"{name}: written PNG differs from reconstruct() by {err * 255:.2f}/255"
    change = (got - x).abs()
    assert change.max().item() > 0.2 and change.mean().item() > 2 / 255, f"{name}: the output is (nearly) the input"


def test_reconstruct_is_encode_posterior_mean_decode(vae):
    x = load_rgba(sample_dir() / SAMPLES[2])[:, :64, :72]  # 64 × 72: multiples of 8, no padding
    with torch.no_grad():
        post = vae.encode((x[None] * 2 - 1)).latent_dist
        want = ((vae.decode(post.mean).sample + 1) / 2).clamp(0, 1)[0]
    torch.testing.assert_close(reconstruct(vae, x[None])[0], want, rtol=0, atol=1e-5)
    assert reconstruct(vae, x[None]).shape == (1, 4, 64, 72)
