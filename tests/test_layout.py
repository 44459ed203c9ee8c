"""The package's shape: grouped by the paper's parts, plotting and widgets only in ``notebook/``, no core module
importing ``notebook/`` or ``cli/``, no import cycles — checked by walking every module's imports (AST)."""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "alphavae"
SUBPACKAGES = ("metric", "vae", "losses", "training", "generation", "notebook", "cli")
GUI = ("matplotlib", "ipywidgets", "IPython")


def module_name(path: Path) -> str:
    parts = path.relative_to(ROOT).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imports_of(path: Path) -> set[str]:
    """Every module ``path`` imports, at any depth of its code (lazy imports inside functions count too)."""
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.add(node.module)
            found |= {f"{node.module}.{alias.name}" for alias in node.names}
    return found


MODULES = {module_name(p): imports_of(p) for p in sorted(PACKAGE.rglob("*.py"))}


def test_at_most_six_files_at_the_top_and_the_parts_of_the_paper_below():
    top = sorted(p.name for p in PACKAGE.glob("*.py"))
    assert len(top) <= 6, top
    for name in SUBPACKAGES:
        assert (PACKAGE / name / "__init__.py").is_file(), name


def test_only_notebook_imports_matplotlib_or_ipywidgets():
    offenders = {m: sorted(i for i in deps if i.split(".")[0] in GUI) for m, deps in MODULES.items()
                 if not m.startswith("alphavae.notebook")}
    assert not {m: d for m, d in offenders.items() if d}


def test_no_core_module_imports_notebook_or_cli():
    core = {m: deps for m, deps in MODULES.items() if not m.startswith(("alphavae.notebook", "alphavae.cli"))
            and m != "alphavae.__main__"}
    bad = {m: sorted(d for d in deps if d.startswith(("alphavae.notebook", "alphavae.cli"))) for m, deps in core.items()}
    assert not {m: d for m, d in bad.items() if d}


def test_no_import_cycles_between_modules():
    internal = {m: {d for d in deps if d in MODULES and d != m} for m, deps in MODULES.items()}
    state: dict[str, int] = {}

    def visit(m: str, path: list[str]) -> None:
        state[m] = 1
        for d in internal[m]:
            if d.endswith("__init__") or MODULES.get(d) is None:
                continue
            if state.get(d) == 1 and not m.startswith(d + ".") and not d.startswith(m + "."):
                raise AssertionError(" -> ".join(path + [m, d]))
            if d not in state:
                visit(d, path + [m])
        state[m] = 2

    for m in internal:
        if m not in state:
            visit(m, [])
