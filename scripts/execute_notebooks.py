"""Re-execute notebooks in place, the way they are stored in git: fast mode, offline, outputs kept, clean.

After a change to the package or the committed weights, the stored outputs must be those of a real run
(``tests/test_notebooks.py`` and nbval compare against them). This runs each notebook top to bottom with
the environment CI uses, drops saved widget state, and cleans it with nbstripout's project settings
(``--keep-output --keep-count --keep-id``, checked by ``tests/test_notebooks.py``).

    python scripts/execute_notebooks.py                      # every notebook
    python scripts/execute_notebooks.py notebooks/05_generation.ipynb
    python scripts/execute_notebooks.py --mode full --output /tmp/full   # full mode on a GPU: copies, not in place
    python scripts/execute_notebooks.py --mode full --output /tmp/full --set 'LPIPS_NET="alex"' notebooks/04_*.ipynb

``--set NAME=VALUE`` (copies only) adds a cell after the ``parameters`` cell that assigns a Python literal, as a
student editing that cell would (papermill's injected-parameters convention); the cell stays in the copy, so the
run says what it changed.
"""

from __future__ import annotations

import argparse
import ast
import os
import subprocess
import sys
import time
from pathlib import Path

import nbformat
from nbclient import NotebookClient

ROOT = Path(__file__).resolve().parents[1]
#: nbstripout's flags for the stored notebooks: keep what a reader on GitHub should see, drop run metadata.
NBSTRIPOUT_FLAGS = ("--keep-output", "--keep-count", "--keep-id")


def inject(nb, assignments: list[str], path: Path) -> None:
    """Add an ``injected-parameters`` cell with ``assignments`` after the notebook's ``parameters`` cell."""
    for line in assignments:
        name, sep, value = line.partition("=")
        if not sep or not name.strip().isidentifier():
            raise SystemExit(f"--set {line!r}: expected NAME=VALUE")
        ast.literal_eval(value)  # a literal only: a typo fails here, not halfway through the run
    where = [i for i, c in enumerate(nb.cells) if "parameters" in c.metadata.get("tags", [])]
    if not where:
        raise SystemExit(f"{path}: --set needs a cell tagged 'parameters'")
    cell = nbformat.v4.new_code_cell("# injected by scripts/execute_notebooks.py --set\n" + "\n".join(assignments))
    cell.metadata["tags"] = ["injected-parameters"]
    nb.cells.insert(where[0] + 1, cell)


def execute(path: Path, output: Path | None = None, assignments: list[str] = ()) -> float:
    """Run one notebook (working directory ``notebooks/``); returns the seconds it took.

    In place (``output=None``) it is then cleaned for git; otherwise the executed copy goes to ``output/``.
    """
    nb = nbformat.read(path, as_version=4)
    if assignments:
        inject(nb, list(assignments), path)
    start = time.perf_counter()
    NotebookClient(nb, timeout=600, kernel_name="python3", resources={"metadata": {"path": str(path.parent)}}).execute()
    nb.metadata.pop("widgets", None)
    target = path if output is None else output / path.name
    nbformat.write(nb, target)
    if output is None:
        subprocess.run([sys.executable, "-m", "nbstripout", *NBSTRIPOUT_FLAGS, str(path)], check=True)
    return time.perf_counter() - start


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("notebooks", nargs="*", type=Path, help="default: every notebook in notebooks/")
    parser.add_argument("--mode", choices=("fast", "full"), default="fast", help="ALPHAVAE_MODE for the run")
    parser.add_argument("--output", type=Path, help="write executed copies here instead of in place")
    parser.add_argument("--set", action="append", default=[], metavar="NAME=VALUE",
                        help="override a parameters-cell variable with a Python literal (with --output only)")
    args = parser.parse_args(argv)
    if args.set and args.output is None:
        parser.error("--set: give --output (the stored notebooks are run as written)")
    if args.mode == "full" and args.output is None:
        parser.error("--mode full: give --output (the stored notebooks are the fast-mode run)")
    os.environ.update(ALPHAVAE_MODE=args.mode, HF_HUB_OFFLINE="1", TRANSFORMERS_OFFLINE="1", TQDM_DISABLE="1")
    os.environ.pop("MPLBACKEND", None)  # Agg would hide the inline figures nbval compares
    paths = args.notebooks or sorted((ROOT / "notebooks").glob("*.ipynb"))
    for path in paths:
        if not path.is_file():
            print(f"{path}: no such notebook", file=sys.stderr)
            return 2
    if args.output is not None:
        args.output.mkdir(parents=True, exist_ok=True)
    for path in paths:
        seconds = execute(path.resolve(), args.output, args.set)
        print(f"{path.name}: executed ({args.mode}) in {seconds:.0f} s", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
