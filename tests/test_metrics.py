"""The ALPHA metric against independent computations (numpy, scikit-image, scipy, Pillow) and its edge cases."""

from __future__ import annotations

import io
import json

import numpy as np
import pytest
import torch
from PIL import Image
from scipy import ndimage
from skimage.metrics import structural_similarity

from alphavae.blending import BACKGROUNDS
from alphavae.blending import composite
from alphavae.metric.alpha import alpha_metric, gradient_error, merge_reports, sad, ssim, ssim_over_backgrounds

SK_SSIM = dict(gaussian_weights=True, sigma=1.5, use_sample_covariance=False, data_range=1.0)


def _pair(n: int = 3, size: int = 40, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """A target with soft alpha, some fully transparent pixels, and a noisy prediction of it."""
    g = torch.Generator().manual_seed(seed)
    target = torch.rand(n, 4, size, size, generator=g)
    target[:, 3] = torch.where(target[:, 3] < 0.25, torch.zeros(()), target[:, 3])
    pred = (target + 0.05 * torch.randn(target.shape, generator=g)).clamp(0, 1)
    return pred, target


def _np_composite(rgba: np.ndarray, bg: tuple[float, float, float]) -> np.ndarray:
    """(4, H, W) → (H, W, 3) float64, c·α + b·(1 − α)."""
    rgb, a = rgba[:3].transpose(1, 2, 0), rgba[3][..., None]
    return rgb * a + np.asarray(bg) * (1 - a)


def _np_psnr(x: np.ndarray, y: np.ndarray) -> float:
    return float(10 * np.log10(1 / np.mean((x - y) ** 2)))


def _np_luma(rgb: np.ndarray) -> np.ndarray:
    return rgb @ np.array([0.299, 0.587, 0.114])


def _flat(section: dict, prefix: str = "") -> dict:
    """Nested report section → {"a.b": value}, for pytest.approx."""
    out = {}
    for key, value in section.items():
        if isinstance(value, dict):
            out.update(_flat(value, f"{prefix}{key}."))
        else:
            out[f"{prefix}{key}"] = value
    return out


def test_psnr_of_a_uniform_offset_is_closed_form():
    target = torch.full((2, 4, 32, 32), 1.0)
    target[:, :3] = torch.linspace(0.1, 0.8, 32).view(1, 1, 1, 32)
    pred = target.clone()
    pred[:, :3] += 0.05  # opaque: every composite is the colour itself, MSE = 0.05²
    pred[:, 3] -= 0.1  # alpha offset: alpha PSNR = 10·log10(1 / 0.01) = 20 dB
    report = alpha_metric(pred, target, metrics=("psnr",), backgrounds=["black"])
    # the alpha change shows through black: composite = c·0.9, so compute that case in closed form too
    expected = 10 * np.log10(1 / np.mean((pred[:, :3].numpy() * 0.9 - target[:, :3].numpy()) ** 2))
    assert report.backgrounds["black"]["psnr"] == pytest.approx(expected, abs=1e-3)
    assert report.alpha["psnr"] == pytest.approx(20.0, abs=1e-3)
    opaque = pred.clone()
    opaque[:, 3] = 1
    assert alpha_metric(opaque, target, metrics=("psnr",)).mean["psnr"] == pytest.approx(10 * np.log10(400), abs=1e-3)


def test_per_background_psnr_and_luma_ssim_match_numpy_and_skimage():
    pred, target = _pair()
    report = alpha_metric(pred, target, metrics=("psnr", "ssim"))
    assert list(report.backgrounds) == list(BACKGROUNDS)
    for name, bg in BACKGROUNDS.items():
        ps, ss = [], []
        for p, t in zip(pred.double().numpy(), target.double().numpy()):
            cp, ct = _np_composite(p, bg), _np_composite(t, bg)
            ps.append(_np_psnr(cp, ct))
            ss.append(structural_similarity(_np_luma(ct), _np_luma(cp), **SK_SSIM))
        assert report.backgrounds[name]["psnr"] == pytest.approx(np.mean(ps), abs=1e-3)
        assert report.backgrounds[name]["ssim"] == pytest.approx(np.mean(ss), abs=1e-5)
        np.testing.assert_allclose(report.per_image["backgrounds"][name]["psnr"].numpy(), ps, atol=1e-3)
    assert report.mean["psnr"] == pytest.approx(np.mean([v["psnr"] for v in report.backgrounds.values()]))


def test_rgb_ssim_matches_skimage_channel_mean():
    pred, target = _pair(n=2, size=33)
    rgb_p, rgb_t = pred[:, :3], target[:, :3]
    ours = ssim(rgb_p, rgb_t, mode="rgb")
    for i in range(2):
        ref = structural_similarity(rgb_t[i].double().numpy(), rgb_p[i].double().numpy(), channel_axis=0, **SK_SSIM)
        assert float(ours[i]) == pytest.approx(ref, abs=1e-6)
    with pytest.raises(ValueError, match="ssim_mode"):
        ssim(rgb_p, rgb_t, mode="ycbcr")


@pytest.mark.parametrize("mode", ["luma", "rgb"])
def test_ssim_from_the_affine_composite_equals_ssim_of_each_composite(mode):
    pred, target = _pair(n=2, size=30, seed=3)
    colours = torch.tensor(list(BACKGROUNDS.values()))
    mask = target[:, 3:] > 0
    fast = ssim_over_backgrounds(pred, target, colours, mode, mask)
    for k, colour in enumerate(colours):
        direct = ssim(composite(pred, colour.tolist()), composite(target, colour.tolist()), mode, mask)
        torch.testing.assert_close(fast[k], direct, rtol=0, atol=1e-8)  # the direct composite is float32


def test_identical_images_give_inf_psnr_unit_ssim_and_valid_json():
    _, target = _pair(n=2)
    report = alpha_metric(target, target.clone(), metrics=("psnr", "ssim"), masked=True)
    assert report.mean["psnr"] == float("inf") and report.alpha["psnr"] == float("inf")
    assert report.mean["ssim"] == pytest.approx(1.0, abs=1e-12)
    assert report.alpha["sad"] == 0 and report.alpha["grad"] == 0
    data = report.to_dict()
    json.dumps(data, allow_nan=False)  # valid JSON: no Infinity
    assert data["mean"]["psnr"] is None and data["mean"]["ssim"] == pytest.approx(1.0)
    assert any("mean.psnr is inf" in n for n in data["notes"])


def test_all_transparent_images_ignore_hidden_colour():
    g = torch.Generator().manual_seed(1)
    pred = torch.rand(2, 4, 24, 24, generator=g)
    target = torch.rand(2, 4, 24, 24, generator=g)
    pred[:, 3] = 0
    target[:, 3] = 0  # different colours, but all invisible
    report = alpha_metric(pred, target, metrics=("psnr", "ssim"), masked=True)
    assert report.mean["psnr"] == float("inf")
    assert report.mean["ssim"] == pytest.approx(1.0, abs=1e-12)
    assert report.masked["mean"]["psnr"] is None and report.masked["alpha"]["psnr"] is None
    assert any("no pixel with target alpha > 0" in n for n in report.notes)


def test_alpha_metrics_match_numpy_and_scipy():
    pred, target = _pair(n=2, size=36)
    report = alpha_metric(pred, target, metrics=("psnr",))
    pa, ta = pred[:, 3].double().numpy(), target[:, 3].double().numpy()
    sads, grads, psnrs = [], [], []
    for p, t in zip(pa, ta):
        sads.append(np.abs(p - t).sum() / 1000)
        mag = [np.hypot(ndimage.gaussian_filter(a, 1.4, order=(0, 1), mode="nearest"),
                        ndimage.gaussian_filter(a, 1.4, order=(1, 0), mode="nearest")) for a in (p, t)]
        grads.append(((mag[0] - mag[1]) ** 2).sum() / 1000)
        psnrs.append(_np_psnr(p, t))
    assert report.alpha["sad"] == pytest.approx(np.mean(sads), rel=1e-5)
    assert report.alpha["grad"] == pytest.approx(np.mean(grads), rel=1e-4)
    assert report.alpha["psnr"] == pytest.approx(np.mean(psnrs), abs=1e-3)
    assert float(sad(pred[:1, 3:], target[:1, 3:])) == pytest.approx(sads[0], rel=1e-5)
    assert float(gradient_error(pred[:1, 3:], target[:1, 3:])) == pytest.approx(grads[0], rel=1e-4)


def test_masked_metrics_are_restricted_to_visible_target_pixels():
    pred, target = _pair(n=2, size=40)
    report = alpha_metric(pred, target, metrics=("psnr", "ssim"), masked=True, backgrounds=["gray", "blue"])
    for name in ("gray", "blue"):
        ps, ss = [], []
        for p, t in zip(pred.double().numpy(), target.double().numpy()):
            mask = t[3] > 0
            cp, ct = _np_composite(p, BACKGROUNDS[name]), _np_composite(t, BACKGROUNDS[name])
            ps.append(float(10 * np.log10(1 / np.mean((cp[mask] - ct[mask]) ** 2))))
            _, smap = structural_similarity(_np_luma(ct), _np_luma(cp), full=True, **SK_SSIM)
            ss.append(smap[5:-5, 5:-5][mask[5:-5, 5:-5]].mean())
        assert report.masked["backgrounds"][name]["psnr"] == pytest.approx(np.mean(ps), abs=1e-3)
        assert report.masked["backgrounds"][name]["ssim"] == pytest.approx(np.mean(ss), abs=1e-5)
    mask = target[:, 3] > 0
    expected_sad = np.mean([((pred[i, 3] - target[i, 3]).abs() * mask[i]).sum().item() / 1000 for i in range(2)])
    assert report.masked["alpha"]["sad"] == pytest.approx(expected_sad, rel=1e-5)
    assert report.masked["alpha"]["sad"] < report.alpha["sad"]
    assert "masked" in report.to_dict()


def test_jpeg_variant_matches_an_independent_pillow_round_trip():
    pred, target = _pair(n=2, size=32)
    report = alpha_metric(pred, target, metrics=("psnr",), backgrounds=["white"], jpeg_quality=75)

    def jpeg(rgb: np.ndarray) -> np.ndarray:
        buf = io.BytesIO()
        Image.fromarray((rgb.clip(0, 1) * 255 + 0.5).astype(np.uint8)).save(buf, format="JPEG", quality=75)
        return np.asarray(Image.open(io.BytesIO(buf.getvalue())), dtype=np.float64) / 255

    expected = np.mean([_np_psnr(jpeg(_np_composite(p, (1, 1, 1))), jpeg(_np_composite(t, (1, 1, 1))))
                        for p, t in zip(pred.double().numpy(), target.double().numpy())])
    assert report.backgrounds["white"]["psnr"] == pytest.approx(expected, abs=0.01)
    assert any("JPEG" in n for n in report.notes)


def test_batching_and_custom_backgrounds_do_not_change_results():
    pred, target = _pair(n=5, size=24)
    a = alpha_metric(pred, target, metrics=("psnr", "ssim"), batch_size=2)
    b = alpha_metric(pred, target, metrics=("psnr", "ssim"), batch_size=16)
    for name in a.backgrounds:
        for metric in ("psnr", "ssim"):
            assert a.backgrounds[name][metric] == pytest.approx(b.backgrounds[name][metric], rel=1e-9)
    custom = alpha_metric(pred, target, metrics=("psnr",), backgrounds={"mine": BACKGROUNDS["red"]})
    assert custom.backgrounds["mine"]["psnr"] == pytest.approx(a.backgrounds["red"]["psnr"], rel=1e-9)
    assert a.per_image["alpha"]["sad"].shape == (5,)


def test_bad_input_is_rejected_with_the_shapes_named():
    pred, target = _pair(n=2, size=24)
    with pytest.raises(ValueError, match=r"\(2, 4, 24, 24\).*\(2, 4, 20, 24\)"):
        alpha_metric(pred, target[..., :20, :])
    with pytest.raises(ValueError, match="outside"):
        alpha_metric(pred * 2, target)
    with pytest.raises(ValueError, match="unknown metric"):
        alpha_metric(pred, target, metrics=("fid",))
    with pytest.raises(ValueError, match="unknown background"):
        alpha_metric(pred, target, backgrounds=["orange"])
    with pytest.raises(ValueError, match="ssim_mode"):
        alpha_metric(pred, target, metrics=("psnr",), ssim_mode="y")
    with pytest.raises(ValueError, match="jpeg_quality"):
        alpha_metric(pred, target, metrics=("psnr",), jpeg_quality=0)
    with pytest.raises(ValueError, match="at least 11"):
        alpha_metric(pred[..., :8, :8], target[..., :8, :8], metrics=("ssim",))


def test_table_names_every_background_and_the_mean():
    pred, target = _pair(n=1, size=24)
    table = alpha_metric(pred, target, metrics=("psnr", "ssim"), masked=True).table()
    for name in [*BACKGROUNDS, "mean", "alpha only", "target alpha > 0"]:
        assert name in table


def test_merging_reports_equals_one_report_over_all_images():
    pred, target = _pair(n=4, size=24)
    target[3, 3] = 0  # one image with no visible pixel
    whole = alpha_metric(pred, target, metrics=("psnr", "ssim"), masked=True)
    parts = [alpha_metric(pred[i:j], target[i:j], metrics=("psnr", "ssim"), masked=True) for i, j in ((0, 1), (1, 4))]
    merged = merge_reports(parts)
    assert merged.n_images == 4 and merged.notes == whole.notes
    for section in ("backgrounds", "mean", "alpha", "masked"):
        assert _flat(merged.to_dict()[section]) == pytest.approx(_flat(whole.to_dict()[section]), rel=1e-6)
    with pytest.raises(ValueError, match="cannot merge"):
        merge_reports([parts[0], alpha_metric(pred, target, metrics=("psnr",))])
