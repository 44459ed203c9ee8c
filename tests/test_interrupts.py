"""An interrupted ``alphavae reconstruct`` leaves only complete files: a real process, really interrupted mid-write.

:func:`alphavae.imageio.atomic_write` promises that an interrupted run leaves no half-written file: each PNG is
written to a hidden ``.<name>.<12 hex>.tmp`` beside its final name and renamed when complete. Here the command
runs as a program (what a user interrupts is the process, so the subprocess is what is tested) on many noise
images, one per batch; once it has written at least one file, it is frozen (SIGSTOP) at a moment when it holds a
file in the output folder open with part of a PNG in it — in the middle of writing it — and then

* **SIGINT** (Ctrl-C): it exits 130 with one line, and the file it was writing is nowhere: no output of that
  name, no temporary file (``atomic_write`` removes it on the way out);
* **SIGKILL**: nothing can clean up; the half-written file is left under its temporary name, which no reader of
  folders lists (:func:`alphavae.imageio.list_images`, shared by every command), and a rerun writes every output.

In both cases every file the folder lists is byte for byte the one an uninterrupted run writes. A
``reconstruct_folder`` that wrote straight to the final name would leave a truncated PNG there, which the
SIGKILL test reads as a listed output and fails on.
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from diffusers import AutoencoderKL
from PIL import Image

from alphavae.cli import main
from alphavae.imageio import list_images, load_rgba

pytestmark = [pytest.mark.usefixtures("one_thread"),
              pytest.mark.skipif(not Path("/proc/self/fd").is_dir(), reason="needs Linux's /proc/<pid>/fd")]

ROOT = Path(__file__).resolve().parents[1]
ENV = {**os.environ, "HF_HUB_OFFLINE": "1", "TQDM_DISABLE": "1", "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"}
#: Many images, each its own batch, so the run is still writing long after its first file.
N_IMAGES, SIDE = 24, 128
#: What atomic_write names a file while it is being written.
TEMP_NAME = re.compile(r"^\.(?P<final>.+\.png)\.[0-9a-f]{12}\.tmp$")


@pytest.fixture(scope="module")
def folders(tmp_path_factory, one_thread) -> dict[str, Path]:
    """A tiny 4-channel VAE (no attention, so 128-px images are quick), noise inputs (incompressible, so each PNG
    takes a while to encode), and the uninterrupted run's output."""
    root = tmp_path_factory.mktemp("interrupts")
    torch.manual_seed(0)
    AutoencoderKL(in_channels=4, out_channels=4, block_out_channels=(4,), layers_per_block=1, latent_channels=4,
                  norm_num_groups=4, down_block_types=("DownEncoderBlock2D",), up_block_types=("UpDecoderBlock2D",),
                  mid_block_add_attention=False).save_pretrained(root / "vae")
    rng = np.random.default_rng(0)
    (root / "in").mkdir()
    for i in range(N_IMAGES):
        Image.fromarray(rng.integers(0, 256, (SIDE, SIDE, 4), dtype=np.uint8), "RGBA").save(
            root / "in" / f"noise{i:02d}.png", compress_level=1)
    assert main(args(root, root / "reference")) == 0
    assert len(list_images(root / "reference")) == N_IMAGES
    return {"root": root, "reference": root / "reference"}


def args(root: Path, out: Path) -> list[str]:
    return ["reconstruct", "--vae", str(root / "vae"), "--input", str(root / "in"), "--output", str(out),
            "--batch-size", "1", "--device", "cpu"]


def open_files_under(pid: int, folder: Path) -> list[Path]:
    """Files under ``folder`` that process ``pid`` has open (Linux: its ``/proc/<pid>/fd`` links)."""
    fds, prefix, found = Path(f"/proc/{pid}/fd"), f"{folder.resolve()}{os.sep}", []
    try:
        names = os.listdir(fds)
    except OSError:
        return []
    for name in names:
        try:
            target = os.readlink(fds / name)
        except OSError:
            continue
        if target.startswith(prefix):
            found.append(Path(target))
    return found


def is_partial_png(path: Path) -> bool:
    """Some bytes of a PNG written, not yet its last chunk (``IEND``): the file is really half-written."""
    data = path.read_bytes()
    return bool(data) and not data.endswith(b"IEND\xaeB`\x82")


def freeze_while_writing(proc: subprocess.Popen, out: Path) -> Path | None:
    """Stop ``proc`` (SIGSTOP) at a moment when it has written at least one file into ``out`` and holds another
    open there, half-written (:func:`is_partial_png`); return that file, or None if the run ended first. A write
    that had not started or had finished by the time the stop took effect is let go and the next one tried, so the
    moment is always mid-write."""
    out, deadline = out.resolve(), time.monotonic() + 180
    while proc.poll() is None and time.monotonic() < deadline:
        writing = open_files_under(proc.pid, out)
        done = [n for n in os.listdir(out) if not n.startswith(".")] if writing else []
        if writing and [n for n in done if out / n not in writing]:
            os.kill(proc.pid, signal.SIGSTOP)
            os.waitpid(proc.pid, os.WUNTRACED)  # returns once it is really stopped
            writing = open_files_under(proc.pid, out)
            if len(writing) == 1 and is_partial_png(writing[0]):
                return writing[0]
            os.kill(proc.pid, signal.SIGCONT)
        time.sleep(0.0005)
    proc.kill()
    proc.wait()
    return None


#: Runs started before giving up on catching one mid-write: each write lasts milliseconds between reconstructions,
#: so a run can end before the watcher lands in one (on a 2-core CPU, 2 of 27 single runs did).
TRIES = 4


def start_frozen_mid_write(folders: dict[str, Path], out: Path) -> tuple[subprocess.Popen, Path]:
    """A reconstruct run into a new ``out``, frozen mid-write (:func:`freeze_while_writing`); a run that ends before
    it is caught is discarded (its folder with it) and started again, up to :data:`TRIES` times."""
    for _ in range(TRIES):
        shutil.rmtree(out, ignore_errors=True)
        proc = start(folders, out)
        writing = freeze_while_writing(proc, out)
        if writing is not None:
            return proc, writing
    raise AssertionError(f"never caught writing in {TRIES} runs: each must still be going after its first file")


def default_sigint() -> None:
    """In the child before exec: SIGINT back to its default, so Python turns it into KeyboardInterrupt. A shell
    starts background jobs (``cmd &``, ``nohup cmd &``) with SIGINT ignored, the child would inherit that, and Python
    leaves an inherited "ignore" alone: the interrupt under test would never arrive (seen: exit 0 instead of 130)."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def start(folders: dict[str, Path], out: Path) -> subprocess.Popen:
    out.mkdir()  # exists from the start, so that its files can be watched
    return subprocess.Popen([sys.executable, "-m", "alphavae", *args(folders["root"], out)], env=ENV,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, preexec_fn=default_sigint)


def assert_outputs_are_the_full_runs(out: Path, reference: Path) -> list[str]:
    """Every image ``out`` lists decodes and is byte for byte the uninterrupted run's; returns their names."""
    names = [p.name for p in list_images(out)]
    for name in names:
        assert load_rgba(out / name).shape == (4, SIDE, SIDE)
        assert (out / name).read_bytes() == (reference / name).read_bytes(), f"{name} differs from the full run's"
    return names


def test_sigint_mid_write_leaves_complete_files_and_no_temporary(folders, tmp_path):
    out = tmp_path / "out"
    proc, writing = start_frozen_mid_write(folders, out)
    os.kill(proc.pid, signal.SIGINT)
    os.kill(proc.pid, signal.SIGCONT)
    stdout, stderr = proc.communicate(timeout=60)
    assert proc.returncode == 130, stderr
    assert stderr.strip().splitlines() == ["alphavae reconstruct: interrupted"] and not stdout, (stdout, stderr)

    final = TEMP_NAME.match(writing.name)
    assert final, f"{writing.name}: written under its final name, not atomic_write's temporary one"
    names = assert_outputs_are_the_full_runs(out, folders["reference"])
    assert 1 <= len(names) < N_IMAGES and final["final"] not in names  # mid-way; the interrupted file is not there
    assert sorted(os.listdir(out)) == names  # and no temporary file is left


def test_sigkill_mid_write_leaves_complete_files_and_a_hidden_temporary_a_rerun_ignores(folders, tmp_path):
    out = tmp_path / "out"
    proc, writing = start_frozen_mid_write(folders, out)
    proc.kill()
    proc.communicate(timeout=60)
    assert proc.returncode == -signal.SIGKILL

    names = assert_outputs_are_the_full_runs(out, folders["reference"])
    assert 1 <= len(names) < N_IMAGES
    leftovers = sorted(set(os.listdir(out)) - set(names))
    assert leftovers == [writing.name] and TEMP_NAME.match(writing.name), leftovers
    assert TEMP_NAME.match(writing.name)["final"] not in names

    assert main(args(folders["root"], out)) == 0  # a rerun writes every output, the same as the full run,
    assert assert_outputs_are_the_full_runs(out, folders["reference"]) == [p.name for p in list_images(folders["reference"])]
    assert writing.name not in {p.name for p in list_images(out)}  # and the leftover is still not read as an image
