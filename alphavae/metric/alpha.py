"""The ALPHA metric (method.md §1): RGB metrics on composites over solid backgrounds, plus alpha-only errors.

An RGB metric cannot score an RGBA image directly: colour under α = 0 is invisible, and an error in α shows
only against a background. So prediction and target are both composited over each of the 9 canonical
backgrounds (:data:`alphavae.blending.BACKGROUNDS`) and scored there; the report gives each background and
the mean over backgrounds. Definitions used here (all per image, then averaged over images):

- **PSNR**: ``10·log10(1 / MSE)`` over the 3 colour channels of the composite (data range 1). Identical
  composites give ``inf``; :meth:`AlphaReport.to_dict` writes non-finite values as ``null`` with a note.
- **SSIM**: on the luma Y = 0.299 R + 0.587 G + 0.114 B (BT.601, as the paper's tool) or per RGB channel
  (``ssim_mode="rgb"``, channel mean); Gaussian window 11, σ 1.5, data range 1; the SSIM map averaged over
  the interior (a 5-pixel border dropped) exactly as scikit-image's ``structural_similarity(
  gaussian_weights=True, sigma=1.5, use_sample_covariance=False)`` does (see :func:`ssim` for why we do
  not call torchmetrics here).
- **LPIPS**: AlexNet v0.1 (:mod:`alphavae.metric.lpips_model`), inputs in [-1, 1]; ``None`` with a note when no real
  backbone weights are available.
- **Alpha-only** (matting conventions): PSNR of α; SAD = Σ|α̂ − α| / 1000 (thousands of pixels); gradient
  error = Σ(|∇α̂| − |∇α|)² / 1000 with ∇ by Gaussian-derivative filters, σ = 1.4 (as
  ``scipy.ndimage.gaussian_filter(order=1, truncate=4, mode="nearest")``).
- **Masked** (``masked=True``): every metric restricted to pixels where the *target* α > 0: PSNR from the MSE
  over those pixels, SSIM and LPIPS maps averaged over them, SAD and gradient error summed over them.
  Images with no such pixel are left out of the masked averages (noted).

Everything runs in memory on the tensors' device, ``batch_size`` images at a time, all backgrounds at once.
``jpeg_quality=75`` reproduces the published pipeline's JPEG round trip of the composites (for comparison
with the paper only: it adds JPEG loss to every score).
"""

from __future__ import annotations

import io
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

from alphavae.blending import composite, resolve_backgrounds
from alphavae.metric.backbones import lpips_or_reason

METRICS = ("psnr", "ssim", "lpips")
ALPHA_METRICS = ("psnr", "sad", "grad")
LUMA_BT601 = (0.299, 0.587, 0.114)
SSIM_WINDOW, SSIM_SIGMA = 11, 1.5
GRAD_SIGMA = 1.4


# ----------------------------------------------------------------------------------------------------- pieces
def _masked_mean(values: torch.Tensor, mask: torch.Tensor | None) -> torch.Tensor:
    """Mean over all but the batch dimension, or over ``mask`` (NaN for an image with an empty mask)."""
    if mask is None:
        return values.flatten(1).mean(1)
    mask = mask.expand_as(values).flatten(1).to(values.dtype)
    return (values.flatten(1) * mask).sum(1) / mask.sum(1)  # 0/0 → NaN on purpose


def psnr(pred: torch.Tensor, target: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
    """Per-image PSNR in dB (data range 1) of ``(N, C, H, W)`` tensors, optionally over ``mask`` pixels."""
    mse = _masked_mean((pred - target) ** 2, mask)
    return 10 * torch.log10(1 / mse)


def luma(rgb: torch.Tensor) -> torch.Tensor:
    """BT.601 luma Y = 0.299 R + 0.587 G + 0.114 B of ``(N, 3, H, W)`` in [0, 1] → ``(N, 1, H, W)``."""
    w = torch.tensor(LUMA_BT601, device=rgb.device, dtype=rgb.dtype).view(1, 3, 1, 1)
    return (rgb * w).sum(1, keepdim=True)


def _gaussian_window(sigma: float, radius: int, dtype: torch.dtype, device: torch.device) -> torch.Tensor:
    """The normalised 1-D Gaussian exp(−t² / 2σ²) on −radius…radius."""
    t = torch.arange(-radius, radius + 1, dtype=torch.float64)
    g = torch.exp(-0.5 * t**2 / sigma**2)
    return (g / g.sum()).to(device, dtype)


def _filter_valid(x: torch.Tensor, window: Sequence[float]) -> torch.Tensor:
    """Separable 'valid' filtering of ``(..., H, W)`` by a 1-D window along H then W, accumulated in place
    from shifted slices (no im2col buffer, so float64 stays cheap in memory and time on the CPU)."""
    n = len(window)
    h, w = x.shape[-2:]
    rows = x[..., 0:h - n + 1, :] * window[0]
    for k in range(1, n):
        rows.add_(x[..., k:h - n + 1 + k, :], alpha=window[k])
    out = rows[..., :, 0:w - n + 1] * window[0]
    for k in range(1, n):
        out.add_(rows[..., :, k:w - n + 1 + k], alpha=window[k])
    return out


def ssim(pred: torch.Tensor, target: torch.Tensor, mode: str = "luma", mask: torch.Tensor | None = None) -> torch.Tensor:
    """Per-image SSIM (Gaussian window 11, σ 1.5, data range 1) of RGB ``(N, 3, H, W)``, on BT.601 luma or
    per RGB channel (channel mean).

    Same definition as scikit-image's ``structural_similarity(gaussian_weights=True, sigma=1.5,
    use_sample_covariance=False, data_range=1)``: the SSIM map of the interior (a 5-pixel border dropped),
    averaged — with ``mask``, only over interior pixels inside the mask. Computed in float64 with a separable
    filter. (torchmetrics' SSIM gives the same map, but its scalar crops the border differently, its float32
    variances E[x²] − μ² cancel so that identical flat images score 0.9995, and its float64 convolution
    needs a 121×-input buffer on the CPU — so we filter ourselves; tests pin the result to scikit-image.)
    """
    if mode not in ("luma", "rgb"):
        raise ValueError(f"ssim_mode={mode!r}: use 'luma' or 'rgb'")
    if min(pred.shape[-2:]) < SSIM_WINDOW:
        raise ValueError(f"SSIM needs images of at least {SSIM_WINDOW}x{SSIM_WINDOW} pixels, got {tuple(pred.shape[-2:])}")
    x, y = (luma(pred.double()), luma(target.double())) if mode == "luma" else (pred.double(), target.double())
    stats = torch.empty((5, *x.shape), dtype=x.dtype, device=x.device)
    stats[0], stats[1] = x, y
    torch.mul(x, x, out=stats[2])
    torch.mul(y, y, out=stats[3])
    torch.mul(x, y, out=stats[4])
    return _masked_mean(_ssim_map(*_filter_valid(stats, _ssim_window())), _interior(mask))


def _ssim_window() -> list[float]:
    return _gaussian_window(SSIM_SIGMA, SSIM_WINDOW // 2, torch.float64, torch.device("cpu")).tolist()


def _interior(mask: torch.Tensor | None) -> torch.Tensor | None:
    pad = SSIM_WINDOW // 2
    return None if mask is None else mask[..., pad:-pad, pad:-pad]


def _ssim_map(mu_x: torch.Tensor, mu_y: torch.Tensor, xx: torch.Tensor, yy: torch.Tensor, xy: torch.Tensor) -> torch.Tensor:
    """SSIM from local means and local raw second moments E[x²], E[y²], E[xy] (population covariance)."""
    c1, c2 = 0.01**2, 0.03**2  # (K1·L)², (K2·L)² with data range L = 1
    mu_xy, mu_xx, mu_yy = mu_x * mu_y, mu_x.square(), mu_y.square()
    return (2 * mu_xy + c1) * (2 * (xy - mu_xy) + c2) / ((mu_xx + mu_yy + c1) * (xx - mu_xx + yy - mu_yy + c2))


def ssim_over_backgrounds(pred: torch.Tensor, target: torch.Tensor, colours: torch.Tensor, mode: str = "luma",
                          mask: torch.Tensor | None = None) -> torch.Tensor:
    """SSIM of the composites of RGBA ``pred`` and ``target`` ``(B, 4, H, W)`` over each solid colour of
    ``colours`` ``(K, 3)`` → ``(K, B)``; equal to :func:`ssim` on the composites, at a third of the cost.

    Why it is cheaper: over a solid colour b the composite is affine in b, A = P + b·Q with P = c·α and
    Q = 1 − α (and so is its luma, with b's luma). Local means and second moments of every composite
    therefore follow from 14 filtered maps of P, Q, P̂, Q̂ and their products, instead of 5 per background:
    μ_A = f(P) + b·f(Q), E[A²] = f(P²) + 2b·f(PQ) + b²·f(Q²), E[A·Â] = f(PP̂) + b·(f(PQ̂) + f(QP̂)) + b²·f(QQ̂).
    """
    if min(pred.shape[-2:]) < SSIM_WINDOW:
        raise ValueError(f"SSIM needs images of at least {SSIM_WINDOW}x{SSIM_WINDOW} pixels, got {tuple(pred.shape[-2:])}")
    x, y = pred.double(), target.double()
    px, py = x[:, :3] * x[:, 3:], y[:, :3] * y[:, 3:]
    qx, qy = 1 - x[:, 3:], 1 - y[:, 3:]
    b = colours.double().to(x.device)
    if mode == "luma":
        px, py, b = luma(px), luma(py), (b @ torch.tensor(LUMA_BT601, dtype=b.dtype, device=b.device))[:, None]
    window = _ssim_window()
    f_px, f_py, f_pxpx, f_pxqx, f_pypy, f_pyqy, f_pxpy, f_pxqy, f_qxpy = _filter_valid(
        torch.stack([px, py, px * px, px * qx, py * py, py * qy, px * py, px * qy, qx * py]), window)
    f_qx, f_qy, f_qxqx, f_qyqy, f_qxqy = _filter_valid(torch.stack([qx, qy, qx * qx, qy * qy, qx * qy]), window)
    interior = _interior(mask)
    out = []
    for colour in b:
        beta = colour.view(1, -1, 1, 1)
        out.append(_masked_mean(_ssim_map(
            f_px + beta * f_qx, f_py + beta * f_qy,
            f_pxpx + 2 * beta * f_pxqx + beta**2 * f_qxqx,
            f_pypy + 2 * beta * f_pyqy + beta**2 * f_qyqy,
            f_pxpy + beta * (f_pxqy + f_qxpy) + beta**2 * f_qxqy,
        ), interior))
    return torch.stack(out)


def lpips_distance(model: torch.nn.Module, pred: torch.Tensor, target: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
    """Per-image LPIPS of RGB ``(N, 3, H, W)`` in [0, 1] (the model sees [-1, 1]); with ``mask``, the
    spatial LPIPS map averaged over the mask."""
    spatial = model.spatial
    model.spatial = mask is not None
    try:
        with torch.no_grad():
            out = model(pred * 2 - 1, target * 2 - 1)
    finally:
        model.spatial = spatial
    return out.flatten() if mask is None else _masked_mean(out, mask)


def sad(pred_alpha: torch.Tensor, target_alpha: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
    """Sum of absolute α differences per image, in thousands (matting convention: Σ|α̂ − α| / 1000)."""
    diff = (pred_alpha - target_alpha).abs()
    if mask is not None:
        diff = diff * mask
    return diff.flatten(1).sum(1) / 1000


def _gaussian_derivative_kernels(sigma: float, dtype: torch.dtype, device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
    radius = int(4 * sigma + 0.5)
    g = _gaussian_window(sigma, radius, torch.float64, torch.device("cpu"))
    dg = -torch.arange(-radius, radius + 1, dtype=torch.float64) / sigma**2 * g
    return g.to(device, dtype), dg.to(device, dtype)


def alpha_gradient(alpha: torch.Tensor, sigma: float = GRAD_SIGMA) -> torch.Tensor:
    """Gradient magnitude of ``(N, 1, H, W)`` alpha by Gaussian-derivative filters (edges replicated)."""
    g, dg = _gaussian_derivative_kernels(sigma, alpha.dtype, alpha.device)
    r = g.numel() // 2
    padded = F.pad(alpha, (r, r, r, r), mode="replicate")
    gx = F.conv2d(F.conv2d(padded, dg.view(1, 1, 1, -1)), g.view(1, 1, -1, 1))
    gy = F.conv2d(F.conv2d(padded, g.view(1, 1, 1, -1)), dg.view(1, 1, -1, 1))
    return torch.sqrt(gx**2 + gy**2)


def gradient_error(pred_alpha: torch.Tensor, target_alpha: torch.Tensor, mask: torch.Tensor | None = None,
                   sigma: float = GRAD_SIGMA) -> torch.Tensor:
    """Matting gradient error per image: Σ(|∇α̂| − |∇α|)² / 1000, ∇ by Gaussian derivatives of ``sigma``."""
    err = (alpha_gradient(pred_alpha, sigma) - alpha_gradient(target_alpha, sigma)) ** 2
    if mask is not None:
        err = err * mask
    return err.flatten(1).sum(1) / 1000


def jpeg_roundtrip(rgb: torch.Tensor, quality: int = 75) -> torch.Tensor:
    """Encode each ``(N, 3, H, W)`` image as an 8-bit JPEG in memory (Pillow) and decode it: the published
    pipeline's lossy step, for comparison with the paper's numbers only."""
    arrays = (rgb.detach().float().clamp(0, 1).permute(0, 2, 3, 1).cpu().numpy() * 255 + 0.5).astype(np.uint8)
    out = []
    for arr in arrays:
        buf = io.BytesIO()
        Image.fromarray(arr, "RGB").save(buf, format="JPEG", quality=quality)
        buf.seek(0)
        out.append(np.asarray(Image.open(buf).convert("RGB"), dtype=np.float32) / 255)
    return torch.from_numpy(np.stack(out)).permute(0, 3, 1, 2).to(rgb.device, rgb.dtype)


# ---------------------------------------------------------------------------------------------------- report
def _finite_or_none(value: float | None) -> float | None:
    return value if value is not None and math.isfinite(value) else None


@dataclass
class AlphaReport:
    """Result of :func:`alpha_metric`: per-background and mean RGB metrics, alpha-only metrics, notes.

    ``backgrounds[name][metric]`` and ``alpha[metric]`` are means over images (``inf`` possible for PSNR of
    identical images, ``None`` for a metric not computed). ``per_image`` holds the per-image values as CPU
    tensors: ``per_image["backgrounds"][name][metric]``, ``per_image["alpha"][metric]``, and the same
    under ``per_image["masked"]`` when masked metrics were asked for, plus ``per_image["visible_pixels"]``
    (pixels with target α > 0); ``masked`` then holds the masked means in the same layout as the report
    (``backgrounds``, ``mean``, ``alpha``). :func:`merge_reports` combines reports over different images.
    """

    n_images: int
    backgrounds: dict[str, dict[str, float | None]]
    mean: dict[str, float | None]
    alpha: dict[str, float | None]
    notes: list[str] = field(default_factory=list)
    masked: dict | None = None
    per_image: dict = field(default_factory=dict, repr=False)
    settings: dict = field(default_factory=dict)

    def to_dict(self) -> dict:
        """The ``eval`` JSON of cli.md (plus ``notes``, ``settings`` and ``masked``), valid JSON: values that
        are not finite (PSNR of identical images) are written as ``null`` and named in ``notes``."""
        notes = list(self.notes)

        def clean(section: Mapping, where: str) -> dict:
            out = {}
            for key, value in section.items():
                if isinstance(value, Mapping):
                    out[key] = clean(value, f"{where}.{key}")
                else:
                    out[key] = _finite_or_none(value)
                    if value is not None and not math.isfinite(value):
                        notes.append(f"{where}.{key} is {value} (identical images); written as null")
            return out

        result = {
            "n_images": self.n_images,
            "backgrounds": clean(self.backgrounds, "backgrounds"),
            "mean": clean(self.mean, "mean"),
            "alpha": clean(self.alpha, "alpha"),
        }
        if self.masked is not None:
            result["masked"] = clean(self.masked, "masked")
        result["settings"] = dict(self.settings)
        result["notes"] = notes
        return result

    def table(self) -> str:
        """A readable fixed-width table: one row per background, the mean, then alpha-only metrics and notes."""
        lines = [f"ALPHA metric on {self.n_images} image(s)"]
        lines += _section_table(self.backgrounds, self.mean, self.alpha)
        if self.masked is not None:
            lines += ["", "restricted to pixels where target alpha > 0:"]
            lines += _section_table(self.masked["backgrounds"], self.masked["mean"], self.masked["alpha"])
        lines += [f"note: {n}" for n in self.notes]
        return "\n".join(lines)


def _fmt(value: float | None) -> str:
    if value is None:
        return "n/a"
    return f"{value:.4f}" if value == 0 or not math.isfinite(value) or abs(value) >= 0.01 else f"{value:.2e}"


def _section_table(backgrounds: dict, mean: dict, alpha: dict) -> list[str]:
    metrics = list(mean)
    lines = [f"{'background':<11}" + "".join(f"{m:>11}" for m in metrics)]
    for name, values in list(backgrounds.items()) + [("mean", mean)]:
        lines.append(f"{name:<11}" + "".join(f"{_fmt(values[m]):>11}" for m in metrics))
    lines.append("alpha only: " + ", ".join(f"{k} {_fmt(v)}" for k, v in alpha.items())
                 + "  (sad, grad in thousands; grad sigma 1.4)")
    return lines


def _nanmean(values: torch.Tensor) -> float | None:
    finite_or_inf = values[~torch.isnan(values)]
    return None if finite_or_inf.numel() == 0 else float(finite_or_inf.double().mean())


def _summarise(per_bg: dict[str, dict[str, torch.Tensor | None]], per_alpha: dict[str, torch.Tensor]) -> tuple[dict, dict, dict]:
    backgrounds = {bg: {m: None if v is None else _nanmean(v) for m, v in vals.items()} for bg, vals in per_bg.items()}
    metrics = next(iter(backgrounds.values())).keys()
    mean = {}
    for m in metrics:
        vals = [backgrounds[bg][m] for bg in backgrounds if backgrounds[bg][m] is not None]
        mean[m] = float(np.mean(vals)) if vals else None
    alpha = {m: _nanmean(v) for m, v in per_alpha.items()}
    return backgrounds, mean, alpha


# ------------------------------------------------------------------------------------------------ the metric
def _check_inputs(pred: torch.Tensor, target: torch.Tensor) -> None:
    if pred.shape != target.shape or pred.dim() != 4 or pred.shape[1] != 4:
        raise ValueError(f"pred and target must both be (N, 4, H, W) RGBA tensors of one shape; got pred "
                         f"{tuple(pred.shape)} and target {tuple(target.shape)}")
    for name, x in (("pred", pred), ("target", target)):
        if x.numel() and (float(x.min()) < 0 or float(x.max()) > 1):
            raise ValueError(f"{name} has values outside [0, 1] (min {float(x.min()):.4g}, max {float(x.max()):.4g}); clamp it first")


def alpha_metric(pred: torch.Tensor, target: torch.Tensor, backgrounds: Sequence[str] | Mapping | None = None,
                 metrics: Sequence[str] = METRICS, ssim_mode: str = "luma", masked: bool = False,
                 jpeg_quality: int | None = None, lpips_model: torch.nn.Module | None = None,
                 batch_size: int = 16, lpips_net: str = "alex") -> AlphaReport:
    """The ALPHA metric of RGBA ``pred`` against ``target``, both ``(N, 4, H, W)`` straight alpha in [0, 1].

    ``backgrounds``: names (default all 9) or ``{name: rgb}``. ``metrics``: any of psnr, ssim, lpips (the
    alpha-only metrics are always computed). LPIPS uses ``lpips_model`` or loads LPIPS-``lpips_net`` on the
    fetched ImageNet backbone (:func:`alphavae.metric.backbones.lpips_or_reason`); if none was fetched it is
    ``None`` with a note. Runs on ``pred``'s
    device, ``batch_size`` images at a time. See the module docstring for every definition.
    """
    _check_inputs(pred, target)
    unknown = [m for m in metrics if m not in METRICS]
    if unknown:
        raise ValueError(f"unknown metric(s) {unknown}; choose from {list(METRICS)}")
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    if ssim_mode not in ("luma", "rgb"):
        raise ValueError(f"ssim_mode={ssim_mode!r}: use 'luma' or 'rgb'")
    if jpeg_quality is not None and not 1 <= jpeg_quality <= 100:
        raise ValueError(f"jpeg_quality must be in 1..100, got {jpeg_quality}")
    bgs = resolve_backgrounds(backgrounds)
    device = pred.device
    notes: list[str] = []
    if "lpips" in metrics and lpips_model is None:
        lpips_model, reason = lpips_or_reason(lpips_net, device)
        if reason:
            notes.append(f"lpips unavailable: {reason}")
    if lpips_model is not None:
        lpips_model.to(device)
    rgb_metrics = [m for m in metrics if m != "lpips" or lpips_model is not None]
    if jpeg_quality is not None:
        notes.append(f"composites round-tripped through JPEG quality {jpeg_quality} (published pipeline; adds JPEG loss)")

    modes = [None, "masked"] if masked else [None]
    collected = {mode: {"bg": {bg: {m: [] for m in rgb_metrics} for bg in bgs}, "alpha": {m: [] for m in ALPHA_METRICS}}
                 for mode in modes}
    colours = torch.tensor(list(bgs.values()), device=device, dtype=torch.float32).view(len(bgs), 1, 3, 1, 1)
    for start in range(0, pred.shape[0], batch_size):
        p = pred[start:start + batch_size].to(device, torch.float32)
        t = target[start:start + batch_size].to(device, torch.float32)
        k, b = len(bgs), p.shape[0]
        cp = composite(p.unsqueeze(0), colours).flatten(0, 1)  # (K·B, 3, H, W), background-major
        ct = composite(t.unsqueeze(0), colours).flatten(0, 1)
        if jpeg_quality is not None:
            cp, ct = jpeg_roundtrip(cp, jpeg_quality), jpeg_roundtrip(ct, jpeg_quality)
        visible = t[:, 3:4] > 0
        for mode in modes:
            mask = visible if mode else None
            mask_k = visible.repeat(k, 1, 1, 1) if mode else None
            values = {}
            if "psnr" in rgb_metrics:
                values["psnr"] = psnr(cp, ct, mask_k)
            if "ssim" in rgb_metrics and jpeg_quality is None:
                values["ssim"] = ssim_over_backgrounds(p, t, colours.view(k, 3), ssim_mode, mask).flatten()
            elif "ssim" in rgb_metrics:  # JPEG broke the affine structure: score the composites directly
                values["ssim"] = ssim(cp, ct, ssim_mode, mask_k)
            if "lpips" in rgb_metrics:
                values["lpips"] = lpips_distance(lpips_model, cp, ct, mask_k)
            for m, v in values.items():
                for i, bg in enumerate(bgs):
                    collected[mode]["bg"][bg][m].append(v.view(k, b)[i].detach().double().cpu())
            pa, ta = p[:, 3:4], t[:, 3:4]
            for m, v in (("psnr", psnr(pa, ta, mask)), ("sad", sad(pa, ta, mask)), ("grad", gradient_error(pa, ta, mask))):
                collected[mode]["alpha"][m].append(v.detach().double().cpu())

    per_image: dict = {"visible_pixels": (target[:, 3] > 0).flatten(1).sum(1).cpu()}
    for mode in modes:
        per_bg = {bg: {m: (torch.cat(vals[m]) if m in rgb_metrics else None) for m in metrics}
                  for bg, vals in collected[mode]["bg"].items()}
        per_alpha = {m: torch.cat(v) for m, v in collected[mode]["alpha"].items()}
        section = {"backgrounds": per_bg, "alpha": per_alpha}
        if mode is None:
            per_image.update(section)
        else:
            per_image["masked"] = section
    settings = {"ssim_mode": ssim_mode, "jpeg_quality": jpeg_quality, "psnr_data_range": 1.0,
                "sad_unit": "sum of |alpha error| / 1000", "grad_sigma": GRAD_SIGMA, "grad_unit": "sum / 1000"}
    return _build_report(per_image, notes, settings)


def _build_report(per_image: dict, notes: list[str], settings: dict) -> AlphaReport:
    """Means over images (and backgrounds) from per-image values; notes that follow from the data are added."""
    notes = list(notes)
    backgrounds, mean, alpha = _summarise(per_image["backgrounds"], per_image["alpha"])
    report = AlphaReport(n_images=int(per_image["visible_pixels"].numel()), backgrounds=backgrounds, mean=mean,
                         alpha=alpha, notes=notes, per_image=per_image, settings=settings)
    if "masked" in per_image:
        mb, mm, ma = _summarise(per_image["masked"]["backgrounds"], per_image["masked"]["alpha"])
        report.masked = {"backgrounds": mb, "mean": mm, "alpha": ma}
        empty = int(per_image["visible_pixels"].eq(0).sum())
        if empty:
            notes.append(f"{empty} image(s) have no pixel with target alpha > 0 and are left out of the masked metrics")
    return report


def merge_reports(reports: Sequence[AlphaReport]) -> AlphaReport:
    """One report over the images of several (e.g. one per image size): per-image values concatenated, means
    recomputed. The reports must come from the same settings, metrics and backgrounds."""
    if not reports:
        raise ValueError("merge_reports needs at least one report")
    first = reports[0]
    for r in reports[1:]:
        if r.settings != first.settings or r.backgrounds.keys() != first.backgrounds.keys() or r.mean.keys() != first.mean.keys():
            raise ValueError("cannot merge ALPHA reports made with different settings, metrics or backgrounds")

    def cat(parts: list):
        if isinstance(parts[0], Mapping):
            return {k: cat([p[k] for p in parts]) for k in parts[0]}
        return None if parts[0] is None else torch.cat(parts)

    derived = ("image(s) have no pixel with target alpha",)
    notes = list(dict.fromkeys(n for r in reports for n in r.notes if not any(d in n for d in derived)))
    return _build_report(cat([r.per_image for r in reports]), notes, dict(first.settings))
