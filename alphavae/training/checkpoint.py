"""Checkpoints that survive a kill at any moment: written to a temporary folder, then renamed.

A checkpoint is accelerate's ``save_state`` folder (every registered object — model, discriminator,
optimisers, schedulers, EMA, step counter — plus every process's RNG states) named ``step-00001234``.
The rename is atomic, so a folder with that name is always complete; a half-written ``.tmp-*`` folder
left by a kill is ignored and removed by the next save. Only the newest ``keep`` checkpoints are kept.
"""

from __future__ import annotations

import re
import shutil
from pathlib import Path

from accelerate import Accelerator

_NAME = re.compile(r"^step-(\d{8})$")


def checkpoint_dirs(root: str | Path) -> list[Path]:
    """Complete checkpoints under ``root``, oldest first."""
    root = Path(root)
    if not root.is_dir():
        return []
    return sorted(p for p in root.iterdir() if p.is_dir() and _NAME.match(p.name))


def latest_checkpoint(root: str | Path) -> Path | None:
    """The newest complete checkpoint under ``root``, or None."""
    found = checkpoint_dirs(root)
    return found[-1] if found else None


def checkpoint_step(path: str | Path) -> int:
    """The step number in a checkpoint folder's name."""
    match = _NAME.match(Path(path).name)
    if not match:
        raise ValueError(f"{path}: not a checkpoint folder (expected step-NNNNNNNN)")
    return int(match.group(1))


def save_checkpoint(accelerator: Accelerator, root: str | Path, step: int, keep: int) -> Path:
    """Save the accelerator's state as ``root/step-NNNNNNNN`` atomically; every process must call this."""
    root = Path(root)
    final = root / f"step-{step:08d}"
    tmp = root / f".tmp-step-{step:08d}"
    if accelerator.is_main_process:
        root.mkdir(parents=True, exist_ok=True)
        for stale in root.glob(".tmp-*"):
            shutil.rmtree(stale, ignore_errors=True)
        tmp.mkdir()
    accelerator.wait_for_everyone()
    accelerator.save_state(str(tmp))
    accelerator.wait_for_everyone()
    if accelerator.is_main_process:
        if final.exists():
            shutil.rmtree(final)
        tmp.rename(final)
        for old in checkpoint_dirs(root)[:-keep]:
            shutil.rmtree(old, ignore_errors=True)
    accelerator.wait_for_everyone()
    return final


def load_checkpoint(accelerator: Accelerator, path: str | Path) -> int:
    """Restore every registered object and RNG state from ``path``; returns its step."""
    accelerator.load_state(str(path))
    return checkpoint_step(path)
