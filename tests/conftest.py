"""Fixtures shared by the unit tests (the session settings are in the root ``conftest.py``)."""

from __future__ import annotations

import pytest
import torch


@pytest.fixture(scope="module")
def one_thread():
    """One intra-op thread: the training tests' models are tiny, and on a busy 2-core CI machine extra threads
    only spin (and make timing-sensitive kill/resume runs slower). Use with ``pytestmark``."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)
