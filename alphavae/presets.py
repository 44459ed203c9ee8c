"""The one switch between "fast on a CPU" and "full on a GPU", read by every notebook's parameters cell.

``ALPHAVAE_MODE=fast`` (the default, what CI runs) or ``ALPHAVAE_MODE=full``. Every size a notebook scales by
comes from the :class:`Preset` of the mode, so the switch is one variable and the numbers live here once.
"""

from __future__ import annotations

import os
import sys
from dataclasses import dataclass

import torch


@dataclass(frozen=True)
class Preset:
    """What a notebook scales by in one mode."""

    name: str
    device: str  # "cpu" (fast: reproducible on any laptop) or "auto" (the GPU when there is one)
    image_size: int  # long side of the images the notebooks show and score, pixels
    n_images: int  # real RGBA images taken from the shipped sample (it holds 30)
    train_size: int  # image side of notebook 03's fine-tune, pixels
    steps: int  # notebook 03's fine-tune steps
    batch_size: int  # notebook 03's fine-tune batch
    config: str  # notebook 04's training config (configs/<config>.json); on a CPU always "toy"
    n_samples: int  # notebook 05's generated images
    sample_steps: int  # notebook 05's DPM-Solver++ steps (the generator's default is 25)


FAST = Preset("fast", device="cpu", image_size=128, n_images=8, train_size=48, steps=30, batch_size=4,
              config="toy", n_samples=4, sample_steps=12)
FULL = Preset("full", device="auto", image_size=256, n_images=30, train_size=128, steps=150, batch_size=8,
              config="main", n_samples=16, sample_steps=25)


def current_preset() -> Preset:
    """The preset chosen by ``$ALPHAVAE_MODE`` (``fast`` unless set to ``full``).

    Full mode without a GPU is allowed (a user may want the full sizes on a CPU) but said loudly, because it
    is slow and notebook 04 then falls back to the toy config.
    """
    mode = os.environ.get("ALPHAVAE_MODE", "fast").strip().lower()
    if mode not in ("fast", "full"):
        raise ValueError(f"ALPHAVAE_MODE={mode!r}: use 'fast' or 'full'")
    if mode == "full" and not torch.cuda.is_available():
        print("WARNING: ALPHAVAE_MODE=full but no GPU is visible: full sizes will be slow on this CPU, and notebook 04 "
              "trains the toy config (on Colab: Runtime > Change runtime type > GPU).", file=sys.stderr)
    return FULL if mode == "full" else FAST
