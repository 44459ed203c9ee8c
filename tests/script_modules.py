"""The repository's scripts (``scripts/``, ``benchmarks/``) as modules, for the tests of their functions.

Scripts are not in the package, so a test loads one from its file; one helper, so that every such test loads it
the same way."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from types import ModuleType

ROOT = Path(__file__).resolve().parents[1]


def load_script(relative: str) -> ModuleType:
    """The script at ``relative`` (to the repository root), run as a module named after its file; registered in
    ``sys.modules``, where dataclasses and pickle look a class's module up."""
    path = ROOT / relative
    spec = importlib.util.spec_from_file_location(path.stem, path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module
