"""The one switch between "fast on a CPU" and "full on a GPU", read by every notebook's parameters cell.

``ALPHAVAE_MODE=fast`` (the default, what CI runs) or ``ALPHAVAE_MODE=full``. Fast mode: CPU, the embedded
small pretrained VAE, 32–64 px, a few steps, no network. Full mode: the GPU, larger images, more steps, and
hub VAEs when asked for.
"""

from __future__ import annotations

import os
from dataclasses import dataclass


@dataclass(frozen=True)
class Preset:
    """Sizes a notebook scales by: image side, number of images, optimisation steps, batch size."""

    name: str
    image_size: int
    n_images: int
    steps: int
    batch_size: int


FAST = Preset("fast", image_size=64, n_images=8, steps=20, batch_size=4)
FULL = Preset("full", image_size=256, n_images=64, steps=2000, batch_size=16)


def current_preset() -> Preset:
    """The preset chosen by ``$ALPHAVAE_MODE`` (``fast`` unless set to ``full``)."""
    mode = os.environ.get("ALPHAVAE_MODE", "fast").strip().lower()
    if mode not in ("fast", "full"):
        raise ValueError(f"ALPHAVAE_MODE={mode!r}: use 'fast' or 'full'")
    return FULL if mode == "full" else FAST
