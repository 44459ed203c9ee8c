"""LPIPS (Zhang et al. 2018) with a *real* ImageNet backbone, loaded offline — or a clear "unavailable".

The ``lpips`` package ships its small calibrated linear layers (v0.1) inside the wheel, but builds its
backbone (AlexNet by default) through torchvision, which downloads ImageNet weights. Nothing may download
here, so we build the model with ``pnet_rand=True`` (no download) and then load the real torchvision
backbone weights from a file we find ourselves:

1. the ``weights`` argument (a ``.pth`` file, or a folder holding the torchvision file name),
2. ``$ALPHAVAE_LPIPS_WEIGHTS`` (file or folder),
3. torch hub's cache (``~/.cache/torch/hub/checkpoints/alexnet-owt-7be5be79.pth``, where torchvision puts it),
4. ``../shared/weights/`` beside the checkout.

Without such a file :class:`LPIPSUnavailable` is raised with a one-line reason. LPIPS with a random backbone
is not LPIPS, so it is never returned silently.
"""

from __future__ import annotations

import os
import warnings
from pathlib import Path

import torch

#: torchvision's file name of each backbone's ImageNet weights (the name torch hub caches it under).
TORCHVISION_FILES: dict[str, str] = {
    "alex": "alexnet-owt-7be5be79.pth",
    "vgg": "vgg16-397923af.pth",
    "squeeze": "squeezenet1_1-b8a52dc0.pth",
}

_ENV = "ALPHAVAE_LPIPS_WEIGHTS"


class LPIPSUnavailable(RuntimeError):
    """No real backbone weights were found (or they could not be loaded); the message says why in one line."""


def _shared_weights_dir() -> Path:
    return Path(__file__).resolve().parent.parent.parent / "shared" / "weights"


def _hub_checkpoints_dir() -> Path:
    return Path(torch.hub.get_dir()) / "checkpoints"


def _as_file(path: Path, net: str) -> Path:
    """A weights file given directly, or the torchvision file name inside a given folder."""
    return path / TORCHVISION_FILES[net] if path.is_dir() else path


def find_backbone_weights(net: str = "alex", weights: str | os.PathLike | None = None) -> Path:
    """The file holding the real torchvision backbone weights for ``net``, searched in the documented order.

    An explicit ``weights`` (argument or ``$ALPHAVAE_LPIPS_WEIGHTS``) that does not exist is an error, not a
    reason to look elsewhere: the user asked for that file.
    """
    if net not in TORCHVISION_FILES:
        raise ValueError(f"net={net!r}: choose from {list(TORCHVISION_FILES)}")
    for source, given in (("weights", weights), (f"${_ENV}", os.environ.get(_ENV))):
        if given:
            path = _as_file(Path(given).expanduser(), net)
            if not path.is_file():
                raise LPIPSUnavailable(f"LPIPS backbone weights {path} (from {source}) not found")
            return path
    for folder in (_hub_checkpoints_dir(), _shared_weights_dir()):
        if (folder / TORCHVISION_FILES[net]).is_file():
            return folder / TORCHVISION_FILES[net]
    raise LPIPSUnavailable(
        f"LPIPS needs ImageNet {net} weights ({TORCHVISION_FILES[net]}) and none were found "
        f"(give a path, set ${_ENV}, or put the file in {_hub_checkpoints_dir()})"
    )


def _load_backbone(model: torch.nn.Module, path: Path) -> None:
    """Copy torchvision ``features.<i>.*`` tensors into the lpips slices, which keep the child names ``<i>``."""
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # corrupt file, wrong format
        raise LPIPSUnavailable(f"{path}: cannot read LPIPS backbone weights ({exc.__class__.__name__})") from exc
    targets = {}
    for slice_name, block in model.net.named_children():
        for index, _ in block.named_children():
            targets[index] = slice_name
    mapped = {}
    for key, tensor in state.items():
        parts = key.split(".")
        if parts[0] == "features" and parts[1] in targets:
            mapped[f"{targets[parts[1]]}.{'.'.join(parts[1:])}"] = tensor
    expected = model.net.state_dict()
    if set(mapped) != set(expected) or any(mapped[k].shape != expected[k].shape for k in expected):
        raise LPIPSUnavailable(f"{path}: not a torchvision {model.pnet_type} state dict (keys or shapes differ)")
    model.net.load_state_dict(mapped)


def load_lpips(net: str = "alex", weights: str | os.PathLike | None = None, device: str | torch.device | None = None):
    """LPIPS v0.1 (``lpips.LPIPS``) with real backbone weights, frozen, in eval mode, on ``device``.

    Inputs to the returned model are RGB in [-1, 1]. Raises :class:`LPIPSUnavailable` when no usable
    backbone weights are found.
    """
    import lpips

    path = find_backbone_weights(net, weights)
    with warnings.catch_warnings():  # torchvision's "pretrained is deprecated" notice
        warnings.simplefilter("ignore")
        model = lpips.LPIPS(net=net, version="0.1", pretrained=True, pnet_rand=True, verbose=False)
    _load_backbone(model, path)
    model.requires_grad_(False).eval()
    return model.to(device) if device is not None else model


def lpips_unavailable_reason(net: str = "alex", weights: str | os.PathLike | None = None) -> str | None:
    """``None`` if real LPIPS weights can be found, else the one-line reason why LPIPS is unavailable."""
    try:
        find_backbone_weights(net, weights)
    except LPIPSUnavailable as exc:
        return str(exc)
    return None
