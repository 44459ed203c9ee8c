"""How good are generated transparent images? Compare them with held-out real ones, composited over backgrounds.

Two kinds of numbers:

* **Alpha statistics** — the share of pixels that are transparent (α < 0.01), soft (in between) and opaque
  (α > 0.99), generated vs real. A generator on a VAE that ignores alpha shows ~100 % opaque.
* **FD-VGG16 and KID-VGG16** — the Fréchet distance and the kernel distance (unbiased MMD², polynomial kernel),
  computed by torchmetrics on ImageNet VGG16 features (global-average-pooled conv5_3,
  :func:`alphavae.metric.backbones.vgg16_features`) of the composites over white, black and gray, then averaged
  over the three. **Not FID**: FID is defined on Inception features, whose weights cannot be fetched here; the
  numbers rank models on the same data and are not comparable with published FIDs. Where torch-fidelity and
  its Inception weights are present (a ``torch.hub`` cache, as on Colab), true FID/KID are added beside them.

``alphavae generator eval --model main=DIR --model naive_mse=DIR ...`` samples every generator, scores it and
writes ``results/generation.json`` + ``.md`` (with the command and device). A ``train split (reference)`` row
scores real training images the same way: what a generator that reproduced the training data would get.
"""

from __future__ import annotations

import json
from pathlib import Path

import torch
from torch import nn
from torchmetrics.image.fid import FrechetInceptionDistance
from torchmetrics.image.kid import KernelInceptionDistance

from alphavae.blending import composite, resolve_backgrounds
from alphavae.generation.sampler import generate_with, load_generator, training_steps
from alphavae.imageio import atomic_write
from alphavae.metric.alpha_shares import alpha_statistics
from alphavae.metric.backbones import VGG16Features, vgg16_features
from alphavae.paths import results_dir, shared_data_dir
from alphavae.training.data import RGBAFolder
from alphavae.training.splits import read_split, split_files
from alphavae.vae.loading import machine_name, torch_device
from alphavae.vae.reconstruct import RECONSTRUCT_BATCH, reconstruct

#: The backgrounds the generated and real composites are scored over (FD/KID averaged over them).
FEATURE_BACKGROUNDS = ("white", "black", "gray")
#: The label every table gives the VGG16 numbers.
FD_LABEL = "FD-VGG16 (not FID: no Inception weights)"
#: torch-fidelity's Inception weights as ``torch.hub`` caches them.
INCEPTION_FILE = "weights-inception-2015-12-05-6726825d.pth"


def inception_unavailable_reason() -> str | None:
    """``None`` if FID/KID with real Inception weights can run here, else one line saying why not."""
    try:
        import torch_fidelity  # noqa: F401
    except ImportError:
        return "FID/KID (Inception) unavailable: torch-fidelity is not installed and its Inception weights are not here"
    path = Path(torch.hub.get_dir()) / "checkpoints" / INCEPTION_FILE
    if not path.is_file():
        return f"FID/KID (Inception) unavailable: no Inception weights at {path} (nothing is downloaded)"
    return None


class _Features(nn.Module):
    """Identity over precomputed feature vectors, so torchmetrics' FID/KID score features extracted once."""

    def __init__(self, num_features: int):
        super().__init__()
        self.num_features = num_features

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        return features


class _Uint8Input(nn.Module):
    """torch-fidelity's Inception takes uint8 images in [0, 255]; ours are floats in [0, 1]."""

    def __init__(self, net: nn.Module):
        super().__init__()
        self.net = net

    def forward(self, rgb: torch.Tensor) -> torch.Tensor:
        return self.net((rgb * 255).round().to(torch.uint8))


@torch.no_grad()
def extract_features(rgb: torch.Tensor, feature: nn.Module, batch_size: int = 64) -> torch.Tensor:
    """Feature vectors ``(N, D)`` of RGB images in [0, 1], computed in batches on the feature network's device."""
    device = next(feature.parameters()).device
    return torch.cat([feature(chunk.to(device)).float() for chunk in rgb.split(batch_size)])


@torch.no_grad()
def feature_distances(real: torch.Tensor, fake: torch.Tensor, kid_subset_size: int = 100, seed: int = 0) -> dict[str, float]:
    """Fréchet distance and KID (mean ± std over 50 random subsets) between two sets of feature vectors."""
    identity = _Features(real.shape[1])
    fid = FrechetInceptionDistance(feature=identity, normalize=True).to(real.device)
    kid = KernelInceptionDistance(feature=identity, normalize=True, subsets=50,
                                  subset_size=min(kid_subset_size, len(real), len(fake))).to(real.device)
    for metric in (fid, kid):
        metric.update(real, real=True)
        metric.update(fake.to(real.device), real=False)
    torch.manual_seed(seed)  # KID draws random subsets
    kid_mean, kid_std = kid.compute()
    return {"fd": fid.compute().item(), "kid": kid_mean.item(), "kid_std": kid_std.item()}


@torch.no_grad()
def distribution_distances(real_rgb: torch.Tensor, fake_rgb: torch.Tensor, feature: nn.Module | int,
                           kid_subset_size: int = 100, batch_size: int = 64, seed: int = 0) -> dict[str, float]:
    """Fréchet distance and KID between two sets of RGB images in [0, 1], through ``feature`` (a network, or
    2048 for Inception, which torchmetrics loads through torch-fidelity)."""
    if isinstance(feature, int):
        feature = _Uint8Input(FrechetInceptionDistance(feature=feature).inception)
    return feature_distances(extract_features(real_rgb, feature, batch_size), extract_features(fake_rgb, feature, batch_size),
                             kid_subset_size, seed)


def evaluate_generation(fake: torch.Tensor, real: torch.Tensor, feature: VGG16Features,
                        backgrounds=FEATURE_BACKGROUNDS, inception: bool | None = None, kid_subset_size: int = 100,
                        real_features: dict[str, torch.Tensor] | None = None) -> dict:
    """Score generated RGBA images ``fake`` against real ones: alpha statistics, and FD/KID-VGG16 per background.

    ``inception=None`` adds Inception FID/KID when :func:`inception_unavailable_reason` allows, else a note
    says why they are missing. ``real_features`` (background → features of ``real``'s composites, filled in on
    first use) lets several models share them.
    """
    result = {"n_generated": len(fake), "n_real": len(real),
              "alpha": {"generated": alpha_statistics(fake), "real": alpha_statistics(real)},
              "vgg16": {}, "inception": None, "notes": []}
    reason = inception_unavailable_reason()
    use_inception = reason is None if inception is None else inception
    if reason is not None:
        result["notes"].append(reason)
    real_features = {} if real_features is None else real_features
    inception_scores = {}
    for name, rgb in resolve_backgrounds(backgrounds).items():
        if name not in real_features:
            real_features[name] = extract_features(composite(real, rgb), feature)
        fake_features = extract_features(composite(fake, rgb), feature)
        result["vgg16"][name] = feature_distances(real_features[name], fake_features, kid_subset_size)
        if use_inception:
            inception_scores[name] = distribution_distances(composite(real, rgb), composite(fake, rgb), 2048, kid_subset_size)
    result["vgg16"]["mean"] = _mean_scores(result["vgg16"])
    if inception_scores:
        inception_scores["mean"] = _mean_scores(inception_scores)
        result["inception"] = inception_scores
    return result


def _mean_scores(per_background: dict[str, dict[str, float]]) -> dict[str, float]:
    keys = next(iter(per_background.values())).keys()
    return {k: sum(s[k] for s in per_background.values()) / len(per_background) for k in keys}


def evenly_spaced(files: list[Path], limit: int | None) -> list[Path]:
    """``limit`` of ``files`` spread over the list (a split lists its images category by category); all without one."""
    return files if limit is None else files[:: max(1, len(files) // limit)][:limit]


def images_of(root: Path, files: list[Path], size: int) -> torch.Tensor:
    """``files`` under ``root`` as ``(N, 4, size, size)`` in [0, 1] — as the trainers and the generator see them."""
    dataset = RGBAFolder(root, size=size, files=files)
    return torch.stack([dataset[i] for i in range(len(dataset))])


def split_image_files(which: str = "heldout", root: str | Path | None = None,
                      split: str | Path | None = None) -> tuple[Path, list[Path]]:
    """``(root, files)``: the held-out (or training) images of the shared split, ``rgba-train`` by default."""
    from alphavae.generation.train import DEFAULT_SPLIT

    root = Path(root) if root else shared_data_dir() / "rgba-train"
    train, heldout = split_files(root, read_split(split or DEFAULT_SPLIT))
    return root, heldout if which == "heldout" else train


def load_split_images(size: int, which: str = "heldout", root: str | Path | None = None,
                      split: str | Path | None = None, limit: int | None = None) -> torch.Tensor:
    """The held-out (or training) images of the shared split as ``(N, 4, size, size)``, ``limit`` of them evenly
    spaced."""
    root, files = split_image_files(which, root, split)
    return images_of(root, evenly_spaced(files, limit), size)


def compare_generators(models: dict[str, str], n: int = 512, seed: int = 0, device: str = "auto",
                       root: str | None = None, split: str | None = None) -> dict:
    """Sample ``n`` images from each generator folder and score them against the held-out split.

    Adds a ``train split (reference)`` row: real training images scored the same way — the value a
    generator that reproduced the training distribution exactly would get — and a ``train split through the
    VAE (reference)`` row: the same images encoded and decoded by the first model's VAE, roughly what a generator
    decoded by that VAE can hope for (its decoder's own soft alpha included).
    """
    device = torch_device(device)
    feature = vgg16_features(device)
    results, size, real, real_features, first_vae = {}, None, None, {}, None
    for name, spec in models.items():
        generator = load_generator(spec, device=device)
        size = size or generator.info["image_size"]
        real = real if real is not None else load_split_images(size, "heldout", root, split)
        first_vae = first_vae or (generator.info["vae"], generator.vae)
        fake = generate_with(generator, n, seed=seed, size=size)
        results[name] = {"generator": spec, "vae": generator.info["vae"], "steps": training_steps(generator.info),
                         **evaluate_generation(fake, real, feature, real_features=real_features)}
    train = load_split_images(size, "train", root, split, limit=n)
    results["train split (reference)"] = {"generator": "real training images", "vae": "-", "steps": None,
                                          **evaluate_generation(train, real, feature, real_features=real_features)}
    if first_vae is not None:
        vae_name, vae = first_vae
        round_trip = reconstruct(vae, train.to(device), RECONSTRUCT_BATCH).cpu()
        results["train split through the VAE (reference)"] = {
            "generator": f"real training images encoded and decoded by {vae_name}", "vae": vae_name, "steps": None,
            **evaluate_generation(round_trip, real, feature, real_features=real_features)}
    return {"n_generated": n, "seed": seed, "image_size": size, "features": FD_LABEL,
            "feature_backgrounds": list(FEATURE_BACKGROUNDS),
            "device": machine_name(device), "models": results}


def read_results(path: str | Path | None = None) -> dict:
    """A written ``generation.json`` (default: the committed one)."""
    path = Path(path) if path is not None else results_dir() / "generation.json"
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no generation results; run `bash scripts/generation_gpu_run.sh` on a GPU")
    return json.loads(path.read_text())


def results_markdown(report: dict, command: str) -> str:
    """The comparison as a Markdown table (FD/KID means over the feature backgrounds) with the command and device."""
    backgrounds = ", ".join(report.get("feature_backgrounds", FEATURE_BACKGROUNDS))
    lines = ["# Generation: generated vs held-out real transparent images", "",
             f"Command: `{command}`  ", f"Device: {report['device']}; {report['n_generated']} samples per model, seed "
             f"{report['seed']}, {report['image_size']} px; FD and KID averaged over composites on {backgrounds}.", "",
             "| model | VAE | steps | FD-VGG16 | KID-VGG16 ×10³ | FID (Inception) | transparent % | soft % | opaque % |",
             "|---|---|---|---|---|---|---|---|---|"]
    real_alpha = None
    for name, r in report["models"].items():
        m = r["vgg16"]["mean"]
        inc = f"{r['inception']['mean']['fd']:.2f}" if r["inception"] else "unavailable"
        a = r["alpha"]["generated"]
        real_alpha = r["alpha"]["real"]
        lines.append(f"| {name} | {r['vae']} | {r['steps'] or '-'} | {m['fd']:.2f} | {1e3 * m['kid']:.2f} ± {1e3 * m['kid_std']:.2f} | "
                     f"{inc} | {100 * a['transparent']:.1f} | {100 * a['soft']:.1f} | {100 * a['opaque']:.1f} |")
    lines.append(f"| held-out real images | - | - | - | - | - | {100 * real_alpha['transparent']:.1f} | "
                 f"{100 * real_alpha['soft']:.1f} | {100 * real_alpha['opaque']:.1f} |")
    notes = list(report.get("notes", [])) + sorted({note for r in report["models"].values() for note in r["notes"]})
    lines += ["", f"FD-VGG16 / KID-VGG16: {FD_LABEL} — Fréchet and kernel distances on ImageNet VGG16 conv5_3 features "
              "(global average pool); lower is better; comparable between these rows, not with published FIDs. "
              "Alpha columns: share of pixels with α < 0.01 / in between / α > 0.99.", ""]
    lines += [f"- {note}" for note in notes]
    return "\n".join(lines) + "\n"


def write_results(report: dict, json_path: str | Path, md_path: str | Path, command: str) -> None:
    """Write the report as JSON (with the command) and as the Markdown table, atomically."""
    report = {**report, "command": command}
    atomic_write(json_path, lambda tmp: Path(tmp).write_text(json.dumps(report, indent=1) + "\n"))
    atomic_write(md_path, lambda tmp: Path(tmp).write_text(results_markdown(report, command)))
