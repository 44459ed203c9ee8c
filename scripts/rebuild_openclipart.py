"""Choose the shipped sample ``data/rgba-sample`` from a built ``rgba-train`` (maintainers only).

The training set itself is rebuilt by ``alphavae data fetch --dir DIR`` (:mod:`alphavae.training.openclipart`,
exactly the images of the shipped manifest). This script only makes the small sample from such a set:

    python scripts/rebuild_openclipart.py sample --src ../shared/data/rgba-train --out data/rgba-sample
    python scripts/rebuild_openclipart.py sample --src DIR/rgba-train --out my-sample   # after alphavae data fetch
"""

from __future__ import annotations

import argparse
import hashlib
import sys
from pathlib import Path

from alphavae.training.openclipart import Entry, load_rgba_array, read_manifest, save_rgba, soft_alpha, write_manifest

#: Extra picks by soft-alpha band (share of pixels with 0 < α < 1): near-hard cut-outs, then large soft regions.
SOFT_BANDS = ((0.0, 0.015, 2), (0.2, 0.4, 3), (0.4, 1.01, 3))


def _rank(entry: Entry) -> str:
    return hashlib.sha256(entry.file.encode()).hexdigest()


def choose_sample(entries: list[Entry], long_side: int = 256) -> list[Entry]:
    """The sample rule: among images whose long side is ``long_side``, the first image of every category in
    sha256-of-path order, then, in the same order, the images of each soft-alpha band of :data:`SOFT_BANDS`
    (as many as the band's count). Deterministic and independent of file order."""
    ranked = sorted((e for e in entries if max(e.width, e.height) == long_side), key=_rank)
    chosen: dict[str, Entry] = {}
    for e in ranked:
        chosen.setdefault(e.file.split("/")[0], e)
    picked = list(chosen.values())
    for low, high, count in SOFT_BANDS:
        band = [e for e in ranked if low <= e.soft_alpha < high and e not in picked]
        picked += band[:count]
    return sorted(picked, key=lambda e: e.file)


def write_sample(src: Path, out: Path) -> list[Entry]:
    """Copy the chosen images of the set at ``src`` into ``out`` as 8-bit RGBA PNGs, with a manifest."""
    rows = []
    for e in choose_sample(read_manifest(src / "manifest.csv")):
        arr = load_rgba_array(src / e.file)
        name = Path(e.file).with_suffix(".png").as_posix()
        save_rgba(arr, out / name)
        rows.append(Entry(name, e.package, e.source, e.license, arr.shape[1], arr.shape[0], soft_alpha(arr)))
    write_manifest(rows, out)
    return rows


def main(argv: list[str] | None = None) -> int:
    """Command line: ``sample --src SET --out FOLDER``."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    s = sub.add_parser("sample", help="choose the shipped sample from a built set")
    s.add_argument("--src", type=Path, required=True, help="a set with manifest.csv (e.g. DIR/rgba-train)")
    s.add_argument("--out", type=Path, required=True)
    args = parser.parse_args(argv)
    if not (args.src / "manifest.csv").is_file():
        parser.error(f"--src {args.src}: no manifest.csv; point it at a set made by `alphavae data fetch`")
    rows = write_sample(args.src, args.out)
    print(f"{len(rows)} images written to {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
