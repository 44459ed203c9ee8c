"""``benchmarks/train_speed.py --memory``: replaying an allocator trace finds the peak and who holds it."""

from __future__ import annotations

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
