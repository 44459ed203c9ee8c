"""Debian packages as image sources: which ones are reserved, how to get one, and what it declares about itself.

Every extra image set of the project (the RGB pretraining corpus, the out-of-domain RGBA set) is rebuilt from
Debian packages by a script, so anyone with the archive (``apt-get download`` needs no root) gets the same files.
What those scripts share lives here:

* :data:`RESERVED` — packages kept for independent evaluation; :func:`refuse_reserved` stops a build that lists
  one, so a reserved image can never leak into a training set by a typo in a package table;
* :func:`package_tree` — an unpacked package, from a given folder, a given ``.deb`` or ``apt-get download``;
* :func:`package_version` and :func:`declared_license` — the version, and the licence the package's
  ``debian/copyright`` declares for a file (the last DEP-5 ``Files:`` stanza whose pattern matches the end of the
  installed path, as DEP-5 says);
* :func:`image_files`, :func:`rank` — the package's regular image files, and the seeded order every
  deterministic choice uses.
"""

from __future__ import annotations

import fnmatch
import gzip
import hashlib
import re
import shutil
import subprocess
from collections.abc import Iterable
from pathlib import Path, PurePosixPath

from alphavae.training.openclipart import FetchError, download_deb

#: Packages no training set may take images from: kept for independent evaluation (glob patterns).
RESERVED = ("wesnoth*", "fonts-noto-color-emoji", "oxygen-icon-theme")
#: File names (stems, lower case) no training set may take even from another package: an icon theme's own drawing of
#: a reserved package's application icon (or of the out-of-domain game's) is not that package's image, but it depicts
#: it; keeping it out leaves no doubt.
RESERVED_NAMES = ("wesnoth*", "oxygen*", "*emoji*", "hedgewars*")
#: The one package the out-of-domain RGBA evaluation set comes from (game sprites); no training set uses it.
OOD_PACKAGE = "hedgewars-data"
#: Image files a source package may hold (what Pillow opens without extra plugins).
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".webp")


class ReservedPackageError(ValueError):
    """A build listed a package reserved for evaluation; the message names the package and the rule."""


def refuse_reserved(packages: Iterable[str], also: Iterable[str] = ()) -> None:
    """Raise :class:`ReservedPackageError` if any of ``packages`` matches :data:`RESERVED` or ``also`` (a
    training set passes :data:`OOD_PACKAGE` and ``openclipart-png`` there)."""
    patterns = tuple(RESERVED) + tuple(also)
    for package in packages:
        for pattern in patterns:
            if fnmatch.fnmatchcase(package, pattern):
                raise ReservedPackageError(
                    f"{package}: reserved for independent evaluation (matches {pattern!r}); no training set "
                    "may take images from it")


def names_reserved(path: str) -> bool:
    """Whether the file at ``path`` (inside a package) is named after a reserved package (:data:`RESERVED_NAMES`)."""
    stem = PurePosixPath(path).stem.lower()
    return any(fnmatch.fnmatchcase(stem, pattern) for pattern in RESERVED_NAMES)


def unpack_deb(deb: Path, dest: Path) -> Path:
    """``dpkg-deb -x DEB DEST``; returns ``dest``."""
    if shutil.which("dpkg-deb") is None:
        raise FetchError(f"{deb}: dpkg-deb not found; unpack the package yourself and pass its folder")
    dest.mkdir(parents=True, exist_ok=True)  # dpkg-deb makes the last folder only
    done = subprocess.run(["dpkg-deb", "-x", str(deb), str(dest)], stderr=subprocess.PIPE, text=True)
    if done.returncode != 0:
        raise FetchError(f"{deb}: dpkg-deb -x failed ({' '.join(done.stderr.split())})")
    return dest


def package_tree(package: str, given: Path | None, workdir: Path) -> Path:
    """The unpacked tree of ``package``: ``given`` itself when it is a folder, ``given`` unpacked when it is a
    ``.deb``, else the package downloaded with ``apt-get download`` into ``workdir`` and unpacked there."""
    if given is not None and given.is_dir():
        return given
    deb = given if given is not None else download_deb(workdir / "debs", package)
    return unpack_deb(deb, workdir / "trees" / package)


def package_version(tree: Path, package: str) -> str:
    """The Debian version of an unpacked package, from its ``changelog.Debian.gz`` (``changelog.gz`` for a
    native package; ``unknown`` without either)."""
    doc = tree / "usr/share/doc"
    for log in [*sorted(doc.glob("*/changelog.Debian.gz")), *sorted(doc.glob("*/changelog.gz"))]:
        with gzip.open(log, "rt", errors="replace") as f:
            match = re.match(r"\S+ \(([^)]+)\)", f.readline())  # the source package's name and version
        if match:
            return match.group(1)
    return "unknown"


def _copyright_file(tree: Path, package: str) -> Path | None:
    candidates = [tree / "usr/share/doc" / package / "copyright", *sorted((tree / "usr/share/doc").glob("*/copyright"))]
    return next((c for c in candidates if c.is_file()), None)


def _stanzas(text: str) -> list[dict[str, str]]:
    """The paragraphs of a DEP-5 file as {field: first line of its value}, ``Files`` joined over its lines."""
    stanzas = []
    for block in re.split(r"\n\s*\n", text):
        fields: dict[str, str] = {}
        key = None
        for line in block.splitlines():
            if line[:1] in (" ", "\t") and key == "files":
                fields[key] += " " + line.strip()
            elif ":" in line and line[:1] not in (" ", "\t"):
                key, _, value = line.partition(":")
                key = key.strip().lower()
                fields[key] = value.strip()
        stanzas.append(fields)
    return stanzas


def _matches(pattern: str, tails: list[str]) -> bool:
    """A DEP-5 pattern against the tails of an installed path; a literal pattern (no wildcard) by file name too."""
    if not any(c in pattern for c in "*?["):
        return PurePosixPath(pattern).name == PurePosixPath(tails[-1]).name
    return any(fnmatch.fnmatchcase(tail, pattern) for tail in tails)


def declared_license(tree: Path, package: str, path: str) -> str:
    """The licence the package's ``debian/copyright`` declares for the installed file ``path``.

    Machine-readable (DEP-5) files: the last ``Files:`` stanza (``debian/*`` patterns aside) with a pattern
    matching a tail of ``path`` (patterns name source-tree paths; installed paths differ in their leading
    folders; a literal pattern matches by file name), as DEP-5's "last match wins"; ``Files: *`` matches
    everything. Other copyright files: their first ``License:`` line, or ``see debian/copyright``.
    """
    file = _copyright_file(tree, package)
    if file is None:
        return "unknown (no debian/copyright)"
    text = file.read_text(errors="replace")
    stanzas = [s for s in _stanzas(text) if "files" in s and "license" in s]
    parts = PurePosixPath(path).parts
    tails = ["/".join(parts[i:]) for i in range(len(parts))]
    found = None
    for stanza in stanzas:
        patterns = [p for p in stanza["files"].split() if not p.startswith("debian/")]
        if any(_matches(p, tails) for p in patterns):
            found = stanza
    if found is not None and found["license"]:
        return found["license"]
    match = re.search(r"^License:\s*(\S.*)$", text, re.MULTILINE)
    return match.group(1).strip() if match else f"see /usr/share/doc/{package}/copyright"


def image_files(tree: Path) -> list[Path]:
    """The regular image files of an unpacked package, sorted (links skipped: they repeat a file)."""
    return sorted(p for p in tree.rglob("*")
                  if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file() and not p.is_symlink())


def rank(*keys: str) -> str:
    """A seeded order key: the SHA-256 of the joined ``keys`` (stable across machines and Python versions)."""
    return hashlib.sha256("\0".join(keys).encode()).hexdigest()

