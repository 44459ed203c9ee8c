"""Fixtures shared by the unit tests (the session settings are in the root ``conftest.py``)."""

from __future__ import annotations

import sys
from collections.abc import Callable

import numpy as np
import pytest
import torch


@pytest.fixture(autouse=True)
def fresh_accelerator_state():
    """Accelerate keeps one state per process and refuses an Accelerator with other settings than the first one's
    (on a GPU machine the CPU tests' fp32 and the GPU tests' bf16 met in one pytest process): reset it after a test."""
    yield
    if "accelerate.state" in sys.modules:
        sys.modules["accelerate.state"].AcceleratorState._reset_state(reset_partial_state=True)


@pytest.fixture(scope="module")
def one_thread():
    """One intra-op thread: the training tests' models are tiny, and on a busy 2-core CI machine extra threads
    only spin (and make timing-sensitive kill/resume runs slower). Use with ``pytestmark``."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def _disc_with_hidden_red(h: int, w: int) -> np.ndarray:
    """An ``(h, w, 4)`` uint8 RGBA image: a soft blue disc whose α = 0 pixels are bright red (a colour that must not
    survive any processing: it is invisible)."""
    yy, xx = np.mgrid[:h, :w]
    r = np.hypot((yy - h / 2) / (h / 2), (xx - w / 2) / (w / 2))
    alpha = np.clip((0.8 - r) * 5, 0, 1)
    arr = np.zeros((h, w, 4), np.uint8)
    arr[..., 0] = np.where(alpha > 0, 0, 255)
    arr[..., 2] = 255
    arr[..., 3] = np.round(alpha * 255)
    return arr


@pytest.fixture
def hidden_red_disc():
    """:func:`_disc_with_hidden_red`, for tests that build image files."""
    return _disc_with_hidden_red


@pytest.fixture(scope="session")
def shipped_generator_samples() -> Callable[[], torch.Tensor]:
    """Four samples of the committed ``embedded-generator`` at its defaults (256 px, 25 steps, guidance 2, seed 0),
    through :func:`alphavae.generation.sampler.generate`: made once for the tests that judge their alpha (about
    5 s on a CPU). Call it for a fresh copy, so that no test can change what another one sees."""
    from alphavae.generation.sampler import generate

    samples = generate("embedded-generator", n=4, seed=0, device="cpu")
    return lambda: samples.clone()
