"""The RGB pretraining corpus and the out-of-domain RGBA set (``scripts/rebuild_rgb_corpus.py``,
``scripts/rebuild_ood_rgba.py``, :mod:`alphavae.training.debian_sources`) on tiny fake packages, offline."""

from __future__ import annotations

import csv
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from alphavae.training import debian_sources as deb
from alphavae.training.openclipart import Entry, save_rgba, write_manifest

from script_modules import load_script

ROOT = Path(__file__).resolve().parents[1]
COPYRIGHT = """Format: https://www.debian.org/doc/packaging-manuals/copyright-format/1.0/
Upstream-Name: fake

Files: *
Copyright: someone
License: GPL-2+

Files: data/icons/*
Copyright: someone else
License: CC-BY-SA-4.0

Files: debian/*
Copyright: a maintainer
License: GPL-2+
"""


corpus = load_script("scripts/rebuild_rgb_corpus.py")
ood = load_script("scripts/rebuild_ood_rgba.py")


def _save(path: Path, arr: np.ndarray) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(arr).save(path)


def _noise(rng: np.random.Generator, h: int, w: int, channels: int = 3) -> np.ndarray:
    return rng.integers(0, 256, (h, w, channels), dtype=np.uint8)


def _sprite(rng: np.random.Generator, h: int, w: int) -> np.ndarray:
    arr = _noise(rng, h, w, 4)
    arr[: h // 4, :, 3] = 0
    return arr


def _fake_package(root: Path) -> Path:
    """A fake package: a photo, an RGBA sprite, one icon at two sizes, a tiny image, a duplicate, a flat image,
    a doc image and a link; with a DEP-5 copyright."""
    rng = np.random.default_rng(0)
    data = root / "usr/share/fake/data"
    photo = _noise(rng, 600, 800)
    _save(data / "photos/lake.png", photo)
    _save(data / "photos/lake_copy.png", photo)
    _save(data / "sprites/hero.png", _sprite(rng, 120, 90))
    _save(data / "icons/64x64/apps/editor.png", _sprite(rng, 64, 64))
    _save(data / "icons/128x128/apps/editor.png", _sprite(rng, 128, 128))
    _save(data / "sprites/tiny.png", _sprite(rng, 20, 20))
    _save(data / "sprites/flat.png", np.full((100, 100, 3), 90, np.uint8))
    _save(root / "usr/share/doc/fake/screenshot.png", _noise(rng, 100, 100))
    (data / "photos/link.png").symlink_to("lake.png")
    (root / "usr/share/doc/fake/copyright").write_text(COPYRIGHT)
    return root


SOURCES = {"fake-data": (("*/photos/*", "photo"), ("*/icons/*", "icon"), ("*", "sprite"))}


def _fake_rgba_train(root: Path) -> tuple[Path, dict]:
    """Six clip-art images in two categories; two of them held out."""
    rng = np.random.default_rng(1)
    entries = []
    for i in range(6):
        file = f"{'ab'[i % 2]}/art{i}.webp"
        arr = _sprite(rng, 70, 90)
        save_rgba(arr, root / file)
        entries.append(Entry(file, "openclipart-png", f"x/art{i}.png", "Public Domain", 90, 70, 0.0))
    write_manifest(entries, root)
    return root, {"heldout": ["a/art0.webp", "b/art3.webp"]}


def _build(tmp_path: Path, out: str, composites: int = 10) -> list[dict[str, str]]:
    tree = tmp_path / "fake-data"
    if not tree.exists():
        _fake_package(tree)
        _fake_rgba_train(tmp_path / "rgba-train")
    _, split = _fake_rgba_train(tmp_path / "rgba-train")
    return corpus.build(tmp_path / out, {"fake-data": tree}, tmp_path / "rgba-train", split, sources=SOURCES,
                        composites=composites, max_mb=100, log=lambda m: None)


@pytest.mark.parametrize("package", ["wesnoth-1.16-data", "wesnoth-music", "fonts-noto-color-emoji",
                                     "oxygen-icon-theme", deb.OOD_PACKAGE, "openclipart-png"])
def test_a_reserved_package_is_refused(tmp_path, package):
    with pytest.raises(deb.ReservedPackageError, match=package):
        corpus.build(tmp_path / "out", {package: tmp_path}, tmp_path, {"heldout": []},
                     sources={package: (("*", "photo"),)}, composites=0)


def test_the_command_line_refuses_a_reserved_package_dir(tmp_path, capsys):
    with pytest.raises(SystemExit):
        corpus.main(["--out", str(tmp_path / "out"), "--package-dir", f"oxygen-icon-theme={tmp_path}"])
    assert "reserved for independent evaluation" in capsys.readouterr().err


def test_no_shipped_source_is_reserved():
    deb.refuse_reserved(corpus.SOURCES, also=(deb.OOD_PACKAGE, "openclipart-png"))


def test_composites_use_only_the_training_split(tmp_path):
    rows = _build(tmp_path, "out", composites=100)  # asks for more than the training split has
    used = {r["clipart"] for r in rows if r["kind"] == "clipart-composite"}
    assert used == {f"rgba-train/{f}" for f in ("a/art2.webp", "a/art4.webp", "b/art1.webp", "b/art5.webp")}


def test_composite_sources_refuse_a_missing_held_out_image(tmp_path):
    root, _ = _fake_rgba_train(tmp_path / "rgba-train")
    with pytest.raises(ValueError, match="held-out"):
        corpus.composite_sources(root, {"heldout": ["a/not-there.webp"]})


def test_the_build_is_deterministic_and_applies_its_rules(tmp_path):
    first, second = _build(tmp_path, "one"), _build(tmp_path, "two")
    assert first == second
    for row in first:
        assert (tmp_path / "one" / row["file"]).read_bytes() == (tmp_path / "two" / row["file"]).read_bytes()
    full = [r["source"] for r in first if r["package"] == "fake-data" and not r["crop"]]
    assert sorted(full) == ["usr/share/fake/data/icons/128x128/apps/editor.png",  # one size per icon name
                            "usr/share/fake/data/photos/lake.png",  # the copy, the link, tiny, flat, doc dropped
                            "usr/share/fake/data/sprites/hero.png"]
    assert sum(r["kind"] == "photo" and r["crop"] != "" for r in first) == corpus.PHOTO_CROPS


def test_the_manifest_has_its_columns(tmp_path):
    rows = _build(tmp_path, "out")
    with (tmp_path / "out/manifest.csv").open(newline="") as f:
        reader = csv.DictReader(f)
        assert tuple(reader.fieldnames) == corpus.MANIFEST_FIELDS
        written = list(reader)
    assert len(written) == len(rows) and {r["kind"] for r in written} <= set(corpus.KINDS)
    icon = next(r for r in written if r["kind"] == "icon")
    assert icon["license"] == "CC-BY-SA-4.0" and icon["package"] == "fake-data"
    for r in written:
        with Image.open(tmp_path / "out" / r["file"]) as im:
            assert im.mode == "RGB" and im.size == (int(r["width"]), int(r["height"])) and max(im.size) <= 256
        if r["kind"] == "clipart-composite":
            assert r["clipart"] and r["photo"].startswith("fake-data:") and len(r["crop"].split(",")) == 4


def test_the_shipped_corpus_manifest_has_its_columns():
    with (ROOT / "data/rgb-corpus-manifest.csv").open(newline="") as f:
        reader = csv.DictReader(f)
        assert tuple(reader.fieldnames) == corpus.MANIFEST_FIELDS
        rows = list(reader)
    assert len(rows) >= 3000 and {r["kind"] for r in rows} == set(corpus.KINDS)
    assert not any(r["package"].startswith("wesnoth") or r["package"] in deb.RESERVED + (deb.OOD_PACKAGE,)
                   for r in rows)
    assert not any(deb.names_reserved(r["source"]) for r in rows)  # no icon theme's drawing of a reserved app


def test_files_named_after_a_reserved_package_are_not_sources(tmp_path):
    assert deb.names_reserved("usr/share/icons/Moka/256x256@2x/apps/wesnoth-map-editor.png")
    assert deb.names_reserved("usr/share/icons/Moka/256x256@2x/apps/Oxygen.png")
    assert deb.names_reserved("icons/apps/noto-color-emoji.png")
    assert deb.names_reserved("usr/share/icons/Moka/48x48/apps/hedgewars.png")  # the out-of-domain game's icon
    assert not deb.names_reserved("usr/share/icons/Moka/256x256@2x/apps/gimp.png")
    root = _fake_package(tmp_path)
    _save(tmp_path / "usr/share/fake/data/icons/128x128/apps/wesnoth.png", _sprite(np.random.default_rng(5), 128, 128))
    listed = [s.path for s in corpus.list_sources("fake-data", root, SOURCES["fake-data"])]
    assert listed and not any("wesnoth" in path for path in listed)


def test_the_ood_set_keeps_rgba_train_s_rule(tmp_path):
    rng = np.random.default_rng(2)
    tree = tmp_path / "pkg"
    _save(tree / "usr/share/g/sprites/ok.png", _sprite(rng, 80, 100))
    _save(tree / "usr/share/g/sprites/opaque.png", _noise(rng, 80, 100, 4) | np.uint8(255))
    _save(tree / "usr/share/g/sprites/small.png", _sprite(rng, 40, 100))
    _save(tree / "usr/share/g/sprites/strip.png", _sprite(rng, 60, 400))
    (tree / "usr/share/doc/pkg").mkdir(parents=True)
    (tree / "usr/share/doc/pkg/copyright").write_text(COPYRIGHT)
    entries = ood.build(tmp_path / "out", tree, package="pkg", log=lambda m: None)
    assert [e.source for e in entries] == ["usr/share/g/sprites/ok.png"] and entries[0].license == "GPL-2+"
    with Image.open(tmp_path / "out" / entries[0].file) as im:
        arr = np.array(im)
    assert im.mode == "RGBA" and (arr[arr[..., 3] == 0, :3] == 0).all()
    with pytest.raises(deb.ReservedPackageError):
        ood.build(tmp_path / "out2", tree, package="oxygen-icon-theme")


@pytest.mark.skipif(shutil.which("dpkg-deb") is None, reason="needs dpkg-deb")
def test_a_package_unpacks_into_a_folder_whose_parents_do_not_exist_yet(tmp_path):
    """package_tree unpacks into workdir/trees/<package>: dpkg-deb makes only the last folder."""
    root = tmp_path / "pkg"
    (root / "DEBIAN").mkdir(parents=True)
    (root / "DEBIAN" / "control").write_text("Package: tiny\nVersion: 1\nArchitecture: all\n"
                                             "Maintainer: t <t@t>\nDescription: t\n")
    (root / "usr" / "share").mkdir(parents=True)
    (root / "usr" / "share" / "a.txt").write_text("a")
    built = tmp_path / "tiny.deb"
    subprocess.run(["dpkg-deb", "--build", str(root), str(built)], check=True, capture_output=True)
    tree = deb.package_tree("tiny", built, tmp_path / "work")
    assert (tree / "usr" / "share" / "a.txt").read_text() == "a"
