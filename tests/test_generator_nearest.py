"""benchmarks/generator_nearest.py: nearest neighbours by cosine distance, and the near-copy share against the held-out
images' own nearest distances."""

import pytest
import torch
import torch.nn.functional as F
from script_modules import load_script

nearest_script = load_script("benchmarks/generator_nearest.py")


def test_nearest_finds_each_querys_closest_key_by_cosine_distance():
    keys = F.normalize(torch.tensor([[1.0, 0.0], [0.0, 1.0], [1.0, 1.0]]), dim=1)
    queries = F.normalize(torch.tensor([[0.9, 0.1], [0.1, 2.0], [3.0, 3.1]]), dim=1)
    distance, index = nearest_script.nearest(queries, keys)
    assert index.tolist() == [0, 1, 2]
    torch.testing.assert_close(distance, 1 - (queries * keys[index]).sum(1))


def test_a_copying_generator_shows_in_the_near_copy_share():
    heldout = torch.linspace(0.05, 0.4, 100)  # the yardstick: new images' nearest-training distances
    new = nearest_script.copy_report(torch.linspace(0.06, 0.5, 50), heldout)
    copy = nearest_script.copy_report(torch.cat([torch.zeros(25), torch.linspace(0.1, 0.5, 25)]), heldout)
    assert new["near_copy_line"] == pytest.approx(torch.quantile(heldout, nearest_script.NEAR_QUANTILE).item())
    assert new["near_copy_share"] < 0.1 and copy["near_copy_share"] == pytest.approx(0.5)
    assert new["heldout_median_nn_distance"] == pytest.approx(heldout.median().item())
