"""Test-session settings shared by the unit tests and the notebooks run under nbval (style.md §3).

The environment set here is inherited by the notebook kernels (``--nbval-current-env``): fast mode, no hub
access, no tqdm bars. ``MPLBACKEND=Agg`` is dropped because it would hide the figures the stored notebooks
compare against (notebooks use ``%matplotlib inline``; plain tests fall back to Agg on a headless machine).
"""

from __future__ import annotations

import os

os.environ.setdefault("ALPHAVAE_MODE", "fast")
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("TQDM_DISABLE", "1")
if os.environ.get("MPLBACKEND", "").lower() == "agg":
    del os.environ["MPLBACKEND"]

#: Output kinds never compared between the stored and the fresh run: warnings and progress on stderr,
#: and rich HTML/JS reprs whose ids change every run.
_NOT_COMPARED = ("stderr", "text/html", "application/javascript")


def pytest_collectstart(collector):
    """Tell nbval's notebook collector to skip comparing :data:`_NOT_COMPARED` outputs."""
    if collector.path is not None and collector.path.suffix == ".ipynb" and hasattr(collector, "skip_compare"):
        collector.skip_compare = tuple(collector.skip_compare) + _NOT_COMPARED
