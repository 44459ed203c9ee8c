"""The second RGBA training set ``rgba-extra`` (``scripts/rebuild_rgba_extra.py``) on tiny fake packages, offline."""

from __future__ import annotations

import csv
import gzip
import shutil
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from alphavae.training import debian_sources as deb
from alphavae.training.openclipart import MANIFEST_FIELDS, mismatch, read_manifest

from script_modules import load_script

extra = load_script("scripts/rebuild_rgba_extra.py")

COPYRIGHT = """Format: https://www.debian.org/doc/packaging-manuals/copyright-format/1.0/

Files: *
Copyright: someone
License: GPL-2+

Files: icons/*
Copyright: someone else
License: CC-BY-SA-4.0
"""
SOURCES = {"fake-sprites": (("*/backgrounds/*", "art"), ("*", "sprite")),
           "fake-icons": (("*/scalable/*", None), ("*", "icon"))}


def _save(path: Path, arr: np.ndarray) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(arr).save(path)


def _sprite(rng: np.random.Generator, h: int, w: int, clear_rows: int | None = None) -> np.ndarray:
    """Noise RGBA with its top quarter (or ``clear_rows`` rows) fully transparent."""
    arr = rng.integers(0, 256, (h, w, 4), dtype=np.uint8)
    arr[..., 3] |= 1  # α > 0 everywhere else
    arr[: h // 4 if clear_rows is None else clear_rows, :, 3] = 0
    return arr


def _docs(root: Path, package: str, version: str) -> None:
    doc = root / "usr/share/doc" / package
    doc.mkdir(parents=True, exist_ok=True)
    (doc / "copyright").write_text(COPYRIGHT)
    with gzip.open(doc / "changelog.Debian.gz", "wt") as f:
        f.write(f"{package} ({version}) unstable; urgency=low\n")


def _fake_sprites(root: Path) -> Path:
    """Sprites: two good ones (one also saved under a second name), and one each that breaks a rule."""
    rng = np.random.default_rng(0)
    data = root / "usr/share/games/fake/sprites"
    good = _sprite(rng, 80, 100)
    _save(data / "hero.png", good)
    _save(data / "hero_again.png", good)  # an exact duplicate
    _save(data / "enemy.png", _sprite(rng, 120, 90))
    _save(data / "opaque.png", _sprite(rng, 80, 100, clear_rows=0))
    _save(data / "nearly_opaque.png", _sprite(rng, 100, 100, clear_rows=1))  # 99 % of pixels with α > 0
    faint = _sprite(rng, 100, 100)
    faint[2:, :, 3] = 0  # 2 % of pixels with α > 0
    _save(data / "faint.png", faint)
    _save(data / "small.png", _sprite(rng, 40, 100))
    _save(data / "strip.png", _sprite(rng, 60, 400))
    _save(data / "wesnoth.png", _sprite(rng, 80, 100))  # named after a reserved package
    _save(data / "hero.jpg", _sprite(rng, 80, 100)[..., :3])  # a JPEG: no transparency
    _save(root / "usr/share/games/fake/backgrounds/sky.png", _sprite(rng, 80, 100))  # kind art
    _save(root / "usr/share/doc/fake-sprites/shot.png", _sprite(rng, 80, 100))  # documentation
    (data / "link.png").symlink_to("enemy.png")
    _docs(root, "fake-sprites", "1.2-3")
    return root


def _fake_icons(root: Path) -> Path:
    """Icons: one name at two sizes, one more name, a reserved name, a scalable folder, and a sprite's copy."""
    rng = np.random.default_rng(1)
    icons = root / "usr/share/icons/Fake"
    _save(icons / "64x64/apps/editor.png", _sprite(rng, 64, 64))
    _save(icons / "128x128/apps/editor.png", _sprite(rng, 128, 128))
    _save(icons / "96x96/apps/viewer.png", _sprite(rng, 96, 96))
    _save(icons / "128x128/apps/oxygen-settings.png", _sprite(rng, 128, 128))
    _save(icons / "scalable/apps/mail.png", _sprite(rng, 128, 128))
    _save(icons / "128x128/apps/hero.png", _sprite(np.random.default_rng(0), 80, 100))  # = fake-sprites' hero.png
    _docs(root, "fake-icons", "4.5")
    return root


def _trees(tmp_path: Path) -> dict[str, Path]:
    trees = {"fake-sprites": tmp_path / "fake-sprites", "fake-icons": tmp_path / "fake-icons"}
    if not trees["fake-sprites"].exists():
        _fake_sprites(trees["fake-sprites"])
        _fake_icons(trees["fake-icons"])
    return trees


def _build(tmp_path: Path, out: str, **options) -> list:
    return extra.build(tmp_path / out, _trees(tmp_path), sources=SOURCES, log=lambda m: None, **options)


HERO = {"usr/share/games/fake/sprites/hero.png", "usr/share/games/fake/sprites/hero_again.png",
        "usr/share/icons/Fake/128x128/apps/hero.png"}  # the same pixels thrice


def test_the_keep_rules(tmp_path):
    entries = _build(tmp_path, "out")
    others = sorted(e.source.removeprefix("usr/share/icons/Fake/").removeprefix("usr/share/games/fake/sprites/")
                    for e in entries if e.source not in HERO)
    assert others == ["128x128/apps/editor.png", "96x96/apps/viewer.png",  # largest per name; no oxygen*, scalable
                      "enemy.png"]  # no opaque, nearly opaque, faint, small, strip, wesnoth, jpg, art, doc, link
    assert len([e for e in entries if e.source in HERO]) == 1


def test_a_duplicate_is_dropped_across_packages(tmp_path):
    trees = _trees(tmp_path)
    alone = {p: extra.build(tmp_path / "alone" / p, trees, sources={p: SOURCES[p]}, log=lambda m: None)
             for p in SOURCES}
    assert all(len([e for e in entries if e.source in HERO]) == 1 for entries in alone.values())
    assert len([e for e in _build(tmp_path, "both") if e.source in HERO]) == 1


def test_the_build_is_deterministic(tmp_path):
    first, second = _build(tmp_path, "one"), _build(tmp_path, "two")
    assert first == second and first
    names = sorted(p.relative_to(tmp_path / "one").as_posix() for p in (tmp_path / "one").rglob("*") if p.is_file())
    assert names == sorted([e.file for e in first] + ["manifest.csv", "packages.csv"])
    for name in names:
        assert (tmp_path / "one" / name).read_bytes() == (tmp_path / "two" / name).read_bytes()


def test_the_manifest_has_rgba_train_s_columns(tmp_path):
    entries = _build(tmp_path, "out")
    with (tmp_path / "out/manifest.csv").open(newline="") as f:
        assert tuple(csv.DictReader(f).fieldnames) == MANIFEST_FIELDS
    assert read_manifest(tmp_path / "out/manifest.csv") == entries
    for e in entries:
        assert e.file.startswith(f"{e.package}/") and e.file.endswith(".webp")
        assert mismatch(tmp_path / "out" / e.file, e) is None
        with Image.open(tmp_path / "out" / e.file) as im:
            arr = np.array(im)
        assert im.mode == "RGBA" and (arr[arr[..., 3] == 0, :3] == 0).all()
    assert {e.license for e in entries if e.package == "fake-icons"} == {"CC-BY-SA-4.0"}
    assert {e.license for e in entries if e.package == "fake-sprites"} == {"GPL-2+"}
    with (tmp_path / "out/packages.csv").open(newline="") as f:
        rows = list(csv.DictReader(f))
    assert rows == [{"package": p, "version": v, "images": str(sum(e.package == p for e in entries))}
                    for p, v in (("fake-icons", "4.5"), ("fake-sprites", "1.2-3"))]


def test_each_package_gives_its_first_images_by_seeded_rank(tmp_path):
    rng = np.random.default_rng(2)
    trees = _trees(tmp_path)
    for i in range(3):
        _save(trees["fake-sprites"] / f"usr/share/games/fake/sprites/more{i}.png", _sprite(rng, 80, 80))
        _save(trees["fake-icons"] / f"usr/share/icons/Fake/128x128/apps/more{i}.png", _sprite(rng, 128, 128))
    full = _build(tmp_path, "full")
    capped = _build(tmp_path, "capped", per_package=2)
    for package in SOURCES:
        ranked = sorted((e.source for e in full if e.package == package), key=lambda s: deb.rank(package, s))
        assert len(ranked) > 2 and sorted(e.source for e in capped if e.package == package) == sorted(ranked[:2])


def test_the_packages_take_turns_within_the_size_budget(tmp_path):
    rng = np.random.default_rng(3)
    trees, sources = {}, {}
    for package in ("fake-a", "fake-b"):
        trees[package], sources[package] = tmp_path / package, (("*", "sprite"),)
        for i in range(5):
            _save(trees[package] / f"usr/share/games/{package}/s{i}.png", _sprite(rng, 64, 64))
    full = extra.build(tmp_path / "full", trees, sources=sources, log=lambda m: None)
    budget = 4.5 * max((tmp_path / "full" / e.file).stat().st_size for e in full) / 1e6  # the sizes differ little
    entries = extra.build(tmp_path / "small", trees, sources=sources, max_mb=budget, log=lambda m: None)
    written = sorted(p.relative_to(tmp_path / "small").as_posix() for p in (tmp_path / "small").rglob("*.webp"))
    assert written == [e.file for e in entries]  # the image that did not fit is not left behind
    assert len(full) == 10 and 4 <= len(entries) < 10
    assert sum((tmp_path / "small" / f).stat().st_size for f in written) <= budget * 1e6
    assert abs(sum(e.package == "fake-a" for e in entries) - sum(e.package == "fake-b" for e in entries)) <= 1


@pytest.mark.parametrize("package", ["wesnoth-1.16-data", "fonts-noto-color-emoji", "oxygen-icon-theme",
                                     deb.OOD_PACKAGE, "openclipart-png"])
def test_a_reserved_package_is_refused(tmp_path, package):
    with pytest.raises(deb.ReservedPackageError, match=package):
        extra.build(tmp_path / "out", {package: _fake_sprites(tmp_path / "tree")},
                    sources={package: (("*", "sprite"),)}, log=lambda m: None)
    assert not (tmp_path / "out").exists()


def test_the_package_table(tmp_path):
    deb.refuse_reserved(extra.PACKAGES, also=(deb.OOD_PACKAGE, "openclipart-png"))
    expected = {"pingus-data", "tuxpaint-data", "berusky-data", "moka-icon-theme", "gnome-icon-theme"}
    assert expected <= extra.PACKAGES.keys()
    assert not {"neverball-data", "mate-backgrounds"} & set(extra.PACKAGES)  # textures and art only


def _error(capsys, *argv: str) -> str:
    with pytest.raises(SystemExit) as exit_:
        extra.main(list(argv))
    err = capsys.readouterr().err
    assert exit_.value.code != 0 and len(err.strip().splitlines()) == 1, err
    return err


def test_the_command_line_refuses_bad_input_in_one_line(tmp_path, capsys, monkeypatch):
    monkeypatch.setattr(deb, "download_deb", lambda *a: pytest.fail("downloaded"))
    out = str(tmp_path / "out")
    reserved = _error(capsys, "--out", out, "--package-dir", f"hedgewars-data={tmp_path}")
    assert "hedgewars-data: reserved for independent evaluation" in reserved
    unknown = _error(capsys, "--out", out, "--package-dir", f"fake-data={tmp_path}")
    assert "fake-data: not a package of rgba-extra" in unknown
    (tmp_path / "full").mkdir()
    (tmp_path / "full/x.webp").write_bytes(b"")
    assert f"{tmp_path / 'full'}: not an empty folder" in _error(capsys, "--out", str(tmp_path / "full"))
    assert "--per-package 0: must be at least 1" in _error(capsys, "--out", out, "--per-package", "0")
    assert "--max-mb -1.0: must be > 0" in _error(capsys, "--out", out, "--max-mb", "-1")


@pytest.mark.skipif(shutil.which("dpkg-deb") is None, reason="needs dpkg-deb")
def test_a_broken_deb_is_named(tmp_path, capsys, monkeypatch):
    monkeypatch.setattr(deb, "download_deb", lambda *a: pytest.fail("downloaded"))
    bad = tmp_path / "broken.deb"
    bad.write_text("not a package")
    first = sorted(extra.PACKAGES)[0]  # unpacked first, so nothing is downloaded before it
    assert str(bad) in _error(capsys, "--out", str(tmp_path / "out"), "--package-dir", f"{first}={bad}")


def test_the_committed_manifests_hold_no_reserved_or_test_image():
    """data/rgba-extra-manifest.csv (the set the config's extra_data trains on) has rgba-train's columns, only packages
    of the set's table, none reserved or held for testing, no file named after a reserved package; the counts of
    data/rgba-extra-packages.csv add up to it."""
    root = Path(__file__).resolve().parents[1] / "data"
    rows = read_manifest(root / "rgba-extra-manifest.csv")
    assert len(rows) > 500 and {r.package for r in rows} <= set(extra.PACKAGES)
    deb.refuse_reserved({r.package for r in rows}, also=extra.NOT_TRAINING)  # raises on any of them
    assert not any(deb.names_reserved(r.source) for r in rows)
    assert all(r.file.startswith(f"{r.package}/") and r.file.endswith(".webp") for r in rows)
    with (root / "rgba-extra-packages.csv").open(newline="") as f:
        counts = {row["package"]: int(row["images"]) for row in csv.DictReader(f)}
    assert sum(counts.values()) == len(rows) and all(counts[r.package] > 0 for r in rows)
