"""The RGB pretraining data: the held-out split of a photo folder, and random crops cut on the training device.

A folder is any tree of images (:func:`alphavae.imageio.list_images`, WebP included), such as the shared
``rgb-photos`` or the RGB corpus ``rgb-corpus`` (``data/README.md``). Some images of the corpus share content:
a photograph's 8 square crops and its whole view, and the clip-art composites pasted over crops of it. Their
folder's ``manifest.csv`` says so (columns ``kind``, ``package``, ``source``, ``photo``), and
:func:`split_folder` keeps such a group on one side of the split, so no held-out image is seen in training
through a relative. Every ``HELDOUT_EVERY``-th group is held out: 1/6 of the groups. Where each image is its
own group (a folder without that manifest, such as ``rgb-photos``) this is every 6th file, sorted by path.

:class:`PhotoCrops` decodes the training images once, resizes each to every scale, and keeps the results on
the training device as one flat uint8 tensor; a batch is a gather from it, so a step copies nothing from the
host and never waits for it.
"""

from __future__ import annotations

import csv
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import torch
import torch.nn.functional as F

from alphavae.imageio import list_images, load_rgba

#: Every ``HELDOUT_EVERY``-th group of related images (ordered by their first path) is held out for evaluation.
HELDOUT_EVERY = 6
#: Probability that a crop's colours are inverted under ``colour_augment``.
INVERT_P = 0.2


def load_photo(path: Path) -> torch.Tensor:
    """A photo as RGB ``(3, H, W)`` in [0, 1] (any alpha is dropped: these are opaque photos)."""
    return load_rgba(path)[:3]


def image_groups(folder: Path) -> dict[Path, str]:
    """Image path → the name of its group of related images, from ``folder/manifest.csv`` where it has a
    ``kind`` column (the RGB corpus): a photograph's views and the composites over it share ``package:source``.
    Images not named there (or no such manifest) are not in the result: each is a group of its own."""
    manifest = folder / "manifest.csv"
    if not manifest.is_file():
        return {}
    with manifest.open(newline="") as fh:
        rows = list(csv.DictReader(fh))
    if not rows or "kind" not in rows[0]:
        return {}
    groups = {}
    for row in rows:
        if row["kind"] == "photo":
            groups[folder / row["file"]] = f"{row['package']}:{row['source']}"
        elif row.get("photo"):
            groups[folder / row["file"]] = row["photo"]
    return groups


def split_photos(files: list[Path], every: int = HELDOUT_EVERY,
                 groups: dict[Path, str] | None = None) -> tuple[list[Path], list[Path]]:
    """Files → (training, held-out), both sorted. Files sharing a name in ``groups`` form one group (others are
    alone); groups are ordered by their first file and every ``every``-th is held out, so the split is stable."""
    files = sorted(files)
    groups = groups or {}
    order: dict[str, int] = {}
    for f in files:
        order.setdefault(groups.get(f, str(f)), len(order) + 1)
    held = {f for f in files if order[groups.get(f, str(f))] % every == 0}
    return [f for f in files if f not in held], [f for f in files if f in held]


def split_folder(folder: str | Path) -> tuple[list[Path], list[Path]]:
    """(training, held-out) images under ``folder``, related images kept together (:func:`image_groups`)."""
    folder = Path(folder)
    return split_photos(list_images(folder), groups=image_groups(folder))


def _load_uint8(path: Path) -> torch.Tensor:
    return load_photo(path).mul(255).round().to(torch.uint8)


class PhotoCrops:
    """Random square crops at several scales of images kept on ``device`` as one flat uint8 tensor.

    Each image is resized once per scale (antialiased bicubic, on ``device``); a scaled copy whose short side is
    below ``crop`` is left out, and so is an image with none left (:attr:`skipped` counts them). A crop is a
    random window of a random scaled copy, flipped left-right half the time. With ``colour_augment`` the colour
    channels are also randomly permuted and, with probability :data:`INVERT_P`, inverted: a VAE must encode any
    colour, and the RGBA composites it will see are often saturated. :meth:`sample` draws everything from its
    ``generator`` (on ``device``) with torch operations only, so a batch is a function of the generator's seed.
    """

    def __init__(self, files: list[Path], crop: int, scales: tuple[float, ...], device: torch.device,
                 colour_augment: bool = False):
        if not files:
            raise ValueError("no training photos")
        self.crop, self.colour_augment, self.skipped = crop, colour_augment, 0
        pieces, sizes = [], []
        with ThreadPoolExecutor(max_workers=8) as pool:  # decoding releases the GIL
            for image in pool.map(_load_uint8, files):
                photo = image.to(device)[None].float() / 255
                levels = 0
                for s in scales:
                    h, w = round(photo.shape[-2] * s), round(photo.shape[-1] * s)
                    if min(h, w) >= crop:
                        scaled = F.interpolate(photo, size=(h, w), mode="bicubic", antialias=True, align_corners=False)
                        pieces.append(scaled.clamp(0, 1).mul(255).round().to(torch.uint8).flatten())
                        sizes.append((h, w))
                        levels += 1
                self.skipped += levels == 0
        if not pieces:
            raise ValueError(f"every photo is smaller than the crop size {crop} at every scale")
        self.pixels = torch.cat(pieces)
        lengths = torch.tensor([3 * h * w for h, w in sizes], device=device)
        self.offsets = lengths.cumsum(0) - lengths
        self.heights = torch.tensor([h for h, _ in sizes], device=device)
        self.widths = torch.tensor([w for _, w in sizes], device=device)

    def sample(self, batch_size: int, generator: torch.Generator) -> torch.Tensor:
        """A batch ``(B, 3, crop, crop)`` in [0, 1] on the images' device (``generator`` must be there too)."""
        b, c, device = batch_size, self.crop, self.pixels.device
        which = torch.randint(len(self.offsets), (b,), generator=generator, device=device)
        corner = torch.rand(b, 2, generator=generator, device=device)
        flip = torch.rand(b, generator=generator, device=device) < 0.5
        channels = torch.rand(b, 3, generator=generator, device=device).argsort(1)
        invert = torch.rand(b, generator=generator, device=device) < INVERT_P
        if not self.colour_augment:
            channels = torch.arange(3, device=device).expand(b, 3)
        h, w = self.heights[which], self.widths[which]
        top = (corner[:, 0] * (h - c + 1)).long().clamp_max(h - c)
        left = (corner[:, 1] * (w - c + 1)).long().clamp_max(w - c)
        span = torch.arange(c, device=device)
        rows = top[:, None] + span
        cols = left[:, None] + torch.where(flip[:, None], span.flip(0), span)
        index = (self.offsets[which].view(b, 1, 1, 1) + (channels * (h * w)[:, None]).view(b, 3, 1, 1)
                 + (rows * w[:, None]).view(b, 1, c, 1) + cols.view(b, 1, 1, c))
        batch = self.pixels[index].float() / 255
        if self.colour_augment:
            batch = torch.where(invert.view(b, 1, 1, 1), 1 - batch, batch)
        return batch
