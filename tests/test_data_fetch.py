"""``alphavae data fetch`` (:mod:`alphavae.training.openclipart`) on a fake openclipart-png package, offline.

The fake package has images the manifest lists (P + tRNS, LA, a soft RGBA disc over hidden red, a large one
that takes the reduce step, a symlink) and one it does not: that one stands for the images reserved for
evaluation and must never be converted.
"""

from __future__ import annotations

import csv
import io
import shutil
import tarfile
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from alphavae.cli import main
from alphavae.paths import sample_dir, shared_data_dir
from alphavae.training import openclipart
from alphavae.training.openclipart import PNG_ROOT, FetchError, fetch_rgba_train, read_manifest, shipped_manifest

#: manifest file → source below PNG_ROOT
LISTED = {
    "animals/palette.webp": "animals/birds/palette.png",
    "animals/grey_fade.webp": "animals/grey_fade.png",
    "shapes/disc.webp": "shapes/disc.png",
    "shapes/poster.webp": "shapes/big/poster.png",
    "animals/disc_link.webp": "animals/disc_link.png",
}
RESERVED = "reserved/held_out.png"


def _la_alpha() -> np.ndarray:
    alpha = np.zeros((60, 90), np.uint8)
    alpha[:, 30:] = np.linspace(0, 255, 60, dtype=np.uint8)[:, None]
    return alpha


def _expected(src: Path) -> np.ndarray:
    """The documented processing, written out with Pillow: RGBA, long side 256 with reducing_gap=2 + Lanczos."""
    im = Image.open(src).convert("RGBA")
    scale = 256 / max(im.size)
    if scale < 1:
        im = im.resize((round(im.width * scale), round(im.height * scale)), Image.Resampling.LANCZOS, reducing_gap=2.0)
    arr = np.array(im)
    arr[arr[..., 3] == 0, :3] = 0
    return arr


def _write_manifest(path: Path, root: Path, rows: dict[str, str]) -> Path:
    with path.open("w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(openclipart.MANIFEST_FIELDS)
        for file, source in rows.items():
            arr = _expected(root / source) if (root / source).exists() else np.zeros((1, 1, 4), np.uint8)
            soft = ((arr[..., 3] > 0) & (arr[..., 3] < 255)).mean()
            writer.writerow([file, "openclipart-png", source, openclipart.LICENSE, arr.shape[1], arr.shape[0], f"{soft:.4f}"])
    return path


@pytest.fixture
def package(tmp_path, hidden_red_disc) -> Path:
    """An extracted fake package (``ROOT/usr/share/openclipart/png/<category>/...``)."""
    root = tmp_path / "package"
    png = root / PNG_ROOT
    for folder in ("animals/birds", "shapes/big", "reserved"):
        (png / folder).mkdir(parents=True)
    pal = Image.new("P", (64, 80))
    pal.putpalette([0, 0, 0, 255, 0, 0, 0, 255, 0] + [0] * (256 * 3 - 9))
    pal.paste(1, (0, 0, 64, 40))
    pal.paste(2, (10, 50, 50, 70))  # index 0 (transparent) elsewhere
    pal.save(png / "animals/birds/palette.png", transparency=bytes([0, 255, 255]))
    la = np.zeros((60, 90, 2), np.uint8)
    la[..., 0], la[..., 1] = 200, _la_alpha()
    Image.fromarray(la, "LA").save(png / "animals/grey_fade.png")
    Image.fromarray(hidden_red_disc(300, 600), "RGBA").save(png / "shapes/disc.png")
    Image.fromarray(hidden_red_disc(1100, 1300), "RGBA").save(png / "shapes/big/poster.png")  # factor > 4: reduce, then Lanczos
    (png / "animals/disc_link.png").symlink_to("../shapes/disc.png")
    Image.fromarray(hidden_red_disc(200, 240), "RGBA").save(png / RESERVED)
    return root


@pytest.fixture
def manifest(tmp_path, package) -> Path:
    return _write_manifest(tmp_path / "manifest.csv", package / PNG_ROOT, LISTED)


def _written(folder: Path) -> set[str]:
    return {p.relative_to(folder).as_posix() for p in folder.rglob("*") if p.is_file()}


def _check_images(folder: Path, package: Path) -> None:
    for file, source in LISTED.items():
        got = np.asarray(Image.open(folder / file).convert("RGBA"))
        assert Image.open(folder / file).format == "WEBP"
        assert (got == _expected(package / PNG_ROOT / source)).all(), file  # lossless: pixels as converted
        assert (got[got[..., 3] == 0, :3] == 0).all(), file  # colour zeroed under α = 0
    disc = np.asarray(Image.open(folder / "shapes/disc.webp"))
    assert disc.shape == (128, 256, 4)
    soft_edge = disc[(disc[..., 3] > 0) & (disc[..., 3] < 128)]
    assert soft_edge.size and soft_edge[:, 0].max() <= 8  # premultiplied shrink: no hidden red bleeds in
    pal = np.asarray(Image.open(folder / "animals/palette.webp"))
    assert (pal[:40, :, 3] == 255).all() and (pal[:40, :, 0] == 255).all() and (pal[40:50, :, 3] == 0).all()
    assert (np.asarray(Image.open(folder / "animals/grey_fade.webp"))[..., 3] == _la_alpha()).all()
    assert np.asarray(Image.open(folder / "shapes/poster.webp")).shape == (217, 256, 4)


def test_fetch_writes_exactly_the_manifest_images(tmp_path, package, manifest):
    result = fetch_rgba_train(tmp_path / "data", package_dir=package, manifest=manifest)
    folder = tmp_path / "data" / "rgba-train"
    assert (result.folder, result.written, result.kept) == (folder, 5, 0)
    assert _written(folder) == set(LISTED) | {"manifest.csv"}  # the reserved image is not converted
    assert (folder / "manifest.csv").read_bytes() == manifest.read_bytes()
    _check_images(folder, package)


def test_fetch_accepts_the_png_folder_itself(tmp_path, package, manifest):
    fetch_rgba_train(tmp_path / "data", package_dir=package / PNG_ROOT, manifest=manifest)
    assert _written(tmp_path / "data" / "rgba-train") == set(LISTED) | {"manifest.csv"}


def test_fetch_is_idempotent_and_downloads_nothing_when_complete(tmp_path, package, manifest, monkeypatch):
    dest = tmp_path / "data"
    fetch_rgba_train(dest, package_dir=package, manifest=manifest)
    stamps = {p: p.stat().st_mtime_ns for p in (dest / "rgba-train").rglob("*.webp")}

    def no_download(*args, **kwargs):
        raise AssertionError("downloaded although every image was there")

    monkeypatch.setattr(openclipart, "download_deb", no_download)
    again = fetch_rgba_train(dest, manifest=manifest)
    assert (again.written, again.kept) == (0, 5)
    assert {p: p.stat().st_mtime_ns for p in (dest / "rgba-train").rglob("*.webp")} == stamps
    (dest / "rgba-train/shapes/disc.webp").unlink()
    (dest / "rgba-train/animals/palette.webp").write_bytes(b"half-written")
    repaired = fetch_rgba_train(dest, package_dir=package, manifest=manifest)
    assert (repaired.written, repaired.kept) == (2, 3)
    _check_images(dest / "rgba-train", package)
    assert not [p for p in (dest / "rgba-train").rglob("*") if p.name.startswith(".")]  # no temporary files left


def test_fetch_names_a_missing_source(tmp_path, package):
    manifest = _write_manifest(tmp_path / "m.csv", package / PNG_ROOT, {**LISTED, "animals/gone.webp": "animals/gone.png"})
    with pytest.raises(FetchError, match=r"has no animals/gone\.png; is it openclipart-png\?$"):
        fetch_rgba_train(tmp_path / "data", package_dir=package, manifest=manifest)
    assert not (tmp_path / "data" / "rgba-train").exists()  # checked before anything is written


def test_fetch_names_an_image_that_does_not_match_its_row(tmp_path, package, manifest):
    text = manifest.read_text().replace("shapes/disc.png,Public Domain (Creative Commons PD dedication),256,128",
                                        "shapes/disc.png,Public Domain (Creative Commons PD dedication),256,129")
    manifest.write_text(text)
    with pytest.raises(FetchError, match=r"shapes/disc\.webp: 256×128, .*the manifest says 256×129"):
        fetch_rgba_train(tmp_path / "data", package_dir=package, manifest=manifest)


def test_read_manifest_refuses_paths_that_leave_the_folder(tmp_path, package):
    bad = _write_manifest(tmp_path / "m.csv", package / PNG_ROOT, {"../outside.webp": "shapes/disc.png"})
    with pytest.raises(ValueError, match=r"'\.\./outside\.webp' leaves its folder"):
        read_manifest(bad)


# --- from a .deb: dpkg-deb, and plain Python where dpkg is absent ------------------------------------------


def _tar(root: Path, compression: str) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode=f"w:{compression}") as tar:
        tar.add(root, arcname=".")  # symlinks stay symlinks
    return buf.getvalue()


def _build_deb(package: Path, deb: Path) -> Path:
    """A real .deb (ar archive: debian-binary, control.tar.gz, data.tar.xz), made without dpkg."""
    control = package.parent / "control"
    control.mkdir()
    (control / "control").write_text("Package: openclipart-png\nVersion: 1:0.18\nArchitecture: all\n"
                                      "Maintainer: test <t@example.org>\nDescription: fake\n")
    members = [("debian-binary", b"2.0\n"), ("control.tar.gz", _tar(control, "gz")), ("data.tar.xz", _tar(package, "xz"))]
    with deb.open("wb") as f:
        f.write(b"!<arch>\n")
        for name, data in members:
            f.write(f"{name:<16}{0:<12}{0:<6}{0:<6}{100644:<8}{len(data):<10}`\n".encode() + data + b"\n" * (len(data) % 2))
    return deb


@pytest.mark.parametrize("extractor", ["dpkg-deb", "python"])
def test_fetch_from_a_deb(tmp_path, package, manifest, monkeypatch, extractor):
    if extractor == "dpkg-deb" and shutil.which("dpkg-deb") is None:
        pytest.skip("dpkg-deb is not installed")
    if extractor == "python":
        which = shutil.which
        monkeypatch.setattr(openclipart.shutil, "which", lambda name: None if name == "dpkg-deb" else which(name))
    deb = _build_deb(package, tmp_path / "openclipart-png_0.18_all.deb")
    result = fetch_rgba_train(tmp_path / "data", deb=deb, manifest=manifest)
    assert result.written == 5
    assert _written(result.folder) == set(LISTED) | {"manifest.csv"}
    _check_images(result.folder, package)


def test_python_extraction_refuses_a_file_that_is_not_a_deb(tmp_path, monkeypatch):
    monkeypatch.setattr(openclipart.shutil, "which", lambda name: None)
    (tmp_path / "x.deb").write_bytes(b"not an archive")
    with pytest.raises(FetchError, match=r"x\.deb: not a \.deb"):
        openclipart.extract_deb(tmp_path / "x.deb", tmp_path / "out")


# --- the command line --------------------------------------------------------------------------------------


def test_cli_fetch(tmp_path, package, manifest, monkeypatch, capsys):
    monkeypatch.setattr(openclipart, "shipped_manifest", lambda: manifest)
    assert main(["data", "fetch", "--dir", str(tmp_path / "data"), "--package-dir", str(package)]) == 0
    assert "5 images (5 written, 0 already there); export ALPHAVAE_SHARED_DATA=" in capsys.readouterr().out
    assert main(["data", "fetch", "--dir", str(tmp_path / "data")]) == 0  # complete: no download
    assert "(0 written, 5 already there)" in capsys.readouterr().out


@pytest.mark.parametrize(("args", "message"), [
    (["--deb", "nowhere.deb"], "--deb nowhere.deb: no such file"),
    (["--package-dir", "nowhere"], "--package-dir nowhere: not a folder"),
])
def test_cli_errors_are_one_line(tmp_path, args, message, capsys):
    assert main(["data", "fetch", "--dir", str(tmp_path / "data"), *args]) == 2
    err = capsys.readouterr().err
    assert err == f"alphavae data: error: {message}\n"


def test_cli_names_a_source_missing_from_the_package(tmp_path, package, capsys):
    assert main(["data", "fetch", "--dir", str(tmp_path / "data"), "--package-dir", str(package)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "has no animals/" in err and "more of the manifest's sources" in err


# --- the shipped manifest ----------------------------------------------------------------------------------


def test_shipped_manifest_lists_the_training_set():
    entries = read_manifest(shipped_manifest())
    assert len(entries) == 1342
    assert len({e.file for e in entries}) == len({e.source for e in entries}) == 1342
    assert {e.package for e in entries} == {"openclipart-png"} and {e.license for e in entries} == {openclipart.LICENSE}
    assert all(e.file.endswith(".webp") and max(e.width, e.height) <= 256 for e in entries)
    # the shipped sample is drawn from the training set: same source, same name
    train = {e.source: e.file for e in entries}
    for e in read_manifest(sample_dir() / "manifest.csv"):
        assert train.get(e.source) == str(Path(e.file).with_suffix(".webp")), e.file


def test_shipped_manifest_equals_the_shared_one():
    try:
        shared = shared_data_dir() / "rgba-train" / "manifest.csv"
    except FileNotFoundError:
        pytest.skip("../shared/data (or $ALPHAVAE_SHARED_DATA) is absent: no reference manifest to compare with")
    if not shared.is_file():
        pytest.skip(f"{shared} is absent: no reference manifest to compare with")
    assert shipped_manifest().read_bytes() == shared.read_bytes()
