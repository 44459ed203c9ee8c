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
    optimised row takes its FLOPs from the eager row of its size and LPIPS network, whichever call measured it."""
    def row(name, step_ms, flops=None, lpips_net="vgg"):
        return {"name": name, "model": "sd", "batch": 16, "image_size": 256, "lpips_net": lpips_net,
                "step_ms": step_ms, "flops_per_step": flops}

    earlier = [row("eager", 500.0, 82.6e12), row("eager", 400.0, 80.0e12, lpips_net="alex")]
    for r in earlier:
        r.update(machine="first machine", host="h boot 1", command="python benchmarks/train_speed.py --rows eager:sd:16")
    path = tmp_path / "speed.json"
    monkeypatch.setattr(sys, "argv", ["train_speed.py", "--rows", "optimised:sd:16", "--append"])
    train_speed.save([*earlier, row("optimised", 250.0), row("optimised", 200.0, lpips_net="alex")], path)
    vgg, alex, new_vgg, new_alex = json.loads(path.read_text())
    assert vgg["command"].endswith("--rows eager:sd:16") and vgg["machine"] == "first machine"
    assert new_vgg["command"].endswith("--rows optimised:sd:16 --append") and new_vgg["host"] == train_speed.host()
    assert (new_vgg["flops_per_step"], new_alex["flops_per_step"]) == (82.6e12, 80.0e12)
    assert new_vgg["mfu"] == pytest.approx(82.6e12 / 0.25 / 1e12 / train_speed.DATASHEET_TFLOPS)


@pytest.mark.parametrize("with_json", [True, False])
def test_append_refuses_another_machines_table_and_needs_a_file(tmp_path, monkeypatch, capsys, with_json):
    """A table is measured on one machine: ``--append`` to rows of another host or boot stops before any row runs
    (exit 2, naming the file); ``--append`` without ``--json`` is an error too."""
    path = tmp_path / "speed.json"
    path.write_text(json.dumps([{"name": "eager", "model": "sd", "batch": 16, "host": "elsewhere boot 7"}]))
    argv = ["train_speed.py", "--rows", "eager:sd:16", "--append"] + (["--json", str(path)] if with_json else [])
    monkeypatch.setattr(sys, "argv", argv)
    with pytest.raises(SystemExit) as stopped:
        train_speed.main()
    assert stopped.value.code == 2
    message = capsys.readouterr().err
    assert (str(path) in message and "another machine" in message) if with_json else "needs --json" in message


def test_a_moved_inductor_cache_hides_only_what_lies_under_it(monkeypatch):
    monkeypatch.setenv("TORCHINDUCTOR_CACHE_DIR", "/tmp/ind")
    assert not train_speed.is_own_frame("/tmp/ind/ab/cabc.py")
    assert train_speed.is_own_frame("/tmp/indigo/step.py") and train_speed.is_own_frame("/tmp/project/vae.py")
    assert not train_speed.is_own_frame("/tmp/torchinductor_root/q2/cq2.py")  # the default folder, still generated
