"""Where every project folder is: the one place that knows the layout of a checkout and of an installed wheel.

A wheel carries ``data/``, ``configs/`` and ``results/`` inside the package as ``alphavae/_data``,
``alphavae/_configs`` and ``alphavae/_results`` (``pyproject.toml``'s force-include); a source checkout has them
at its root. Everything else asks these functions, so notebooks and the CLI work from any working directory
(Colab's is ``/content``) and from a plain ``pip install``.

The larger image sets (``rgba-train``, ``rgb-photos``) are not shipped: :func:`shared_data_dir` finds them in
``$ALPHAVAE_SHARED_DATA``, or in ``../shared/data`` beside a checkout; ``alphavae data fetch --dir DIR`` rebuilds
``rgba-train`` there (``scripts/rebuild_rgb_photos.py`` the photos).
"""

from __future__ import annotations

import os
from importlib.resources import files
from pathlib import Path

#: The command that rebuilds the training images anywhere (named by every "data not found" error).
FETCH_DATA_COMMAND = "alphavae data fetch --dir DIR && export ALPHAVAE_SHARED_DATA=DIR"

_PACKAGE = Path(str(files("alphavae")))
_CHECKOUT = _PACKAGE.parent


def _project_folder(name: str) -> Path:
    """``alphavae/_<name>`` in an installed wheel, else ``<checkout>/<name>``."""
    for candidate in (_PACKAGE / f"_{name}", _CHECKOUT / name):
        if candidate.is_dir():
            return candidate
    raise FileNotFoundError(f"the alphavae {name}/ folder was not found; reinstall the package from the repository")


def data_dir() -> Path:
    """The project's ``data/`` folder (models, the RGBA sample)."""
    return _project_folder("data")


def models_dir() -> Path:
    """The shipped models (``data/models``): ``embedded``, ``embedded-rgba``, ``embedded-generator``."""
    return data_dir() / "models"


def sample_dir() -> Path:
    """The small real RGBA sample shipped with the project (``data/rgba-sample``)."""
    return data_dir() / "rgba-sample"


def configs_dir() -> Path:
    """The shipped training configs (``configs/``)."""
    return _project_folder("configs")


def results_dir() -> Path:
    """The committed results tables (``results/``)."""
    return _project_folder("results")


def shipped_config(name: str) -> Path:
    """``configs/<name>.json`` (``toy``, ``main``, ``naive_mse``, …, ``split-rgba-train``)."""
    path = configs_dir() / f"{name}.json"
    if not path.is_file():
        raise FileNotFoundError(f"configs/{name}.json not found; give the path of a config file instead")
    return path


def shared_data_dir() -> Path:
    """The larger real image sets: ``$ALPHAVAE_SHARED_DATA``, else ``../shared/data`` beside the checkout."""
    env = os.environ.get("ALPHAVAE_SHARED_DATA")
    path = Path(env).expanduser() if env else _CHECKOUT.parent / "shared" / "data"
    if not path.is_dir():
        raise FileNotFoundError(f"{path}: the training image sets are not here; rebuild them with `{FETCH_DATA_COMMAND}`")
    return path


def cache_dir() -> Path:
    """Where downloaded and converted files live: ``$ALPHAVAE_CACHE``, else ``~/.cache/alphavae``."""
    return Path(os.environ.get("ALPHAVAE_CACHE") or Path.home() / ".cache" / "alphavae").expanduser()
