"""Every image mode read to straight-alpha RGBA with the right values, lossless saving, premultiplied resizing.

Expected values are computed independently from the arrays written (uint8/255, uint16/65535, the palette),
never by calling the loader.
"""

from __future__ import annotations

import numpy as np
import png
import pytest
import torch
import torch.nn.functional as F
from PIL import Image

from alphavae.blending import premultiply, unpremultiply
from alphavae.imageio import (
    ImageReadError,
    center_crop,
    list_images,
    load_rgba,
    pad_to_multiple,
    resize_long_side,
    resize_premultiplied,
    save_png,
)

H, W = 12, 17  # odd sizes catch transposed axes


def _rng(seed: int = 0) -> np.random.Generator:
    return np.random.default_rng(seed)


def _as_chw(arr: np.ndarray, scale: float) -> torch.Tensor:
    return torch.from_numpy(arr.astype(np.float64) / scale).permute(2, 0, 1).float()


def _close(a: torch.Tensor, b: torch.Tensor, atol: float = 1e-6) -> None:
    assert a.dtype == torch.float32
    assert a.shape == b.shape
    torch.testing.assert_close(a, b, atol=atol, rtol=0)


# --- 8-bit modes through Pillow ---------------------------------------------------------------------------


def test_rgba(tmp_path):
    arr = _rng().integers(0, 256, (H, W, 4), dtype=np.uint8)
    Image.fromarray(arr, "RGBA").save(tmp_path / "x.png")
    _close(load_rgba(tmp_path / "x.png"), _as_chw(arr, 255))


def test_rgb_is_opaque(tmp_path):
    arr = _rng().integers(0, 256, (H, W, 3), dtype=np.uint8)
    Image.fromarray(arr, "RGB").save(tmp_path / "x.png")
    x = load_rgba(tmp_path / "x.png")
    _close(x[:3], _as_chw(arr, 255))
    assert (x[3] == 1).all()


def test_grey_l(tmp_path):
    g = _rng().integers(0, 256, (H, W), dtype=np.uint8)
    Image.fromarray(g, "L").save(tmp_path / "x.png")
    x = load_rgba(tmp_path / "x.png")
    for c in range(3):
        _close(x[c], torch.from_numpy(g / 255).float())
    assert (x[3] == 1).all()


def test_grey_la(tmp_path):
    la = _rng().integers(0, 256, (H, W, 2), dtype=np.uint8)
    Image.fromarray(la, "LA").save(tmp_path / "x.png")
    x = load_rgba(tmp_path / "x.png")
    for c in range(3):
        _close(x[c], torch.from_numpy(la[..., 0] / 255).float())
    _close(x[3], torch.from_numpy(la[..., 1] / 255).float())


def _palette_image() -> tuple[Image.Image, np.ndarray, np.ndarray]:
    palette = _rng(1).integers(0, 256, (4, 3), dtype=np.uint8)
    index = _rng(2).integers(0, 4, (H, W), dtype=np.uint8)
    im = Image.fromarray(index, "P")
    im.putpalette(palette.flatten().tolist() + [0] * (256 * 3 - 12))
    return im, palette, index


def test_palette_with_trns_alpha(tmp_path):
    im, palette, index = _palette_image()
    alphas = np.array([0, 64, 200, 255], dtype=np.uint8)
    im.save(tmp_path / "x.png", transparency=alphas.tobytes())
    x = load_rgba(tmp_path / "x.png")
    _close(x[:3], _as_chw(palette[index], 255))
    _close(x[3], torch.from_numpy(alphas[index] / 255).float())


def test_palette_with_one_transparent_index(tmp_path):
    im, palette, index = _palette_image()
    im.save(tmp_path / "x.gif", transparency=2)
    x = load_rgba(tmp_path / "x.gif")
    _close(x[3], torch.from_numpy((index != 2).astype(np.float64)).float())
    visible = torch.from_numpy(index != 2)
    _close(x[:3][:, visible], _as_chw(palette[index], 255)[:, visible])


def test_palette_without_transparency(tmp_path):
    im, palette, index = _palette_image()
    im.save(tmp_path / "x.png")
    x = load_rgba(tmp_path / "x.png")
    _close(x[:3], _as_chw(palette[index], 255))
    assert (x[3] == 1).all()


def test_cmyk(tmp_path):
    cmyk = _rng().integers(0, 256, (H, W, 4), dtype=np.uint8)
    Image.fromarray(cmyk, "CMYK").save(tmp_path / "x.tif")  # TIFF keeps CMYK losslessly
    x = load_rgba(tmp_path / "x.tif")
    c, k = cmyk[..., :3] / 255, cmyk[..., 3:] / 255
    _close(x[:3], _as_chw((1 - c) * (1 - k), 1), atol=1.01 / 255)  # the usual naive CMYK → RGB
    assert (x[3] == 1).all()


def test_lossless_webp(tmp_path):
    arr = _rng().integers(0, 256, (H, W, 4), dtype=np.uint8)
    arr[arr[..., 3] == 0, :3] = 0  # WebP may drop colour under α = 0 unless told otherwise
    Image.fromarray(arr, "RGBA").save(tmp_path / "x.webp", lossless=True, exact=True)
    _close(load_rgba(tmp_path / "x.webp"), _as_chw(arr, 255))


# --- 16-bit images keep their precision ------------------------------------------------------------------


def _png16(path, arr: np.ndarray, greyscale: bool, alpha: bool) -> None:
    h, w = arr.shape[:2]
    writer = png.Writer(w, h, greyscale=greyscale, alpha=alpha, bitdepth=16)
    with open(path, "wb") as f:
        writer.write(f, arr.reshape(h, -1).tolist())


@pytest.mark.parametrize(
    ("planes", "greyscale", "alpha"), [(1, True, False), (2, True, True), (3, False, False), (4, False, True)]
)
def test_png16_precision(tmp_path, planes, greyscale, alpha):
    arr = _rng(planes).integers(0, 65536, (H, W, planes), dtype=np.uint16)
    arr[0, 0] = 1000  # 1000/65535 is 0.0153; an 8-bit read gives 0.0157 — far outside the tolerance
    _png16(tmp_path / "x.png", arr, greyscale, alpha)
    x = load_rgba(tmp_path / "x.png")
    ref = _as_chw(arr, 65535)
    colour, a = (ref[:1].expand(3, -1, -1), ref[1:]) if greyscale else (ref[:3], ref[3:])
    _close(x[:3], colour, atol=1e-7)
    _close(x[3:], a if alpha else torch.ones(1, H, W), atol=1e-7)


def test_tiff16_grey_precision(tmp_path):
    g = _rng().integers(0, 65536, (H, W), dtype=np.uint16)
    g[0, 0] = 1000
    Image.fromarray(g).save(tmp_path / "x.tif")
    x = load_rgba(tmp_path / "x.tif")
    _close(x[0], torch.from_numpy(g / 65535).float(), atol=1e-7)
    assert (x[3] == 1).all()


# --- unreadable files name themselves ---------------------------------------------------------------------


def test_missing_file_is_named(tmp_path):
    with pytest.raises(ImageReadError, match="nothere.png"):
        load_rgba(tmp_path / "nothere.png")


@pytest.mark.parametrize("content", [b"", b"not an image at all", b"\x89PNG\r\n\x1a\n" + b"\x00" * 40])
def test_corrupt_file_is_named(tmp_path, content):
    (tmp_path / "broken.png").write_bytes(content)
    with pytest.raises(ImageReadError, match="broken.png"):
        load_rgba(tmp_path / "broken.png")


def test_truncated_png_is_named(tmp_path):
    Image.fromarray(_rng().integers(0, 256, (64, 64, 4), dtype=np.uint8), "RGBA").save(tmp_path / "x.png")
    data = (tmp_path / "x.png").read_bytes()
    (tmp_path / "cut.png").write_bytes(data[: len(data) // 2])
    with pytest.raises(ImageReadError, match="cut.png"):
        load_rgba(tmp_path / "cut.png")


def test_truncated_png16_is_named(tmp_path):
    _png16(tmp_path / "x.png", _rng().integers(0, 65536, (64, 64, 4), dtype=np.uint16), False, True)
    data = (tmp_path / "x.png").read_bytes()
    (tmp_path / "cut16.png").write_bytes(data[: len(data) // 2])
    with pytest.raises(ImageReadError, match="cut16.png"):
        load_rgba(tmp_path / "cut16.png")


# --- saving -----------------------------------------------------------------------------------------------


def test_rgba_png_round_trip_is_lossless(tmp_path):
    arr = _rng().integers(0, 256, (H, W, 4), dtype=np.uint8)
    x = _as_chw(arr, 255)
    save_png(x, tmp_path / "out" / "x.png")
    with Image.open(tmp_path / "out" / "x.png") as im:
        assert im.mode == "RGBA"
        assert (np.asarray(im) == arr).all()  # colour under α = 0 is kept too
    assert torch.equal(load_rgba(tmp_path / "out" / "x.png"), x)
    assert [p.name for p in (tmp_path / "out").iterdir()] == ["x.png"]  # no temporary file left behind


def test_save_rounds_to_nearest_and_clamps(tmp_path):
    x = torch.tensor([0.5 / 255 + 1e-4, 1.49 / 255, 1.2, -0.3]).view(4, 1, 1).expand(4, 2, 2).clone()
    save_png(x, tmp_path / "x.png")
    assert np.asarray(Image.open(tmp_path / "x.png"))[0, 0].tolist() == [1, 1, 255, 0]


def test_save_rgb(tmp_path):
    arr = _rng().integers(0, 256, (H, W, 3), dtype=np.uint8)
    save_png(_as_chw(arr, 255), tmp_path / "x.png")
    with Image.open(tmp_path / "x.png") as im:
        assert im.mode == "RGB" and (np.asarray(im) == arr).all()


def test_save_rejects_a_bad_shape(tmp_path):
    with pytest.raises(ValueError, match="shape"):
        save_png(torch.zeros(2, 4, 4), tmp_path / "x.png")
    assert not (tmp_path / "x.png").exists()


# --- premultiplied alpha ----------------------------------------------------------------------------------


def test_premultiply_round_trip():
    x = torch.rand(2, 4, H, W, generator=torch.Generator().manual_seed(0))
    x[:, 3][x[:, 3] < 0.05] = 0  # some fully transparent pixels
    pm = premultiply(x)
    _close(pm[:, :3], x[:, :3] * x[:, 3:])
    _close(pm[:, 3], x[:, 3])
    back = unpremultiply(pm)
    visible = (x[:, 3:] > 0).expand(-1, 3, -1, -1)
    _close(back[:, :3][visible], x[:, :3][visible], atol=1e-5)
    assert (back[:, :3][~visible] == 0).all()  # colour under α = 0 is undefined: set to 0
    _close(back[:, 3], x[:, 3])


def _blue_disc_on_hidden_red(size: int = 64) -> torch.Tensor:
    """Opaque blue disc with a soft edge; every pixel with α = 0 holds bright red (invisible)."""
    yy, xx = torch.meshgrid(torch.arange(size), torch.arange(size), indexing="ij")
    r = torch.hypot(yy - size / 2 + 0.5, xx - size / 2 + 0.5) / (size / 2)
    alpha = ((0.7 - r) * 6).clamp(0, 1)
    colour = torch.stack([(alpha == 0).float(), torch.zeros_like(alpha), (alpha > 0).float()])
    return torch.cat([colour, alpha[None]])


@pytest.mark.parametrize("new_size", [(23, 23), (48, 48), (150, 150)])  # shrink hard, shrink, enlarge
def test_premultiplied_resize_never_bleeds_hidden_colour(new_size):
    x = _blue_disc_on_hidden_red()
    y = resize_premultiplied(x, new_size)
    assert y.shape == (4, *new_size)
    visible = y[3] > 0.02
    assert visible.any() and ((y[3] > 0.02) & (y[3] < 0.98)).any()  # there are soft edges to look at
    assert y[0][visible].max() < 1e-4  # no red anywhere visible
    assert y[2][visible].min() > 0.99  # the edge stays the disc's blue
    # The check can fail: a straight-alpha resize, as the published code does it, turns the edges red.
    naive = F.interpolate(x[None], size=new_size, mode="bicubic", antialias=True, align_corners=False)[0]
    assert naive[0][visible].max() > 0.2


def test_resize_long_side_shape_and_identity():
    x = _blue_disc_on_hidden_red()[:, :, :40]  # 64 × 40
    assert resize_long_side(x, 32).shape == (4, 32, 20)
    assert resize_long_side(x[None], 128).shape == (1, 4, 128, 80)
    assert resize_long_side(x, 64) is x  # same size: untouched, hidden colour included


def test_center_crop():
    x = torch.arange(4 * 6 * 9, dtype=torch.float32).view(4, 6, 9)
    c = center_crop(x, 4)
    assert torch.equal(c, x[:, 1:5, 2:6])
    with pytest.raises(ValueError, match="crop"):
        center_crop(x, 7)


@pytest.mark.parametrize(("h", "w"), [(12, 17), (16, 8), (1, 9)])
def test_pad_to_multiple(h, w):
    x = torch.rand(4, h, w, generator=torch.Generator().manual_seed(h * w)) * 0.5 + 0.5
    padded, size = pad_to_multiple(x, 8)
    assert size == (h, w)
    assert padded.shape == (4, -(-h // 8) * 8, -(-w // 8) * 8)
    assert torch.equal(padded[:, :h, :w], x)  # original pixels at the top left, unchanged
    rest = torch.ones(padded.shape[1:], dtype=torch.bool)
    rest[:h, :w] = False
    assert (padded[:, rest] == 0).all()  # padding is fully transparent
    batched, _ = pad_to_multiple(x[None], 8)
    assert torch.equal(batched[0], padded)


def test_list_images(tmp_path):
    (tmp_path / "b" / "deep").mkdir(parents=True)
    for name in ["a.png", "b/deep/c.WEBP", "b/d.jpg", "notes.txt", "b/e.csv"]:
        (tmp_path / name).write_bytes(b"")
    assert [p.relative_to(tmp_path).as_posix() for p in list_images(tmp_path)] == ["a.png", "b/d.jpg", "b/deep/c.WEBP"]
    with pytest.raises(NotADirectoryError, match="nope"):
        list_images(tmp_path / "nope")


def test_png16_grey_with_trns_colour_key(tmp_path):
    g = _rng().integers(0, 65536, (H, W), dtype=np.uint16)
    g[2:5, 3:9] = 4321  # the transparent grey value
    h, w = g.shape
    with open(tmp_path / "x.png", "wb") as f:
        png.Writer(w, h, greyscale=True, bitdepth=16, transparent=4321).write(f, g.tolist())
    x = load_rgba(tmp_path / "x.png")
    _close(x[3], torch.from_numpy((g != 4321).astype(np.float64)).float())
    _close(x[0], torch.from_numpy(g / 65535).float(), atol=1e-7)
