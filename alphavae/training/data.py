"""Training images: a folder dataset that survives a corrupt file, in a fixed, resumable order.

:class:`RGBAFolder` reads every image under a folder as a straight-alpha RGBA square (long side resized in
premultiplied space, centred on a transparent canvas); a corrupt file is reported by name and skipped.
:class:`StepBatchSampler` makes the batch for step s a pure function of (seed, s): each epoch is a seeded
permutation of the images, step s takes the s-th global batch of it, and each process its own equal share.
Nothing but the step number has to be saved to resume the data order exactly, and one or two GPUs see the
same global batches.
"""

from __future__ import annotations

import dataclasses
import os
import sys
import warnings
from collections.abc import Iterator
from pathlib import Path

import torch
import torch.nn.functional as F
from torch.utils.data import DataLoader, Dataset, Sampler

from alphavae.imageio import ImageReadError, list_images, load_rgba, resize_long_side
from alphavae.paths import FETCH_DATA_COMMAND, sample_dir, shared_data_dir
from alphavae.training.config import TrainConfig
from alphavae.training.debian_sources import OOD_PACKAGE, ReservedPackageError, refuse_reserved
from alphavae.training.openclipart import PACKAGE as OPENCLIPART
from alphavae.training.openclipart import read_manifest
from alphavae.training.splits import read_split, split_files


def square_pad(rgba: torch.Tensor, size: int) -> torch.Tensor:
    """Centre an RGBA image whose long side is ``size`` on a transparent ``size × size`` canvas."""
    h, w = rgba.shape[-2:]
    top, left = (size - h) // 2, (size - w) // 2
    return F.pad(rgba, (left, size - w - left, top, size - h - top), value=0.0)


class RGBAFolder(Dataset):
    """Every image under a folder as straight-alpha RGBA ``(4, size, size)``: long side resized to ``size``
    in premultiplied space, centred on a transparent square.

    A corrupt or unreadable file is reported once by name (a warning, and in ``bad_files``) and skipped:
    the next readable image is returned in its place, so one bad file never stops a run.
    """

    def __init__(self, root: str | os.PathLike, size: int | None = 256, files: list[Path] | None = None):
        self.root = Path(root)
        self.files = files if files is not None else list_images(self.root)
        if not self.files:
            raise FileNotFoundError(f"{self.root}: no image files found")
        self.size = size
        self.bad_files: dict[Path, str] = {}

    def __len__(self) -> int:
        return len(self.files)

    def load(self, index: int) -> torch.Tensor:
        """The image at ``index``, resized and padded; raises :class:`ImageReadError` if it is unreadable."""
        rgba = load_rgba(self.files[index])
        if self.size is not None:
            rgba = square_pad(resize_long_side(rgba, self.size), self.size)
        return rgba

    def load_all(self) -> torch.Tensor:
        """Every image, stacked ``(N, 4, size, size)``: for the small sets kept in memory (held-out splits, the
        sample); raises :class:`ImageReadError` on an unreadable file, as :meth:`load` does."""
        return torch.stack([self.load(i) for i in range(len(self))])

    def __getitem__(self, index: int) -> torch.Tensor:
        for offset in range(len(self.files)):
            i = (index + offset) % len(self.files)
            if self.files[i] in self.bad_files:
                continue
            try:
                return self.load(i)
            except ImageReadError as exc:
                self.bad_files[self.files[i]] = str(exc)
                warnings.warn(f"skipping unreadable image {exc}", stacklevel=2)
        raise ImageReadError(f"{self.root}: no readable image files")


class StepBatchSampler(Sampler[list[int]]):
    """Per-process index batches for steps ``start_step, start_step + 1, …, steps - 1``.

    ``global_batch`` images per step (an incomplete last batch of an epoch is dropped), split evenly over
    ``world_size`` processes: rank r takes positions ``r, r + world_size, …`` of the global batch.
    """

    def __init__(self, n_items: int, global_batch: int, steps: int, seed: int, start_step: int = 0,
                 rank: int = 0, world_size: int = 1):
        if global_batch % world_size:
            raise ValueError(f"batch_size {global_batch} is not divisible by the {world_size} processes")
        if n_items < global_batch:
            raise ValueError(f"{n_items} training images are fewer than one batch of {global_batch}")
        self.n_items, self.global_batch, self.steps, self.seed = n_items, global_batch, steps, seed
        self.start_step, self.rank, self.world_size = start_step, rank, world_size
        self.batches_per_epoch = n_items // global_batch

    def global_indices(self, step: int) -> list[int]:
        """Every process's images of ``step``, in order."""
        epoch, k = divmod(step, self.batches_per_epoch)
        generator = torch.Generator().manual_seed(self.seed * 1_000_003 + epoch)
        order = torch.randperm(self.n_items, generator=generator)
        return order[k * self.global_batch:(k + 1) * self.global_batch].tolist()

    def __iter__(self) -> Iterator[list[int]]:
        for step in range(self.start_step, self.steps):
            yield self.global_indices(step)[self.rank::self.world_size]

    def __len__(self) -> int:
        return max(self.steps - self.start_step, 0)


#: How to make the ``extra_data`` set this project uses (``configs/free_alpha_overshoot_extra.json``) beside
#: ``rgba-train``: the shared data is one folder for both.
EXTRA_DATA_COMMAND = ("alphavae data fetch --dir DIR && python scripts/rebuild_rgba_extra.py --out DIR/rgba-extra && "
                      "export ALPHAVAE_SHARED_DATA=DIR")


#: The command that makes the folder of each config key, for its error.
REBUILD_COMMANDS = {"data": FETCH_DATA_COMMAND, "extra_data": EXTRA_DATA_COMMAND}


def resolve_data_dir(data: str, key: str = "data") -> Path:
    """A folder given in the config's ``key`` (``data`` or ``extra_data``): ``sample`` (the RGBA sample shipped with
    the package), an existing path, else a folder of that name in the shared data (``alphavae.paths.shared_data_dir``).
    The error names the key's command in :data:`REBUILD_COMMANDS` (and for ``data`` the sample, which ``extra_data``
    may not take: it is rgba-train's)."""
    if data == "sample":
        return sample_dir()
    path = Path(data).expanduser()
    if path.is_dir():
        return path
    try:
        shared = shared_data_dir() / data
    except FileNotFoundError:
        shared = None
    if shared is not None and shared.is_dir():
        return shared
    sample = ', or use data: "sample" (the shipped sample)' if key == "data" else ""
    raise ValueError(f"{key}: '{data}' is neither a folder nor a folder of the shared data; rebuild the training "
                     f"images with `{REBUILD_COMMANDS[key]}`{sample}")


def train_and_heldout(data: str, split: str | None, max_images: int | None = None,
                      extra_data: str | None = None) -> tuple[list[Path], list[Path]]:
    """Training and held-out image paths for the config's ``data`` and ``split`` (no split: nothing held out),
    ``max_images`` of them at most, then every image of ``extra_data`` (training only: the held-out split stays
    ``data``'s, so scores stay comparable with runs without it)."""
    root = resolve_data_dir(data)
    if split is None:
        train, heldout = list_images(root), []
    else:
        train, heldout = split_files(root, read_split(split))
    train = train[:max_images] if max_images else train
    if extra_data is not None:
        train = train + extra_training_images(extra_data, root, heldout)
    return train, heldout


def extra_training_images(extra_data: str, data_root: Path, heldout: list[Path]) -> list[Path]:
    """Every image of the ``extra_data`` folder, once it is shown to be a training set that may be trained on: a set
    made by a build script (its ``manifest.csv``) from packages none of which is reserved for evaluation, the
    out-of-domain package or ``openclipart-png`` (which comes only through ``data``, split); not ``data``'s folder,
    inside it or around it; and holding no held-out image (the same category and stem). Otherwise a one-line error."""
    root = resolve_data_dir(extra_data, "extra_data")
    where = f"extra_data: '{extra_data}' ({root})"
    a, b = root.resolve(), data_root.resolve()
    if a == b or a.is_relative_to(b) or b.is_relative_to(a):
        raise ValueError(f"{where} is the data folder, inside it or around it; its held-out images would be trained on")
    try:
        entries = read_manifest(root / "manifest.csv")
    except (FileNotFoundError, KeyError, ValueError) as exc:
        raise ValueError(f"{where}: no readable manifest.csv naming each image's package ({exc}); make the set with "
                         f"`{EXTRA_DATA_COMMAND}`") from exc
    try:
        refuse_reserved(sorted({entry.package for entry in entries}), also=(OOD_PACKAGE, OPENCLIPART))
    except ReservedPackageError as exc:
        raise ValueError(f"{where}: {exc}") from exc
    extra = list_images(root)
    if not extra:
        raise ValueError(f"{where}: has no image files")
    listed = {entry.file for entry in entries}
    unlisted = [p for p in extra if p.relative_to(root).as_posix() not in listed]
    if unlisted:
        raise ValueError(f"{where}: {unlisted[0]} is not in its manifest.csv ({len(unlisted)} such files)")
    heldout_keys = {(p.relative_to(data_root).parent / p.stem).as_posix() for p in heldout}
    for path in extra:
        if (path.relative_to(root).parent / path.stem).as_posix() in heldout_keys:
            raise ValueError(f"{where}: {path} is a held-out image of data (same category and name)")
    return extra


def make_loader(files: list[Path], size: int, sampler: StepBatchSampler, num_workers: int) -> DataLoader:
    """A DataLoader over ``files`` (``RGBAFolder``) whose batches follow ``sampler``.

    It gets its own generator: otherwise starting to iterate draws a worker seed from the global RNG, and a
    resumed run would draw it at another moment than an uninterrupted one.
    """
    dataset = RGBAFolder(files[0].parent, size=size, files=files)
    return DataLoader(dataset, batch_sampler=sampler, num_workers=num_workers, pin_memory=torch.cuda.is_available(),
                      generator=torch.Generator().manual_seed(sampler.seed))


def with_reachable_data(config: TrainConfig) -> TrainConfig:
    """``config`` if its ``data`` (and ``extra_data``) folder can be found, else a copy on the shipped sample
    (``data: "sample"``, no held-out split, no extra data), with a printed warning that names the command which
    fetches the real training images.

    For notebooks: a user without the training set (a fresh Colab runtime, a laptop) still gets a run, and is
    told loudly that it is not the real one. Scripts and the CLI keep the error (:func:`resolve_data_dir`).
    """
    try:
        resolve_data_dir(config.data)
        if config.extra_data is not None:
            resolve_data_dir(config.extra_data, "extra_data")
        return config
    except ValueError as exc:
        print(f"WARNING: {exc}.\nWARNING: training on the shipped 30-image sample instead (data: sample, no held-out "
              f"split, no extra_data); for the real run: {FETCH_DATA_COMMAND}", file=sys.stderr)
        return dataclasses.replace(config, data="sample", split=None, extra_data=None)
