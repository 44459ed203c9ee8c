"""``benchmarks/soft_alpha_sources.py``: alpha classes, the edge band, and where reconstructed soft alpha lies."""

from __future__ import annotations

import pytest
import torch
from script_modules import load_script

sources = load_script("benchmarks/soft_alpha_sources.py")


def square_image() -> torch.Tensor:
    """One 10×10 RGBA image: transparent, an opaque 4×4 square at rows/cols 3–6."""
    image = torch.zeros(1, 4, 10, 10)
    image[:, :, 3:7, 3:7] = 1.0
    return image


def test_the_edge_band_lies_within_the_radius_of_another_class():
    classes = sources.alpha_classes(square_image()[:, 3])
    assert classes[0, 0, 0] == 0 and classes[0, 4, 4] == 2
    edge = sources.near_other_class(classes, 1)[0]
    assert edge[2, 2] and edge[3, 3] and edge[2, 4]  # one pixel from the square's corner or side, either side
    assert not edge[0, 0] and not edge[4, 4] and not edge[1, 4]  # two or more pixels from any other class


def test_sources_put_each_soft_reconstructed_pixel_in_its_place():
    target = square_image()
    recon = target.clone()
    recon[0, 3, 0, 0] = 0.5  # a transparent interior pixel left soft
    recon[0, 3, 3, 3] = 0.5  # an opaque edge pixel left soft
    recon[0, 3, 5, 5] = 1.3  # an opaque pixel past the bound: clamped to 1, not soft
    table = sources.sources(target, recon, 1)
    assert table["all"]["left_soft"] == pytest.approx(2 / 100) and table["all"]["real_soft"] == 0
    assert table["transparent/interior"]["of_recon_soft"] == pytest.approx(0.5)
    assert table["opaque/edge"]["of_recon_soft"] == pytest.approx(0.5)
    assert table["opaque/edge"]["left_soft"] == pytest.approx(1 / 12)  # the square's 12 border pixels
    assert sum(row["share"] for key, row in table.items() if key != "all") == pytest.approx(1.0)


def test_opaque_interiors_are_ranked_by_abmse_weight_on_their_alpha():
    """Grey (near ImageNet's mean) weighs an alpha error less than white does; the undershoot of each group is
    its own."""
    target = torch.zeros(1, 4, 12, 12)
    target[0, 3] = 1.0
    target[0, :3, :, :6] = 0.45  # grey: (c − E[b])² small
    target[0, :3, :, 6:] = 1.0  # white: large
    recon = target.clone()
    recon[0, 3, :, :6] = 0.9  # the grey half left soft
    rows = sources.opaque_by_abmse_weight(target, recon, radius=0, bins=2)
    assert rows[0]["weight_to"] < rows[1]["weight_from"]
    assert rows[0]["left_soft"] == pytest.approx(1.0) and rows[1]["left_soft"] == pytest.approx(0.0)
    assert rows[0]["undershoot"] == pytest.approx(0.1, abs=1e-6)
