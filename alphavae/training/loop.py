"""The one training-loop skeleton of the three trainers (the RGBA VAE, RGB pretraining, the generator).

Each trainer builds its networks and gives :func:`run_steps` a function that takes one optimisation step;
the skeleton owns what they share: the step range after a resume, logging every ``log_every`` steps (to
``log.jsonl``, one JSON object per line), a checkpoint every ``checkpoint_every`` steps, a stop after
``max_minutes`` or at ``stop_after`` (with a checkpoint, so ``--resume`` continues exactly), tqdm progress,
and a lock so that two trainings never write into one output folder at once.
"""

from __future__ import annotations

import json
import os
import time
import warnings
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from tqdm.auto import tqdm

LOCK_NAME = ".lock"


class RunLocked(RuntimeError):
    """Another process is training into the same output folder; the message names the folder and its pid."""


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


@contextmanager
def run_lock(output: Path) -> Iterator[None]:
    """Hold ``output/.lock`` (this process's pid) for the duration; a live holder is a :class:`RunLocked`.

    A lock left by a killed run (its pid is gone) is taken over, so a resume after a kill just works.
    """
    output.mkdir(parents=True, exist_ok=True)
    path = output / LOCK_NAME
    for _ in range(2):
        try:
            fd = os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
            break
        except FileExistsError:
            try:
                pid = int(path.read_text().strip() or 0)
            except (OSError, ValueError):
                pid = 0
            if pid and pid != os.getpid() and _alive(pid):
                raise RunLocked(f"{output}: another training (pid {pid}) is writing into this folder; "
                                "wait for it to finish or choose another --output") from None
            path.unlink(missing_ok=True)
    else:
        raise RunLocked(f"{output}: could not take the lock file {path}")
    with os.fdopen(fd, "w") as fh:
        fh.write(str(os.getpid()))
    try:
        yield
    finally:
        path.unlink(missing_ok=True)


class RunLog:
    """``log.jsonl`` of a run. On resume, lines logged after the resumed step are dropped (they will be logged
    again), and so is a final line cut short by a kill, with a warning naming the file."""

    def __init__(self, path: Path, resume_step: int | None = None, write: bool = True):
        self.path, self.write_enabled = path, write
        if write and resume_step is not None and path.exists():
            kept = []
            lines = path.read_text().splitlines()
            for number, line in enumerate(lines, start=1):
                if not line.strip():
                    continue
                try:
                    entry = json.loads(line)
                except json.JSONDecodeError:
                    warnings.warn(f"{path}: line {number} is cut short (a killed run); dropped", stacklevel=2)
                    continue
                if entry.get("step", 0) <= resume_step:
                    kept.append(line)
            path.write_text("".join(line + "\n" for line in kept))
        elif write and resume_step is None:
            path.unlink(missing_ok=True)

    def write(self, entry: dict) -> None:
        """Append one entry (process 0 only writes; the others hold a RunLog with ``write=False``)."""
        if self.write_enabled:
            with self.path.open("a") as fh:
                fh.write(json.dumps(entry) + "\n")


def read_log(path: str | Path) -> list[dict]:
    """The entries of a ``log.jsonl`` (or of the one in a run folder), oldest first."""
    path = Path(path)
    if path.is_dir():
        path = path / "log.jsonl"
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


@dataclass
class LoopPlan:
    """How long to run and how often to log and checkpoint."""

    steps: int
    log_every: int
    checkpoint_every: int
    max_minutes: float | None = None  # stop (with a checkpoint) after this long
    stop_after: int | None = None  # stop (with a checkpoint) after this many steps in all


def quiet_progress() -> bool:
    """Whether progress bars are off (``TQDM_DISABLE`` set, as CI and the notebook tests do)."""
    return os.environ.get("TQDM_DISABLE", "") not in ("", "0")


def run_steps(plan: LoopPlan, start: int, step: Callable[[int], dict[str, float] | None],
              log: Callable[[int, dict[str, float]], str | None], checkpoint: Callable[[int], None],
              desc: str, show_progress: bool = True) -> int:
    """Take steps ``start, start + 1, …`` until ``plan.steps`` (or a stop); returns the steps done in all.

    ``step(s)`` takes optimisation step ``s`` and returns its logs (or None where it logs nothing);
    ``log(done, logs)`` is called after every ``log_every``-th step and after the last, and may return a short
    progress text; ``checkpoint(done)`` after every ``checkpoint_every``-th step and before a stop ahead of
    ``plan.steps``. A run that ends at ``plan.steps`` leaves the final save to the trainer.
    """
    end = plan.steps if plan.stop_after is None else min(plan.steps, plan.stop_after)
    began = time.monotonic()
    done = start
    with tqdm(total=plan.steps, initial=start, desc=desc, dynamic_ncols=True,
              disable=not show_progress or quiet_progress()) as bar:
        while done < end:
            logs = step(done)
            done += 1
            bar.update(1)
            if logs is not None and (done % plan.log_every == 0 or done == end):
                text = log(done, logs)
                if text:
                    bar.set_postfix_str(text)
            out_of_time = plan.max_minutes is not None and time.monotonic() - began >= 60 * plan.max_minutes
            if done < plan.steps and (done % plan.checkpoint_every == 0 or done == end or out_of_time):
                checkpoint(done)
            if out_of_time:
                break
    return done
