"""Re-execute notebooks in place, the way they are stored in git: fast mode, offline, outputs kept, clean.

After a change to the package or the committed weights, the stored outputs must be those of a real run
(``tests/test_notebooks.py`` and nbval compare against them). This runs each notebook top to bottom with
the environment CI uses, drops saved widget state, and cleans it with nbstripout's project settings
(``--keep-output --keep-count --keep-id``, checked by ``tests/test_notebooks.py``).

    python scripts/execute_notebooks.py                      # every notebook
    python scripts/execute_notebooks.py notebooks/05_generation.ipynb
"""

from __future__ import annotations

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


def execute(path: Path) -> float:
    """Run one notebook in place (working directory ``notebooks/``); returns the seconds it took."""
    nb = nbformat.read(path, as_version=4)
    start = time.perf_counter()
    NotebookClient(nb, timeout=600, kernel_name="python3", resources={"metadata": {"path": str(path.parent)}}).execute()
    nb.metadata.pop("widgets", None)
    nbformat.write(nb, path)
    subprocess.run([sys.executable, "-m", "nbstripout", *NBSTRIPOUT_FLAGS, str(path)], check=True)
    return time.perf_counter() - start


def main(argv: list[str]) -> int:
    os.environ.update(ALPHAVAE_MODE="fast", HF_HUB_OFFLINE="1", TRANSFORMERS_OFFLINE="1", TQDM_DISABLE="1")
    os.environ.pop("MPLBACKEND", None)  # Agg would hide the inline figures nbval compares
    paths = [Path(p) for p in argv] or sorted((ROOT / "notebooks").glob("*.ipynb"))
    for path in paths:
        if not path.is_file():
            print(f"{path}: no such notebook", file=sys.stderr)
            return 2
        seconds = execute(path)
        print(f"{path.name}: executed in {seconds:.0f} s, {path.stat().st_size / 1e6:.2f} MB")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
