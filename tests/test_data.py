"""The shipped RGBA sample, the script that chooses it from a built set, and the folder dataset.

(``alphavae data fetch``, which builds the set, is tested in ``test_data_fetch.py``.)"""

from __future__ import annotations

import csv
import random
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from alphavae.training.data import RGBAFolder
from alphavae.training.openclipart import LICENSE, Entry, write_manifest
from alphavae.paths import sample_dir
from alphavae.imageio import ImageReadError, load_rgba

from script_modules import load_script


rebuild = load_script("scripts/rebuild_openclipart.py")


# --- the shipped sample ----------------------------------------------------------------------------------


def _manifest(folder: Path) -> list[dict]:
    with (folder / "manifest.csv").open(newline="") as f:
        return list(csv.DictReader(f))


def test_sample_manifest_matches_files():
    folder = sample_dir()
    rows = _manifest(folder)
    assert 24 <= len(rows) <= 32
    assert list(rows[0]) == ["file", "package", "source", "license", "width", "height", "soft_alpha"]
    listed = {r["file"] for r in rows}
    on_disk = {p.relative_to(folder).as_posix() for p in folder.rglob("*.png")}
    assert listed == on_disk
    for r in rows:
        with Image.open(folder / r["file"]) as im:
            assert im.format == "PNG" and im.mode == "RGBA", r["file"]
            assert im.size == (int(r["width"]), int(r["height"])), r["file"]
            alpha = np.asarray(im)[..., 3]
        assert max(im.size) == 256
        assert r["package"] == "openclipart-png" and "Public Domain" in r["license"]
        assert float(r["soft_alpha"]) == pytest.approx(((alpha > 0) & (alpha < 255)).mean(), abs=1e-4)
        assert (alpha == 0).any() and (alpha > 0).any(), f"{r['file']} has no real transparency"


def test_sample_is_small_and_varied():
    rows = _manifest(sample_dir())
    assert sum((sample_dir() / r["file"]).stat().st_size for r in rows) <= 5 * 2**20
    assert len({r["file"].split("/")[0] for r in rows}) >= 20  # categories
    soft = sorted(float(r["soft_alpha"]) for r in rows)
    assert soft[0] < 0.015 and soft[-1] > 0.4  # near-hard cut-outs and large soft regions


def test_sample_rule_is_deterministic_and_covers_categories():
    entries = [
        Entry(f"cat{i % 5}/img{i}.webp", "p", "s", "l", 256, 100 + i, (0.005, 0.01, 0.3, 0.35, 0.6, 0.7)[i % 6])
        for i in range(60)
    ]
    entries.append(Entry("cat9/small.webp", "p", "s", "l", 100, 80, 0.1))  # long side ≠ 256: never chosen
    chosen = rebuild.choose_sample(entries)
    shuffled = entries[:]
    random.Random(0).shuffle(shuffled)
    assert rebuild.choose_sample(shuffled) == chosen
    assert {e.file.split("/")[0] for e in chosen} == {f"cat{i}" for i in range(5)}
    assert all(e.file != "cat9/small.webp" for e in chosen)
    assert len(chosen) == len(set(chosen)) == 5 + sum(n for _, _, n in rebuild.SOFT_BANDS)
    for low, high, n in rebuild.SOFT_BANDS:
        assert sum(low <= e.soft_alpha < high for e in chosen) >= n


# --- the sample script on a built set ----------------------------------------------------------------


def test_sample_from_built_set(tmp_path, hidden_red_disc):
    src = tmp_path / "set"
    src.mkdir()
    entries = []
    for i in range(6):
        arr = hidden_red_disc(256, 200 + i)
        arr[arr[..., 3] == 0, :3] = 0
        Image.fromarray(arr, "RGBA").save(src / f"img{i}.webp", lossless=True, exact=True)
        entries.append(Entry(f"img{i}.webp", "openclipart-png", f"x/img{i}.png", LICENSE, 200 + i, 256, 0.1))
    write_manifest(entries, src)
    out = tmp_path / "sample"
    assert rebuild.main(["sample", "--src", str(src), "--out", str(out)]) == 0
    rows = _manifest(out)
    for r in rows:
        original = np.asarray(Image.open(src / r["file"].replace(".png", ".webp")).convert("RGBA"))
        assert (np.asarray(Image.open(out / r["file"])) == original).all()  # pixel for pixel


# --- RGBAFolder -------------------------------------------------------------------------------------------


def test_rgba_folder_skips_a_corrupt_file_by_name(tmp_path, hidden_red_disc):
    for i in range(3):
        Image.fromarray(hidden_red_disc(40, 30 + 10 * i), "RGBA").save(tmp_path / f"ok{i}.png")
    (tmp_path / "bad.png").write_bytes(b"\x89PNG\r\n\x1a\ngarbage")
    ds = RGBAFolder(tmp_path, size=32)
    assert len(ds) == 4
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        items = [ds[i] for i in range(len(ds))]
    assert [str(w.message) for w in caught if "bad.png" in str(w.message)]
    assert list(ds.bad_files) == [tmp_path / "bad.png"]
    assert all(x.shape == (4, 32, 32) for x in items)
    good = {i: load_rgba(tmp_path / f"ok{i}.png") for i in range(3)}
    # ok0 is 40×30: long side → 32, centred on a transparent square; its alpha mass is kept up to resampling.
    alpha_mass = items[ds.files.index(tmp_path / "ok0.png")][3].sum().item()
    assert alpha_mass == pytest.approx(good[0][3].sum().item() * (32 / 40) ** 2, rel=0.05)
    with pytest.raises(ImageReadError, match="bad.png"):
        ds.load(ds.files.index(tmp_path / "bad.png"))


def test_rgba_folder_on_the_sample():
    ds = RGBAFolder(sample_dir(), size=64)
    batch = torch.stack([ds[i] for i in range(4)])
    assert batch.shape == (4, 4, 64, 64) and 0 <= batch.min() and batch.max() <= 1
    assert not ds.bad_files


# --- extra training data (extra_data: rgba-extra) ---------------------------------------------------------


def _extra_set(folder: Path, package: str = "fake-sprites", n: int = 3) -> list[Path]:
    """A tiny extra training set as scripts/rebuild_rgba_extra.py writes one: images and their manifest.csv."""
    files = []
    for i in range(n):
        path = folder / package / f"e{i}.png"
        path.parent.mkdir(parents=True, exist_ok=True)
        Image.new("RGBA", (8, 8), (i, 0, 0, 128)).save(path)
        files.append(path)
    write_manifest([Entry(p.relative_to(folder).as_posix(), package, f"usr/share/{p.name}", "GPL-2+", 8, 8, 1.0)
                    for p in files], folder)
    return files


@pytest.fixture
def sample_split(tmp_path, monkeypatch):
    from alphavae.training.splits import make_split, write_split

    monkeypatch.setenv("ALPHAVAE_SHARED_DATA", str(tmp_path / "shared"))
    return str(write_split(make_split(sample_dir(), 0.2), tmp_path / "split.json"))


def test_extra_data_is_trained_on_and_never_held_out(tmp_path, sample_split):
    """``extra_data`` adds every image of a second folder to the training images, after ``max_images``; the
    held-out split stays the ``data`` folder's; a missing folder names the key and the command that makes it."""
    from alphavae.training.data import EXTRA_DATA_COMMAND, train_and_heldout

    files = _extra_set(tmp_path / "shared" / "rgba-extra")
    train, heldout = train_and_heldout("sample", sample_split)
    with_extra, heldout_extra = train_and_heldout("sample", sample_split, max_images=4, extra_data="rgba-extra")
    assert heldout_extra == heldout and len(heldout) > 0
    assert with_extra == train[:4] + files
    with pytest.raises(ValueError) as err:
        train_and_heldout("sample", sample_split, extra_data="no-such-set")
    message = str(err.value)
    assert message.startswith("extra_data: 'no-such-set'") and EXTRA_DATA_COMMAND in message and "\n" not in message
    assert "sample" not in message.replace("no-such-set", "")  # the sample is rgba-train's: never offered as extra data


@pytest.mark.parametrize("case", ["data-folder", "inside-data", "no-manifest", "test-package", "openclipart",
                                  "unlisted", "held-out-copy"])
def test_extra_data_that_could_leak_test_images_is_refused(tmp_path, sample_split, case):
    """The guards of ``extra_data``, each a one-line error naming the key: not the data folder or near it, a
    manifest naming every image's package, no package reserved for testing, no held-out image under another folder."""
    from alphavae.training.data import train_and_heldout

    extra = tmp_path / "extra"
    _extra_set(extra, package={"test-package": "hedgewars-data", "openclipart": "openclipart-png"}.get(case, "fake-sprites"))
    if case == "no-manifest":
        (extra / "manifest.csv").unlink()
    if case == "unlisted":
        Image.new("RGBA", (8, 8)).save(extra / "fake-sprites" / "stray.png")
    _, heldout = train_and_heldout("sample", sample_split)
    if case == "held-out-copy":
        copy = extra / heldout[0].relative_to(sample_dir())
        copy.parent.mkdir(parents=True, exist_ok=True)
        copy.write_bytes(heldout[0].read_bytes())
        write_manifest([Entry(p.relative_to(extra).as_posix(), "fake-sprites", "x", "GPL-2+", 8, 8, 1.0)
                        for p in sorted(extra.rglob("*.png"))], extra)
    category = next(p for p in sorted(sample_dir().iterdir()) if p.is_dir())
    spec = {"data-folder": str(sample_dir()), "inside-data": str(category)}.get(case, str(extra))
    why = {"data-folder": "is the data folder", "inside-data": "is the data folder", "no-manifest": "no readable manifest",
           "test-package": "hedgewars-data: reserved", "openclipart": "openclipart-png: reserved",
           "unlisted": "stray.png is not in its manifest", "held-out-copy": "is a held-out image"}[case]
    with pytest.raises(ValueError) as err:
        train_and_heldout("sample", sample_split, extra_data=spec)
    assert str(err.value).startswith("extra_data: ") and why in str(err.value) and "\n" not in str(err.value)


def test_extra_data_config_checks_and_notebook_fallback(tmp_path, sample_split, monkeypatch, capsys):
    """An empty extra_data is refused at load (it would be the working directory); a notebook without the extra set
    falls back to the sample without it, saying so; the trainer hands extra_data to the data it trains on."""
    from alphavae.training import trainer
    from alphavae.training.config import ConfigError, TrainConfig, config_from_dict
    from alphavae.training.data import with_reachable_data

    with pytest.raises(ConfigError, match=r"x\.json: 'extra_data' must name a folder"):
        config_from_dict({"extra_data": " "}, "x.json")
    fallback = with_reachable_data(TrainConfig(data="sample", split=None, extra_data="no-such-set"))
    assert fallback.extra_data is None and "no extra_data" in capsys.readouterr().err
    seen = []

    def record(*args):
        seen.append(args)
        raise RuntimeError("stop here")

    monkeypatch.setattr(trainer, "train_and_heldout", record)
    with pytest.raises(RuntimeError, match="stop here"):
        trainer.train(TrainConfig(data="sample", split=None, extra_data="rgba-extra"), tmp_path / "run")
    assert seen and seen[0][-1] == "rgba-extra"


def test_the_extra_data_config_is_the_shipped_model_s_plus_rgba_extra():
    """configs/free_alpha_overshoot_extra.json differs from the shipped embedded-rgba's config only in extra_data
    (and its description), so a comparison of the two runs measures the extra data alone."""
    import dataclasses

    from alphavae.paths import configs_dir
    from alphavae.training.config import load_config

    base = dataclasses.asdict(load_config(configs_dir() / "free_alpha_overshoot.json"))
    extra = dataclasses.asdict(load_config(configs_dir() / "free_alpha_overshoot_extra.json"))
    assert extra.pop("extra_data") == "rgba-extra" and base.pop("extra_data") is None
    assert {k for k in base if base[k] != extra[k]} == {"description"}
