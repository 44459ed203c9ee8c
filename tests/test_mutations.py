"""scripts/mutation_check.py stays applicable: every deliberate bug's snippet is still in the source exactly
once, and every test it names exists. (Running the mutations takes minutes: ``python scripts/mutation_check.py``;
this only notices, in the normal suite, a refactor that moved the code so the list needs updating.)"""

from __future__ import annotations

import re
import sys
from pathlib import Path

import pytest

from script_modules import load_script

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def mutation_check():
    try:
        yield load_script("scripts/mutation_check.py")
    finally:
        sys.modules.pop("mutation_check", None)


def test_every_snippet_is_in_the_source_exactly_once(mutation_check):
    mutations = mutation_check.MUTATIONS
    assert len(mutations) >= 15 and len({m.name for m in mutations}) == len(mutations)
    problems = mutation_check.check_snippets(ROOT, mutations)
    assert not problems, "update scripts/mutation_check.py: " + "; ".join(f"{k}: {v}" for k, v in problems.items())


def test_every_named_test_exists(mutation_check):
    for m in mutation_check.MUTATIONS:
        assert m.tests, m.name
        for selection in m.tests:
            file, _, name = selection.partition("::")
            path = ROOT / file
            assert path.is_file(), (m.name, selection)
            if name:
                assert re.search(rf"^def {re.escape(name)}\(", path.read_text(), flags=re.M), (m.name, selection)
