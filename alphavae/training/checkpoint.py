"""Checkpoints that survive a kill at any moment and never execute code when they are loaded.

One format for every trainer (the RGBA trainer, RGB pretraining, the generator): a folder
``step-NNNNNNNN/`` holding

- ``shared.safetensors`` + ``shared.json``: what every process has in common (weights, optimisers,
  schedulers, EMA, the step), written by process 0;
- ``local-<rank>.safetensors`` + ``local-<rank>.json``: what differs per process (its RNG states).

Tensors go to safetensors (a header and raw bytes: nothing to execute), the rest of each state (numbers,
strings, the nesting) to JSON with a reference per tensor. Loading reads only these files and refuses a
folder holding anything else — a planted ``*.pkl`` or ``*.pt`` is named and refused, never opened — so a run
folder that came from someone else cannot run code on ``--resume`` (a pickle can).

The folder is written under ``.tmp-step-NNNNNNNN`` and renamed when complete, so a folder with the final
name is always whole; a half-written one left by a kill is removed by the next save. Only the newest
``keep`` checkpoints are kept.
"""

from __future__ import annotations

import json
import random
import re
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save

_NAME = re.compile(r"^step-(\d{8})$")
_FILE = re.compile(r"^(shared|local-\d+)\.(safetensors|json)$")
_TENSOR = "__tensor__"
_TUPLE = "__tuple__"


class CheckpointError(ValueError):
    """A checkpoint folder that cannot be used; the one-line message names the folder or file."""


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
        raise CheckpointError(f"{path}: not a checkpoint folder (expected step-NNNNNNNN)")
    return int(match.group(1))


def _flatten(value: Any, key: str, tensors: dict[str, torch.Tensor]) -> Any:
    """JSON-able structure of ``value`` with every tensor moved into ``tensors`` under its path ``key``."""
    if isinstance(value, torch.Tensor):
        tensors[key] = value.detach().to("cpu").clone().contiguous()
        return {_TENSOR: key}
    if isinstance(value, dict):
        if not all(isinstance(k, (str, int)) for k in value):
            raise TypeError(f"{key}: checkpoint dict keys must be str or int")
        return {"__dict__": [[k, _flatten(v, f"{key}.{k}", tensors)] for k, v in value.items()]}
    if isinstance(value, (list, tuple)):
        items = [_flatten(v, f"{key}.{i}", tensors) for i, v in enumerate(value)]
        return {_TUPLE: items} if isinstance(value, tuple) else items
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    raise TypeError(f"{key}: a checkpoint holds tensors, numbers, strings, lists and dicts, not {type(value).__name__}")


def _unflatten(value: Any, tensors: dict[str, torch.Tensor], where: Path) -> Any:
    if isinstance(value, list):
        return [_unflatten(v, tensors, where) for v in value]
    if isinstance(value, dict):
        if set(value) == {_TENSOR}:
            if value[_TENSOR] not in tensors:
                raise CheckpointError(f"{where}: tensor {value[_TENSOR]!r} is missing from its safetensors file")
            return tensors[value[_TENSOR]]
        if set(value) == {_TUPLE}:
            return tuple(_unflatten(v, tensors, where) for v in value[_TUPLE])
        if set(value) == {"__dict__"}:
            return {k: _unflatten(v, tensors, where) for k, v in value["__dict__"]}
        raise CheckpointError(f"{where}: unexpected object {sorted(value)[:3]} in the checkpoint's JSON")
    return value


def _write_part(folder: Path, name: str, state: dict[str, Any]) -> None:
    tensors: dict[str, torch.Tensor] = {}
    structure = _flatten(state, name, tensors)
    (folder / f"{name}.safetensors").write_bytes(save(tensors))  # umask mode (save_file makes it owner-only)
    (folder / f"{name}.json").write_text(json.dumps(structure))


def _read_part(folder: Path, name: str) -> dict[str, Any]:
    weights, structure = folder / f"{name}.safetensors", folder / f"{name}.json"
    for path in (weights, structure):
        if not path.is_file():
            raise CheckpointError(f"{path}: missing; the checkpoint is incomplete")
    try:
        tensors = load_file(str(weights))
    except (SafetensorError, OSError, ValueError) as exc:
        raise CheckpointError(f"{weights}: not a readable safetensors file ({str(exc).splitlines()[0][:120]})") from exc
    try:
        raw = json.loads(structure.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise CheckpointError(f"{structure}: not valid JSON ({exc})") from exc
    return _unflatten(raw, tensors, structure)


def _check_files(path: Path) -> None:
    """Refuse a folder holding anything but this format's files (a planted pickle is never opened)."""
    if not path.is_dir():
        raise CheckpointError(f"{path}: no such checkpoint folder")
    for item in sorted(path.iterdir()):
        if not _FILE.match(item.name) or not item.is_file():
            raise CheckpointError(f"{item}: not part of an alphavae checkpoint (only shared/local-N .safetensors and "
                                  ".json files are loaded); refusing to resume from {path.name}")


def save_checkpoint(root: str | Path, step: int, shared: Callable[[], dict[str, Any]], local: dict[str, Any],
                    keep: int, rank: int = 0, barrier: Callable[[], None] = lambda: None) -> Path:
    """Write ``root/step-NNNNNNNN`` atomically; every process calls this with its ``rank`` and ``local`` state.

    ``shared`` is called on process 0 only (building a state dict can be costly); ``barrier`` synchronises the
    processes (``accelerator.wait_for_everyone`` on several).
    """
    root = Path(root)
    final, tmp = root / f"step-{step:08d}", root / f".tmp-step-{step:08d}"
    if rank == 0:
        root.mkdir(parents=True, exist_ok=True)
        for stale in root.glob(".tmp-*"):
            shutil.rmtree(stale, ignore_errors=True)
        tmp.mkdir()
    barrier()
    if rank == 0:
        _write_part(tmp, "shared", shared())
    _write_part(tmp, f"local-{rank}", local)
    barrier()
    if rank == 0:
        if final.exists():
            shutil.rmtree(final)
        tmp.rename(final)
        for old in checkpoint_dirs(root)[:-keep]:
            shutil.rmtree(old, ignore_errors=True)
    barrier()
    return final


def load_checkpoint(path: str | Path, rank: int = 0) -> tuple[dict[str, Any], dict[str, Any]]:
    """``(shared, local)`` states of the checkpoint at ``path`` for process ``rank``, tensors on the CPU."""
    path = Path(path)
    checkpoint_step(path)
    _check_files(path)
    return _read_part(path, "shared"), _read_part(path, f"local-{rank}")


def rng_state(generators: dict[str, torch.Generator] | None = None) -> dict[str, Any]:
    """This process's random states: Python's, torch's CPU and CUDA generators, and any named ``generators``."""
    version, internal, gauss = random.getstate()
    state: dict[str, Any] = {"python": [version, list(internal), gauss], "torch": torch.get_rng_state(),
                             "generators": {k: g.get_state() for k, g in (generators or {}).items()}}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict[str, Any], generators: dict[str, torch.Generator] | None = None) -> None:
    """Restore what :func:`rng_state` saved (CUDA states only where CUDA is available)."""
    version, internal, gauss = state["python"]
    random.setstate((version, tuple(internal), gauss))
    torch.set_rng_state(state["torch"])
    if torch.cuda.is_available() and state.get("cuda"):
        torch.cuda.set_rng_state_all(state["cuda"])
    for name, generator in (generators or {}).items():
        generator.set_state(state["generators"][name])
