"""benchmarks/alpha_edges.py: the edge band lies around the crossings of ½, and the error splits between it and the rest."""

import math
import sys
from pathlib import Path

import pytest
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
from alpha_edges import edge_band, split_error  # noqa: E402


def _square() -> torch.Tensor:
    alpha = torch.zeros(2, 1, 12, 12)
    alpha[..., 4:8, 4:8] = 1.0
    return alpha


def test_edge_band_of_a_square_is_the_ring_one_pixel_either_side_of_its_outline():
    band = edge_band(_square(), 1)[0, 0]
    ring = torch.zeros(12, 12, dtype=torch.bool)
    ring[3:9, 3:9] = True
    ring[5:7, 5:7] = False
    assert torch.equal(band, ring)


def test_error_splits_between_the_band_and_the_rest():
    alpha = _square()
    pred = alpha.clone()
    pred[..., 4, 4:8] = 0.5  # the square's top row: on the band, squared error 4 · 0.25
    pred[..., 0, 0] = 0.1  # far from the square: squared error 0.01
    r = split_error(pred, alpha, 1)
    assert r["edge_error_pct"] == pytest.approx(100 * 1.0 / 1.01)
    assert r["edge_pixels_pct"] == pytest.approx(100 * 32 / 144)
    assert r["edge_psnr"] == pytest.approx(10 * math.log10(32 / 1.0), abs=1e-4)
    assert r["off_band_psnr"] == pytest.approx(10 * math.log10(112 / 0.01), abs=1e-4)
    assert r["alpha_psnr"] == pytest.approx(10 * math.log10(144 / 1.01), abs=1e-4)


def test_an_image_without_error_in_a_region_is_left_out_of_that_mean_and_counted():
    alpha = _square()
    pred = alpha.clone()
    pred[0, :, 4, 4:8] = 0.5  # only the first image has an error, and only on the band
    r = split_error(pred, alpha, 1)
    assert (r["alpha_images"], r["edge_images"], r["off_band_images"]) == (1, 1, 0)
    assert r["edge_psnr"] == pytest.approx(10 * math.log10(32 / 1.0), abs=1e-4)
    assert math.isnan(r["off_band_psnr"])
