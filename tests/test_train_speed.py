"""``benchmarks/train_speed.py``: replaying an allocator trace (``--memory``) finds the peak and who holds it;
``--append`` adds rows to an earlier call's table."""

from __future__ import annotations

import json
import sys

import pytest
from script_modules import load_script

train_speed = load_script("benchmarks/train_speed.py")


def frame(filename: str, line: int, name: str) -> dict:
    return {"filename": filename, "line": line, "name": name}


def test_peak_sites_names_what_is_live_at_the_peak_not_at_the_end():
    torch_frame = frame("/venv/lib/python3.12/site-packages/torch/nn/functional.py", 10, "conv2d")
    cpp = frame("??", 0, "torch::unwind::unwind()")  # a CUDA trace lists C++ frames first
    generated = frame("/tmp/torchinductor_root/q2/cq2krafk.py", 1334, "call")  # a compiled region's own code
    triton = frame("/venv/lib/python3.12/site-packages/triton/runtime/jit.py", 700, "run")
    encoder = [cpp, generated, triton, torch_frame, frame("/site/diffusers/models/autoencoders/vae.py", 170, "forward")]
    lpips = [frame("/site/lpips/pretrained_networks.py", 99, "forward")]
    trace = [
        {"action": "alloc", "addr": 1, "size": 300, "frames": encoder},
        {"action": "alloc", "addr": 2, "size": 500, "frames": lpips},
        {"action": "alloc", "addr": 3, "size": 250, "frames": encoder},   # peak: 1050 live
        {"action": "free_requested", "addr": 2, "size": 500, "frames": lpips},
        {"action": "free_completed", "addr": 2, "size": 500, "frames": lpips},
        {"action": "alloc", "addr": 4, "size": 450, "frames": [torch_frame]},  # 1000 live: no new peak
        {"action": "free_requested", "addr": 99, "size": 7, "frames": []},  # allocated before the trace began
    ]
    peak, sites = train_speed.peak_sites(trace, 5)
    assert peak == 1050
    assert sites == [("vae.py:170 forward", 550), ("pretrained_networks.py:99 forward", 500)]
    assert train_speed.peak_sites(trace, 1)[1] == [("vae.py:170 forward", 550)]
    assert train_speed.peak_sites([{"action": "alloc", "addr": 5, "size": 8, "frames": [torch_frame]}], 3) == \
        (8, [("torch internals", 8)])


def test_appended_rows_keep_their_own_command_and_share_the_eager_flop_count(tmp_path, monkeypatch):
    """``--append``: rows measured by an earlier call keep the command and machine that measured them, and an
    optimised row takes its FLOPs from the eager row of its size, whichever call measured that."""
    def row(name, step_ms, flops=None):
        return {"name": name, "model": "sd", "batch": 16, "step_ms": step_ms, "flops_per_step": flops}

    earlier = row("eager", 500.0, 82.6e12)
    earlier.update(machine="first machine", command="python benchmarks/train_speed.py --rows eager:sd:16", torch="x")
    path = tmp_path / "speed.json"
    monkeypatch.setattr(sys, "argv", ["train_speed.py", "--rows", "optimised:sd:16", "--append"])
    train_speed.save([earlier, row("optimised", 250.0)], path)
    first, second = json.loads(path.read_text())
    assert first["command"].endswith("--rows eager:sd:16") and first["machine"] == "first machine"
    assert second["command"].endswith("--rows optimised:sd:16 --append")
    assert second["flops_per_step"] == 82.6e12
    assert second["mfu"] == pytest.approx(82.6e12 / 0.25 / 1e12 / train_speed.DATASHEET_TFLOPS)
