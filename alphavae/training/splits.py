"""The held-out split of an RGBA image folder: a fixed, seeded ~10% of every category, written to a JSON file.

Why per category: the training set mixes 23 clip-art categories of very different difficulty (flat icons,
soft-shadowed photos-like art); holding out the same share of each keeps the evaluation set representative.
Why a file: the trainer, the ablation and the generator (notebook 05) must all use exactly the same images,
so the split is computed once (``make_split``), committed (``configs/split-rgba-train.json``) and read back
(``read_split``). The file names are relative to the data folder, so the split works wherever the folder is.
"""

from __future__ import annotations

import json
import math
import os
import random
from pathlib import Path

from alphavae.imageio import list_images


def make_split(root: str | os.PathLike, fraction: float = 0.1, seed: int = 0) -> dict:
    """Choose ``ceil(fraction × n)`` held-out images per category (top-level folder) of ``root``.

    The choice depends only on the sorted relative file names, ``fraction`` and ``seed``, never on the
    machine or the order the file system lists files in.
    """
    if not 0 < fraction < 1:
        raise ValueError(f"fraction={fraction}: must be between 0 and 1")
    root = Path(root)
    by_category: dict[str, list[str]] = {}
    for path in list_images(root):
        rel = path.relative_to(root).as_posix()
        by_category.setdefault(rel.split("/")[0] if "/" in rel else ".", []).append(rel)
    heldout: list[str] = []
    for category, files in sorted(by_category.items()):
        files = sorted(files)
        rng = random.Random(f"{seed}:{category}")
        heldout += sorted(rng.sample(files, math.ceil(fraction * len(files))))
    return {"root": root.name, "fraction": fraction, "seed": seed, "n_images": sum(map(len, by_category.values())),
            "heldout": heldout}


def write_split(split: dict, path: str | os.PathLike) -> Path:
    """Write a split made by :func:`make_split` as indented JSON."""
    path = Path(path)
    path.write_text(json.dumps(split, indent=1) + "\n")
    return path


def read_split(path: str | os.PathLike) -> dict:
    """Read a split file; raises ``ValueError`` naming the file if it is not a split."""
    path = Path(path)
    try:
        split = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as exc:
        raise ValueError(f"{path}: cannot read split file ({exc})") from exc
    if not isinstance(split, dict) or not isinstance(split.get("heldout"), list):
        raise ValueError(f"{path}: not a split file (no 'heldout' list)")
    return split


def split_files(root: str | os.PathLike, split: dict) -> tuple[list[Path], list[Path]]:
    """``(train, heldout)`` paths of ``root`` under ``split``; every held-out name must exist in ``root``."""
    root = Path(root)
    files = list_images(root)
    held = set(split["heldout"])
    rels = {p.relative_to(root).as_posix(): p for p in files}
    missing = sorted(held - rels.keys())
    if missing:
        raise ValueError(f"{root}: {len(missing)} held-out file(s) of the split are missing, e.g. {missing[0]}")
    train = [p for rel, p in sorted(rels.items()) if rel not in held]
    heldout = [rels[rel] for rel in sorted(held)]
    return train, heldout
