"""One loader for every VAE the project uses: the embedded ones shipped in ``data/models/``, a local
``save_pretrained`` folder, or a Hugging Face hub id (optionally ``id:subfolder``).

A SPEC is resolved to ``(where, subfolder)`` by :func:`resolve_spec` and loaded with diffusers'
``AutoencoderKL.from_pretrained(..., use_safetensors=True)``: the embedded models and hub ids take the same
code path, so the notebooks scale from the small embedded VAE to Stable Diffusion's or FLUX's with one switch.
Offline (``HF_HUB_OFFLINE=1``, or the hub not answering within :data:`HUB_PROBE_TIMEOUT_S`) and not cached →
:class:`VAELoadError`, one line saying what to do, at once rather than after huggingface_hub's ~30 s of retries.
"""

from __future__ import annotations

import hashlib
import os
import platform
import urllib.error
import urllib.request
import warnings
from pathlib import Path

import torch
from diffusers import AutoencoderKL

from alphavae.paths import models_dir

#: Embedded SPEC name → folder under ``data/models/``, and how to rebuild it if it is missing.
EMBEDDED: dict[str, tuple[str, str]] = {
    "embedded": ("embedded-vae", "`alphavae pretrain` (see data/models/embedded-vae/MODEL_CARD.md)"),
    "embedded-rgba": ("embedded-rgba", "the trainer, `alphavae train --config configs/free_alpha_overshoot.json` (data/models/embedded-rgba/MODEL_CARD.md)"),
    "embedded-generator": ("embedded-generator", "the generation recipe (notebook 05, alphavae.generation.sampler)"),
}


#: Seconds the hub gets to answer one request before it is called unreachable and only the local cache is used.
HUB_PROBE_TIMEOUT_S = 3.0


class VAELoadError(ValueError):
    """A SPEC cannot be loaded; the one-line message names it and says what to do."""


def _looks_like_path(spec: str) -> bool:
    return spec.startswith(("/", ".", "~")) or spec.count("/") > 1 or os.sep != "/" and os.sep in spec


def resolve_spec(spec: str) -> tuple[str, str | None]:
    """SPEC → ``(local folder or hub id, subfolder or None)``, without loading anything.

    ``embedded`` / ``embedded-rgba`` / ``embedded-generator`` → the folder in ``data/models/``; an existing
    folder → itself; ``id:subfolder`` → ``(id, subfolder)``; anything else is taken as a hub id.
    """
    spec = str(spec).strip()
    if not spec:
        raise VAELoadError("empty SPEC: use embedded, embedded-rgba, a save_pretrained folder or a hub id")
    if spec in EMBEDDED:
        folder, rebuild = EMBEDDED[spec]
        path = models_dir() / folder
        if not (path / "config.json").is_file():
            raise VAELoadError(f"{spec}: {path} is missing; build it with {rebuild}")
        return str(path), None
    if spec.startswith("embedded"):
        raise VAELoadError(f"{spec}: unknown embedded model; valid names: {', '.join(EMBEDDED)}")
    if Path(spec).expanduser().is_dir():
        return str(Path(spec).expanduser()), None
    where, _, subfolder = spec.rpartition(":") if ":" in spec else (spec, "", "")
    if _looks_like_path(where) and not Path(where).expanduser().is_dir():
        raise VAELoadError(f"{spec}: no such folder (a SPEC is embedded, embedded-rgba, a save_pretrained folder or a hub id)")
    if Path(where).expanduser().is_dir():
        where = str(Path(where).expanduser())
    return where, subfolder or None


def torch_device(device: str | torch.device | None = "auto") -> torch.device:
    """``auto`` (or None) → CUDA if available else CPU; otherwise ``torch.device(device)``."""
    if device is None or str(device) == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(device)


def machine_name(device: torch.device) -> str:
    """What a results file says ran it: the GPU's name (``NVIDIA H100 80GB HBM3``) or ``CPU (<processor>)``."""
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    return f"CPU ({platform.processor() or platform.machine()})"


def autocast_dtype(device: torch.device) -> torch.dtype | None:
    """The dtype every trainer autocasts to on ``device``: bf16 on a GPU with bf16 tensor cores (Ampere or newer:
    A100, H100, L4 …), else None, i.e. fp32. A T4 or V100 (Colab's free GPU is a T4) runs bf16 only emulated,
    slower than fp32, and fp16 would need a loss scaler, which decides on the host."""
    if device.type == "cuda" and torch.cuda.get_device_capability(device)[0] >= 8:
        return torch.bfloat16
    return None


def autocast_for(device: torch.device) -> torch.autocast:
    """Autocast to :func:`autocast_dtype` on ``device``, disabled (fp32) where that is None: what every trainer
    runs its forward passes under."""
    dtype = autocast_dtype(device)
    return torch.autocast(device.type, dtype=dtype, enabled=dtype is not None)


def _offline() -> bool:
    return os.environ.get("HF_HUB_OFFLINE", "").strip().lower() in ("1", "true", "yes", "on")


def first_line(exc: BaseException) -> str:
    """An exception's first message line (its class name when it has no message), for one-line load errors."""
    return str(exc).splitlines()[0] if str(exc) else exc.__class__.__name__


def hub_unreachable() -> str | None:
    """Why the Hugging Face hub cannot be used now (``HF_HUB_OFFLINE=1``, or no answer from its endpoint within
    :data:`HUB_PROBE_TIMEOUT_S`), or ``None`` if it answers. One quick request: huggingface_hub itself would retry
    an unreachable hub for about 30 s and then report a misleading "no file named config.json"."""
    if _offline():
        return "HF_HUB_OFFLINE=1"
    from huggingface_hub import constants

    try:
        urllib.request.urlopen(urllib.request.Request(constants.ENDPOINT, method="HEAD"), timeout=HUB_PROBE_TIMEOUT_S).close()
    except urllib.error.HTTPError:  # an answer, even an error status, means the hub is reachable
        return None
    except (OSError, ValueError) as exc:  # URLError, timeouts, refused connections, a malformed HF_ENDPOINT
        return f"no answer from {constants.ENDPOINT} within {HUB_PROBE_TIMEOUT_S:g} s: {getattr(exc, 'reason', exc)}"
    return None


def load_vae(spec: str, device: str | torch.device | None = None, dtype: torch.dtype = torch.float32) -> AutoencoderKL:
    """Load an ``AutoencoderKL`` (eval mode) from a SPEC; see :func:`resolve_spec`. Weights via safetensors only.

    ``device=None`` keeps it on the CPU; ``"auto"`` picks CUDA when available.
    """
    where, subfolder = resolve_spec(spec)
    is_local = Path(where).is_dir()
    unreachable = None if is_local else hub_unreachable()
    try:
        with warnings.catch_warnings():  # huggingface_hub's deprecation noise about an argument diffusers passes
            warnings.filterwarnings("ignore", message=".*local_dir_use_symlinks.*")
            vae = AutoencoderKL.from_pretrained(where, subfolder=subfolder, torch_dtype=dtype, use_safetensors=True,
                                                local_files_only=unreachable is not None)
    except Exception as exc:  # diffusers/huggingface_hub raise OSError, EnvironmentError, HF*Error, ValueError...
        if is_local:
            raise VAELoadError(f"{spec}: not a loadable AutoencoderKL folder ({exc.__class__.__name__}: {str(exc).splitlines()[0] if str(exc) else ''})") from exc
        if unreachable is not None:
            raise VAELoadError(
                f"{spec}: is not in the local Hugging Face cache and the hub is unreachable ({unreachable}): "
                "download it on a machine with a network or pass a local save_pretrained folder"
            ) from exc
        raise VAELoadError(f"{spec}: cannot load from the hub ({first_line(exc)}); check the id, your network, or pass a local folder") from exc
    vae.eval().requires_grad_(False)
    return vae if device is None else vae.to(torch_device(device))


def latent_factors(vae: AutoencoderKL) -> tuple[float, float]:
    """``(shift_factor, scaling_factor)`` of a VAE: diffusion latents are ``(z − shift) · scale``; SD has no shift."""
    config = vae.config
    shift = getattr(config, "shift_factor", None) or 0.0
    return float(shift), float(config.scaling_factor)


def weights_sha256(spec: str) -> str | None:
    """sha256 of a local SPEC's ``diffusion_pytorch_model.safetensors``, else None (a hub id, or no such file).

    Results record it so a table names the exact weights it came from, not only a SPEC whose files may change.
    """
    where, subfolder = resolve_spec(spec)
    path = Path(where) / (subfolder or "") / "diffusion_pytorch_model.safetensors"
    return hashlib.sha256(path.read_bytes()).hexdigest() if path.is_file() else None
