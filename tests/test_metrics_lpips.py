"""LPIPS in the ALPHA metric with the real ImageNet backbones (``alphavae weights fetch``): ``alphavae eval``
against an independent computation with the ``lpips`` package, and the honest path where none were fetched."""

from __future__ import annotations

import json
import shutil

import lpips
import pytest
import torch
from safetensors.torch import load_file

from alphavae.blending import BACKGROUNDS, composite
from alphavae.cli import main
from alphavae.imageio import list_images, load_rgba, resize_long_side, save_png
from alphavae.metric.alpha import alpha_metric
from alphavae.metric.backbones import FILES, find_backbone, lpips_or_reason
from alphavae.paths import sample_dir


def independent_lpips(net: str) -> lpips.LPIPS:
    """LPIPS built by the ``lpips`` package itself, its backbone slices filled from the converted file by hand."""
    model = lpips.LPIPS(net=net, version="0.1", pretrained=True, pnet_rand=True, verbose=False).eval()
    features = {k: v.float() for k, v in load_file(str(find_backbone(net))).items()}
    slice_of = {i: name for name, block in model.net.named_children() for i, _ in block.named_children()}
    model.net.load_state_dict({f"{slice_of[k.split('.')[1]]}.{k.removeprefix('features.')}": v for k, v in features.items()})
    return model


@pytest.fixture(scope="module")
def pair_folders(tmp_path_factory):
    """Four sample images (long side 96, to keep VGG on a CPU quick) and a damaged copy of each (blurred colour,
    alpha shifted by a pixel)."""
    root = tmp_path_factory.mktemp("pairs")
    for path in list_images(sample_dir())[:4]:
        x = resize_long_side(load_rgba(path), 96)
        damaged = x.clone()
        damaged[:3] = torch.nn.functional.avg_pool2d(x[None, :3], 3, 1, 1)[0]
        damaged[3] = torch.roll(x[3], 1, dims=-1)
        save_png(x, root / "target" / f"{path.stem}.png")
        save_png(damaged, root / "pred" / f"{path.stem}.png")
    return root


@pytest.mark.parametrize("net", ["alex", "vgg"])
def test_eval_lpips_matches_the_lpips_package_on_every_background(pair_folders, tmp_path, capsys, net):
    out = tmp_path / "eval.json"
    assert main(["eval", "--pred", str(pair_folders / "pred"), "--target", str(pair_folders / "target"),
                 "--metrics", "psnr,ssim,lpips", "--lpips-net", net, "--device", "cpu", "--json", str(out)]) == 0
    report = json.loads(out.read_text())
    model = independent_lpips(net)
    pairs = [(load_rgba(p)[None], load_rgba(t)[None]) for p, t in zip(list_images(pair_folders / "pred"),
                                                                        list_images(pair_folders / "target"))]
    assert set(report["backgrounds"]) == set(BACKGROUNDS)
    for name, rgb in BACKGROUNDS.items():
        with torch.no_grad():
            expected = sum(model(composite(p, rgb) * 2 - 1, composite(t, rgb) * 2 - 1).item() for p, t in pairs) / len(pairs)
        assert report["backgrounds"][name]["lpips"] == pytest.approx(expected, abs=1e-3), name
    assert report["mean"]["lpips"] == pytest.approx(sum(b["lpips"] for b in report["backgrounds"].values()) / 9, abs=1e-6)
    assert 0.01 < report["mean"]["lpips"] < 1  # a real backbone sees the damage (a random one scores ~0.04 for anything)


def test_lpips_of_an_image_with_itself_is_zero():
    model, reason = lpips_or_reason("alex")
    assert reason is None
    x = load_rgba(list_images(sample_dir())[0])[None]
    report = alpha_metric(x, x.clone(), metrics=("lpips",), lpips_model=model, backgrounds=["white", "black"])
    assert report.mean["lpips"] == pytest.approx(0.0, abs=1e-6)


def test_without_fetched_weights_lpips_is_null_with_the_command_to_run(monkeypatch, tmp_path, pair_folders):
    monkeypatch.setenv("ALPHAVAE_CACHE", str(tmp_path / "empty"))
    x = torch.rand(1, 4, 32, 32)
    report = alpha_metric(x, x.clone(), backgrounds=["gray"])
    assert report.mean["lpips"] is None and report.backgrounds["gray"]["lpips"] is None
    assert any(n.startswith("lpips unavailable") and "alphavae weights fetch" in n for n in report.notes)


def test_an_explicit_weights_folder_without_the_files_is_named(pair_folders, tmp_path, capsys):
    empty = tmp_path / "no-weights"
    empty.mkdir()
    code = main(["eval", "--pred", str(pair_folders / "pred"), "--target", str(pair_folders / "target"),
                 "--lpips-weights", str(empty), "--device", "cpu"])
    err = capsys.readouterr().err.strip()
    assert code == 2 and len(err.splitlines()) == 1 and str(empty) in err and "alphavae weights fetch" in err
    shutil.copy(find_backbone("alex"), empty / FILES["alex"])
    assert main(["eval", "--pred", str(pair_folders / "pred"), "--target", str(pair_folders / "target"),
                 "--lpips-weights", str(empty), "--device", "cpu"]) == 0
