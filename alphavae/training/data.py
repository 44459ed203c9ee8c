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


#: How to make the ``extra_data`` set this project uses (``configs/free_alpha_overshoot_extra.json``).
EXTRA_DATA_COMMAND = "python scripts/rebuild_rgba_extra.py --out DIR/rgba-extra && export ALPHAVAE_SHARED_DATA=DIR"


def resolve_data_dir(data: str, key: str = "data", rebuild: str = FETCH_DATA_COMMAND) -> Path:
    """A folder given in the config's ``key``: ``sample`` (the RGBA sample shipped with the package), an existing
    path, else a folder of that name in the shared data (``alphavae.paths.shared_data_dir``); ``rebuild`` is the
    command the error names."""
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
    raise ValueError(f"{key}: '{data}' is neither a folder nor a folder of the shared data; rebuild the training "
                     f"images with `{rebuild}`, or use {key}: \"sample\" (the shipped sample)")


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
        extra = list_images(resolve_data_dir(extra_data, "extra_data", EXTRA_DATA_COMMAND))
        if not extra:
            raise ValueError(f"extra_data: '{extra_data}' has no image files")
        train = train + extra
    return train, heldout


def make_loader(files: list[Path], size: int, sampler: StepBatchSampler, num_workers: int) -> DataLoader:
    """A DataLoader over ``files`` (``RGBAFolder``) whose batches follow ``sampler``.

    It gets its own generator: otherwise starting to iterate draws a worker seed from the global RNG, and a
    resumed run would draw it at another moment than an uninterrupted one.
    """
    dataset = RGBAFolder(files[0].parent, size=size, files=files)
    return DataLoader(dataset, batch_sampler=sampler, num_workers=num_workers, pin_memory=torch.cuda.is_available(),
                      generator=torch.Generator().manual_seed(sampler.seed))


def with_reachable_data(config: TrainConfig) -> TrainConfig:
    """``config`` if its ``data`` folder can be found, else a copy on the shipped sample (``data: "sample"``,
    no held-out split), with a printed warning that names the command which fetches the real training images.

    For notebooks: a user without the training set (a fresh Colab runtime, a laptop) still gets a run, and is
    told loudly that it is not the real one. Scripts and the CLI keep the error (:func:`resolve_data_dir`).
    """
    try:
        resolve_data_dir(config.data)
        return config
    except ValueError as exc:
        print(f"WARNING: {exc}.\nWARNING: training on the shipped 30-image sample instead (data: sample, no held-out "
              f"split); for the real run: {FETCH_DATA_COMMAND}", file=sys.stderr)
        return dataclasses.replace(config, data="sample", split=None)
