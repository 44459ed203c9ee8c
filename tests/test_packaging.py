"""Packaging: environment.yml and pyproject.toml agree; the wheel carries what notebooks read; the notebooks open
(jupyterlab) and install on Colab at a pin that exists; nothing cites a file outside the repository."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import tomllib
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]


def _pyproject_requirements() -> set[str]:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    return set(project["dependencies"]) | set(project["optional-dependencies"]["dev"])


def _conda_pip_requirements() -> set[str]:
    env = yaml.safe_load((ROOT / "environment.yml").read_text())
    pip_block = next(d["pip"] for d in env["dependencies"] if isinstance(d, dict) and "pip" in d)
    return {r for r in pip_block if not r.startswith("-e")}


def test_environment_yml_matches_pyproject() -> None:
    assert _conda_pip_requirements() == _pyproject_requirements()


def test_environment_yml_installs_the_package() -> None:
    env = yaml.safe_load((ROOT / "environment.yml").read_text())
    pip_block = next(d["pip"] for d in env["dependencies"] if isinstance(d, dict) and "pip" in d)
    assert "-e ." in pip_block


def test_jupyterlab_is_a_dependency_so_the_notebooks_open() -> None:
    """``pip install -e ".[dev]"`` must give ``jupyter lab`` (the README's command that opens the notebooks)."""
    names = {re.split(r"[<>=\[ ]", r)[0].lower() for r in _pyproject_requirements()}
    assert {"jupyterlab", "ipywidgets", "ipykernel"} <= names


WHEEL_SCRIPT = """
import alphavae, sys
from pathlib import Path
assert Path(alphavae.__file__).resolve().is_relative_to(Path(sys.argv[1]).resolve()), alphavae.__file__
from alphavae.paths import results_dir, sample_dir, shipped_config
from alphavae.training.config import load_config
from alphavae.training.ablation import read_ablation
from alphavae.generation.evaluate import read_results
from alphavae.training.data import RGBAFolder
from alphavae.vae.loading import load_vae
config = load_config(shipped_config("main"))          # notebook 04
assert Path(config.split).is_file(), config.split
assert read_ablation()["rows"] and (results_dir() / "ablation_recon").is_dir()
assert read_results()["models"]                        # notebook 05
assert len(RGBAFolder(sample_dir(), size=64)) == 30
assert load_vae("embedded-rgba").config.in_channels == 4
print("wheel ok")
"""


def test_the_wheel_carries_what_notebooks_04_and_05_read(tmp_path) -> None:
    """Build the wheel, install it into a fresh folder, and from outside the checkout make the calls notebooks 04
    and 05 make (configs, results, models, the sample: all read through the package, never the checkout)."""
    wheels = tmp_path / "wheels"
    subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "-q", "-w", str(wheels), str(ROOT)],
                   check=True, capture_output=True, timeout=600)
    wheel = next(wheels.glob("alphavae-*.whl"))
    target = tmp_path / "site"
    subprocess.run([sys.executable, "-m", "pip", "install", "--no-deps", "-q", "--target", str(target), str(wheel)],
                   check=True, capture_output=True, timeout=600)
    outside = tmp_path / "elsewhere"
    outside.mkdir()
    env = {**os.environ, "PYTHONPATH": str(target), "HF_HUB_OFFLINE": "1"}
    env.pop("ALPHAVAE_SHARED_DATA", None)
    done = subprocess.run([sys.executable, "-c", WHEEL_SCRIPT, str(target)], cwd=outside, env=env,
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0 and "wheel ok" in done.stdout, done.stderr[-2000:]


CITED = re.compile(r"(?<![\w/.-])((?:docs|data|configs|results|scripts|benchmarks|notebooks|tests|alphavae)/[\w./-]+\.\w+)")


def _texts() -> dict[str, str]:
    """Every notebook cell, README/docs page and Python file whose words a reader sees."""
    texts = {"README.md": (ROOT / "README.md").read_text()}
    for path in [*ROOT.glob("docs/*.md"), *ROOT.glob("data/**/*.md"), *ROOT.glob("alphavae/**/*.py"),
                 *ROOT.glob("scripts/*.py"), *ROOT.glob("benchmarks/*.py"), *ROOT.glob("benchmarks/*.md")]:
        texts[str(path.relative_to(ROOT))] = path.read_text()
    for path in ROOT.glob("notebooks/*.ipynb"):
        cells = json.loads(path.read_text())["cells"]
        texts[str(path.relative_to(ROOT))] = "\n".join("".join(c["source"]) for c in cells)
    return texts


def test_nothing_cites_a_file_the_repository_lacks() -> None:
    """No notebook, docstring or README line points outside the repository (``../shared``) or at a missing file."""
    missing, outside = [], []
    for where, text in _texts().items():
        if "../shared" in text.replace("`../shared/`", "").replace("../shared/data", ""):
            outside.append(where)
        for cited in CITED.findall(text):
            cited = cited.rstrip(".")
            if any(ch in cited for ch in "*{<$") or not cited:
                continue
            if not (ROOT / cited).exists():
                missing.append(f"{where}: {cited}")
    assert not outside, f"these cite ../shared, which users do not have: {outside}"
    assert not missing, missing
    assert all((ROOT / f).is_file() for f in ("docs/method.md", "docs/cli.md"))


PIN = re.compile(r"alphavae @ git\+https://github\.com/alphavae-teaching/alphavae@([0-9a-f]{40})")


def test_colab_install_cells_pin_a_commit_of_this_history_with_todays_package() -> None:
    """Every notebook's install cell pins one commit; it is in this repository's history, and the package, its
    data and configs have not changed since it (else Colab users would run other code than the notebook's)."""
    pins = {}
    for path in sorted(ROOT.glob("notebooks/*.ipynb")):
        found = PIN.findall(path.read_text())
        assert len(found) == 1, f"{path.name}: expected one pinned install line, found {found}"
        pins[path.name] = found[0]
    assert len(set(pins.values())) == 1, pins
    pin = next(iter(pins.values()))
    git = ["git", "-C", str(ROOT)]
    assert subprocess.run([*git, "cat-file", "-e", f"{pin}^{{commit}}"]).returncode == 0, f"{pin} is not in this history"
    assert subprocess.run([*git, "merge-base", "--is-ancestor", pin, "HEAD"]).returncode == 0
    changed = subprocess.run([*git, "diff", "--name-only", pin, "HEAD", "--", "alphavae", "data", "configs",
                              "results", "pyproject.toml"], capture_output=True, text=True, check=True).stdout.split()
    assert not changed, f"the package changed since the pinned {pin[:10]}: re-pin the notebooks ({changed[:5]})"
