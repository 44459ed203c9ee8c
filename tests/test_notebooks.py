"""Notebook hygiene (style.md §3–§5): every notebook really ran, is listed, is small, and is set up for nbval.

The notebooks themselves are executed by nbval (``python -m pytest`` collects ``notebooks/``); this file checks
what nbval cannot: that the stored notebook is the executed one, that nothing stored would make the check
vacuous (no outputs) or heavy (widget state, big images), and that a reader finds it from the README and Colab.
"""

from __future__ import annotations

import base64
import re
import struct
import subprocess
import sys
from pathlib import Path

import nbformat
import pytest

from script_modules import load_script

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOK_DIR = ROOT / "notebooks"
NOTEBOOKS = sorted(NOTEBOOK_DIR.glob("*.ipynb"))
MAX_BYTES = 1_500_000
MAX_IMAGE_BYTES = 400_000
COLAB = "https://colab.research.google.com/github/alphavae-teaching/alphavae/blob/main/"
NAME = re.compile(r"^\d{2}_[a-z0-9]+(_[a-z0-9]+)*\.ipynb$")


def test_the_five_notebooks_are_there():
    """Without this, an empty notebooks/ folder would make every parametrized check below vanish silently."""
    assert [p.name[:2] for p in NOTEBOOKS] == ["01", "02", "03", "04", "05"], [p.name for p in NOTEBOOKS]


def _read(path: Path) -> nbformat.NotebookNode:
    return nbformat.read(path, as_version=4)


def _code_cells(nb) -> list:
    return [c for c in nb.cells if c.cell_type == "code"]


def _ids(paths):
    return [p.name for p in paths]


@pytest.mark.parametrize("path", NOTEBOOKS, ids=_ids(NOTEBOOKS))
def test_numbered_name(path):
    assert NAME.match(path.name), f"{path.name}: name notebooks NN_words_in_snake_case.ipynb"


def test_numbers_are_unique():
    numbers = [p.name[:2] for p in NOTEBOOKS]
    assert len(numbers) == len(set(numbers)), f"two notebooks share a number: {numbers}"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=_ids(NOTEBOOKS))
def test_listed_in_readme(path):
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    assert f"notebooks/{path.name}" in readme, f"{path.name} is not listed in README.md's notebook table"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=_ids(NOTEBOOKS))
def test_size_budget(path):
    size = path.stat().st_size
    assert size < MAX_BYTES, f"{path.name} is {size / 1e6:.2f} MB; keep it under {MAX_BYTES / 1e6} MB (smaller figures)"
    for i, cell in enumerate(_code_cells(_read(path))):
        for out in cell.get("outputs", []):
            for mime, data in out.get("data", {}).items():
                if mime.startswith("image/"):
                    n = len(data) if isinstance(data, str) else sum(map(len, data))
                    assert n < MAX_IMAGE_BYTES, f"{path.name}, code cell {i}: a {n // 1000} kB image; make it smaller"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=_ids(NOTEBOOKS))
def test_no_saved_widget_state(path):
    nb = _read(path)
    assert "widgets" not in nb.metadata, f"{path.name}: saved widget state in metadata; clear it before committing"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=_ids(NOTEBOOKS))
def test_every_skip_has_a_reason(path):
    for i, cell in enumerate(_code_cells(_read(path))):
        tags = cell.metadata.get("tags", [])
        assert "nbval-skip" not in tags, f"{path.name}, code cell {i}: use a '# NBVAL_SKIP: reason' comment, not a tag"
        for line in cell.source.splitlines():
            if "NBVAL_SKIP" in line:
                reason = line.split("NBVAL_SKIP", 1)[1].strip(" :-—\t")
                assert len(reason) >= 5, f"{path.name}, code cell {i}: '# NBVAL_SKIP' needs a reason after it"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=_ids(NOTEBOOKS))
def test_has_a_parameters_cell(path):
    cells = [c for c in _code_cells(_read(path)) if "parameters" in c.metadata.get("tags", [])]
    assert len(cells) == 1, f"{path.name}: needs exactly one code cell tagged 'parameters' (has {len(cells)})"
    assert "current_preset()" in cells[0].source, f"{path.name}: the parameters cell should read current_preset()"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=_ids(NOTEBOOKS))
def test_stored_executed_in_order_with_outputs(path):
    cells = _code_cells(_read(path))
    counts = [c.execution_count for c in cells]
    assert None not in counts, f"{path.name}: code cells {[i for i, n in enumerate(counts) if n is None]} were not run"
    assert counts == sorted(counts) and len(set(counts)) == len(counts), f"{path.name}: not run top to bottom"
    with_outputs = sum(bool(c.outputs) for c in cells)
    assert with_outputs >= max(1, len(cells) // 3), f"{path.name}: outputs were stripped; store it executed"
    for i, cell in enumerate(cells):
        errors = [o for o in cell.outputs if o.output_type == "error"]
        assert not errors, f"{path.name}, code cell {i}: stored an error ({errors[0].get('ename')})"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=_ids(NOTEBOOKS))
def test_colab_badge_points_to_itself(path):
    nb = _read(path)
    first = nb.cells[0]
    own = f"{COLAB}notebooks/{path.name}"
    assert first.cell_type == "markdown" and own in first.source, f"{path.name}: first cell needs a Colab badge to {own}"
    for cell in nb.cells:
        for link in re.findall(r"https://colab\.research\.google\.com/github/[^\s)\"']+", cell.source):
            assert link == own, f"{path.name}: Colab link {link} does not point to this notebook"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=_ids(NOTEBOOKS))
def test_headless_friendly(path):
    cells = _code_cells(_read(path))
    source = "\n".join(c.source for c in cells)
    if "matplotlib" in source or "plotting" in source:
        assert "%matplotlib inline" in source, f"{path.name}: use %matplotlib inline (MPLBACKEND=Agg hides figures)"
    assert "sys.path.append" not in source and "sys.path.insert" not in source, f"{path.name}: import the package"
    installs = [c for c in cells if re.search(r"^\s*[!%]pip install", c.source, re.M)]
    for cell in installs:
        assert "google.colab" in cell.source, f"{path.name}: pip install only inside an 'if \"google.colab\" in sys.modules' cell"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=_ids(NOTEBOOKS))
def test_widget_cells_ignore_output(path):
    for i, cell in enumerate(_code_cells(_read(path))):
        if re.search(r"\w+_widget\(|\binteract(ive)?\(", cell.source):
            assert "NBVAL_IGNORE_OUTPUT" in cell.source or "NBVAL_SKIP" in cell.source, (
                f"{path.name}, code cell {i}: a widget cell needs '# NBVAL_IGNORE_OUTPUT'")


def test_sanitize_file_patterns():
    """Every pattern in tests/nbval_sanitize.cfg compiles and does its job on typical output."""
    from nbval.plugin import get_sanitize_patterns

    patterns = get_sanitize_patterns((ROOT / "tests" / "nbval_sanitize.cfg").read_text())
    assert len(patterns) >= 5

    def clean(text: str) -> str:
        for regex, replace in patterns:
            text = re.sub(regex, replace, text)
        return text

    assert clean("<Figure at 0x7f3a2b1c9d90>") == "<Figure at 0xADDRESS>"
    assert clean("took 3.21 s, then 120ms") == "took DURATION, then DURATION"
    assert clean("/home/u/alphavae/data/rgba-sample/a.png") == "REPO/data/rgba-sample/a.png"
    assert clean("wrote /tmp/tmpab12/x.json") == "wrote TMPPATH"
    assert clean(" 40%|████      | 4/10 [00:01<00:02]") == " PROGRESS"
    assert clean("ran at 12.5 images/s") == "ran at RATE"
    assert clean("PSNR 43.70 dB, SSIM 0.9812") == "PSNR 43.70 dB, SSIM 0.9812"  # numbers we check stay


def test_stored_notebooks_are_clean_for_nbstripout():
    """Run metadata (timestamps, widget state) stays out of git; outputs and counts stay (style.md §4).

    ``python scripts/execute_notebooks.py`` re-runs the notebooks and cleans them this way.
    """
    runner = load_script("scripts/execute_notebooks.py")
    flags = runner.NBSTRIPOUT_FLAGS  # the settings the runner cleans with, not a copy of them
    done = subprocess.run([sys.executable, "-m", "nbstripout", "--verify", *flags, *map(str, NOTEBOOKS)],
                          capture_output=True, text=True)
    assert done.returncode == 0, f"run `python scripts/execute_notebooks.py` or `nbstripout {' '.join(flags)}`: {done.stdout}{done.stderr}"


#: What an exercise is made of, in this order (issue 17): the task, the cell the student edits (runs as given),
#: the reference solution (collapsed; CI runs it, so every check is proven), and the check that asserts.
EXERCISE_CELLS = ("exercise", "exercise-code", "solution", "check")
MIN_EXERCISES = 3
MIN_IMAGE_WIDTH = 500  # pixels: legible on a projector
MIN_DPI = 110


def _tags(cell) -> list[str]:
    return cell.metadata.get("tags", [])


@pytest.mark.parametrize("path", NOTEBOOKS, ids=_ids(NOTEBOOKS))
def test_exercises_have_code_solution_and_check(path):
    cells = _read(path).cells
    starts = [i for i, c in enumerate(cells) if "exercise" in _tags(c)]
    assert len(starts) >= MIN_EXERCISES, f"{path.name}: {len(starts)} exercises; give it at least {MIN_EXERCISES}"
    for number, i in enumerate(starts, 1):
        block = cells[i:i + len(EXERCISE_CELLS)]
        assert [next((t for t in _tags(c) if t in EXERCISE_CELLS), None) for c in block] == list(EXERCISE_CELLS), (
            f"{path.name}, cell {i}: an 'exercise' cell must be followed by 'exercise-code', 'solution', 'check' cells")
        task, code, solution, check = block
        assert task.cell_type == "markdown" and all(c.cell_type == "code" for c in (code, solution, check)), path.name
        assert f"**Exercise {number} ·" in task.source, f"{path.name}, cell {i}: number the exercises in order"
        assert code.source.strip() and code.source != solution.source, f"{path.name}, cell {i + 1}: the student's cell"
        assert solution.metadata.get("jupyter", {}).get("source_hidden") is True, (
            f"{path.name}, cell {i + 2}: collapse the solution (metadata.jupyter.source_hidden = true)")
        assert re.search(r"^\s*assert\b", check.source, re.M), f"{path.name}, cell {i + 3}: a check asserts"
        assert not any(o.output_type == "error" for o in check.outputs), f"{path.name}, cell {i + 3}: the check failed"


def _png_size_and_dpi(data: str) -> tuple[int, int, float | None]:
    raw = base64.b64decode(data)
    assert raw[:8] == b"\x89PNG\r\n\x1a\n", "not a PNG"
    width, height = struct.unpack(">II", raw[16:24])
    dpi, pos = None, 8
    while pos < len(raw):  # walk the chunks up to the image data: pHYs holds the resolution
        length, kind = struct.unpack(">I4s", raw[pos:pos + 8])
        if kind == b"pHYs":
            x_per_metre, _, unit = struct.unpack(">IIB", raw[pos + 8:pos + 17])
            dpi = x_per_metre * 0.0254 if unit == 1 else None
        if kind in (b"IDAT", b"IEND"):
            break
        pos += 12 + length
    return width, height, dpi


@pytest.mark.parametrize("path", NOTEBOOKS, ids=_ids(NOTEBOOKS))
def test_figures_are_legible_on_a_projector(path):
    for i, cell in enumerate(_read(path).cells):
        for out in cell.get("outputs", []):
            data = out.get("data", {})
            if "image/png" in data:
                width, _, dpi = _png_size_and_dpi(data["image/png"])
                assert width >= MIN_IMAGE_WIDTH, f"{path.name}, cell {i}: a {width} px wide figure (at least {MIN_IMAGE_WIDTH})"
                assert dpi is not None and dpi >= MIN_DPI - 1, f"{path.name}, cell {i}: stored at {dpi} dpi (at least {MIN_DPI})"


def test_one_figure_style_at_110_dpi():
    import matplotlib as mpl

    from alphavae.notebook import plotting

    assert plotting.DPI >= MIN_DPI and plotting.MIN_WIDTH * plotting.DPI >= MIN_IMAGE_WIDTH
    assert mpl.rcParams["figure.dpi"] == plotting.DPI  # applied on import of alphavae.notebook


@pytest.mark.parametrize("path", NOTEBOOKS, ids=_ids(NOTEBOOKS))
def test_no_widget_shown_as_text(path):
    for i, cell in enumerate(_read(path).cells):
        for out in cell.get("outputs", []):
            data = out.get("data", {})
            text = data.get("text/plain", "")
            text = "".join(text) if isinstance(text, list) else text
            if "image/png" not in data:
                assert not re.match(r"\s*(VBox|HBox|Box|Output|Tab|Accordion)\(", text), (
                    f"{path.name}, cell {i}: a widget stored as text ({text[:40]}...); use a PanelBox and a static picture")
