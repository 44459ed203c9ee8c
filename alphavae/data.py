"""Where the images are, and a folder dataset of RGBA images that survives a corrupt file.

Data is always reached through this module, never through relative ``../data`` paths, so notebooks work
from any working directory (Colab's is ``/content``).
"""

from __future__ import annotations

import os
import warnings
from pathlib import Path

import torch
import torch.nn.functional as F
from torch.utils.data import Dataset

from alphavae.imageio import ImageReadError, list_images, load_rgba, resize_long_side

_PACKAGE_DIR = Path(__file__).resolve().parent


def data_dir() -> Path:
    """The project's ``data/`` folder: inside the installed wheel, or at the root of a source checkout."""
    for candidate in (_PACKAGE_DIR / "_data", _PACKAGE_DIR.parent / "data"):
        if candidate.is_dir():
            return candidate
    raise FileNotFoundError("the alphavae data/ folder was not found; reinstall the package from the repository")


def sample_dir() -> Path:
    """The small real RGBA sample shipped with the project (``data/rgba-sample``)."""
    return data_dir() / "rgba-sample"


def shared_data_dir() -> Path:
    """The larger real image sets: ``$ALPHAVAE_SHARED_DATA``, else ``../shared/data`` beside the checkout.

    Rebuild them elsewhere with ``scripts/`` (see ``data/README.md``).
    """
    env = os.environ.get("ALPHAVAE_SHARED_DATA")
    path = Path(env) if env else _PACKAGE_DIR.parent.parent / "shared" / "data"
    if not path.is_dir():
        raise FileNotFoundError(f"{path}: shared image sets not found; set ALPHAVAE_SHARED_DATA or see data/README.md")
    return path


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
