"""How good are generated transparent images? Compare them with held-out real ones, composited over backgrounds.

Three kinds of numbers:

* **Alpha statistics** — the share of pixels that are transparent (α < 0.01), soft (in between) and opaque
  (α > 0.99), generated vs real. A generator on a VAE that ignores alpha shows ~100 % opaque.
* **FID / KID with Inception** (torchmetrics) over the composites on each of the 9 backgrounds, *only* where
  ``torch-fidelity`` and the real Inception weights are present (``torch.hub`` cache). Nothing is downloaded;
  otherwise they are reported as unavailable, with the reason.
* **The offline substitute — not FID**: the same Fréchet distance (``FD-VAE``) and kernel distance
  (``KID-VAE``, unbiased MMD², polynomial kernel) computed by torchmetrics on features of the project's own
  pretrained RGB VAE encoder (``embedded``): mean and std over positions of its last activation map. It ranks
  models trained on the same data; its values are not comparable with published FIDs.

``python -m alphavae.generation.evaluate --model main=DIR --model naive_mse=DIR ...`` samples every generator, scores
it and writes ``results/generation.json`` + ``.md`` (with the command and device).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import torch
from torch import nn
from torchmetrics.image.fid import FrechetInceptionDistance
from torchmetrics.image.kid import KernelInceptionDistance

from alphavae.blending import composite, resolve_backgrounds, to_vae_range
from alphavae.training.data import RGBAFolder
from alphavae.paths import results_dir, shared_data_dir
from alphavae.generation.sampler import generate_with, load_generator
from alphavae.imageio import atomic_write
from alphavae.training.splits import read_split, split_files
from alphavae.vae.loading import load_vae, torch_device, weights_sha256

#: α below this is "transparent", above ``OPAQUE`` "opaque", in between "soft".
TRANSPARENT, OPAQUE = 0.01, 0.99
#: torch-fidelity's Inception weights as ``torch.hub`` caches them.
INCEPTION_FILE = "weights-inception-2015-12-05-6726825d.pth"


def alpha_statistics(rgba: torch.Tensor, transparent: float = TRANSPARENT, opaque: float = OPAQUE) -> dict[str, float]:
    """Shares of pixels (over all images) with α < ``transparent``, in between (soft), and α > ``opaque``."""
    alpha = rgba[:, 3].float()
    t = (alpha < transparent).float().mean().item()
    o = (alpha > opaque).float().mean().item()
    return {"transparent": t, "soft": 1.0 - t - o, "opaque": o}


class EncoderFeatures(nn.Module):
    """Features from an RGB VAE encoder for Fréchet/kernel distances: per-channel mean and std of its last
    activation map (before ``conv_out``). Input: RGB ``(B, 3, H, W)`` in [0, 1]. Not Inception: not FID."""

    def __init__(self, vae):
        super().__init__()
        self.encoder = vae.encoder
        self.num_features = 2 * self.encoder.conv_norm_out.num_channels

    @torch.no_grad()
    def forward(self, rgb: torch.Tensor) -> torch.Tensor:
        enc = self.encoder
        h = enc.conv_in(to_vae_range(rgb).to(enc.conv_in.weight.dtype))
        for block in enc.down_blocks:
            h = block(h)
        h = enc.conv_act(enc.conv_norm_out(enc.mid_block(h))).float()
        return torch.cat([h.mean(dim=(2, 3)), h.std(dim=(2, 3))], dim=1)


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


def evaluate_generation(fake: torch.Tensor, real: torch.Tensor, feature: nn.Module, backgrounds=None,
                        inception: bool | None = None, kid_subset_size: int = 100,
                        real_features: dict[str, torch.Tensor] | None = None) -> dict:
    """Score generated RGBA images ``fake`` against real ones: alpha statistics, and FD/KID per background.

    ``feature``: an :class:`EncoderFeatures` (the substitute). ``inception=None`` adds Inception FID/KID when
    :func:`inception_unavailable_reason` allows, else a note says why they are missing. ``real_features``
    (background → features of ``real``'s composites, filled in on first use) lets several models share them.
    """
    result = {"n_generated": len(fake), "n_real": len(real),
              "alpha": {"generated": alpha_statistics(fake), "real": alpha_statistics(real)},
              "vae_features": {}, "inception": None, "notes": []}
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
        result["vae_features"][name] = feature_distances(real_features[name], fake_features, kid_subset_size)
        if use_inception:
            inception_scores[name] = distribution_distances(composite(real, rgb), composite(fake, rgb), 2048, kid_subset_size)
    result["vae_features"]["mean"] = _mean_scores(result["vae_features"])
    if inception_scores:
        inception_scores["mean"] = _mean_scores(inception_scores)
        result["inception"] = inception_scores
    return result


def _mean_scores(per_background: dict[str, dict[str, float]]) -> dict[str, float]:
    keys = next(iter(per_background.values())).keys()
    return {k: sum(s[k] for s in per_background.values()) / len(per_background) for k in keys}


def load_split_images(size: int, which: str = "heldout", root: str | Path | None = None,
                      split: str | Path | None = None, limit: int | None = None) -> torch.Tensor:
    """The held-out (or training) images of the shared split as ``(N, 4, size, size)`` — as the generator sees them."""
    from alphavae.generation.train import DEFAULT_SPLIT

    root = Path(root) if root else shared_data_dir() / "rgba-train"
    train, heldout = split_files(root, read_split(split or DEFAULT_SPLIT))
    files = heldout if which == "heldout" else train
    if limit is not None:
        files = files[:: max(1, len(files) // limit)][:limit]
    dataset = RGBAFolder(root, size=size, files=files)
    return torch.stack([dataset[i] for i in range(len(dataset))])


def compare_generators(models: dict[str, str], n: int = 512, seed: int = 0, device: str = "auto",
                       feature_vae: str = "embedded", root: str | None = None, split: str | None = None) -> dict:
    """Sample ``n`` images from each generator folder and score them against the held-out split.

    Adds a ``train split (reference)`` row: real training images scored the same way — the value a
    generator that reproduced the training distribution exactly would get.
    """
    device = torch_device(device)
    feature = EncoderFeatures(load_vae(feature_vae, device=device)).eval()
    results, size, real, real_features = {}, None, None, {}
    for name, spec in models.items():
        generator = load_generator(spec, device=device)
        size = size or generator.info["image_size"]
        real = real if real is not None else load_split_images(size, "heldout", root, split)
        fake = generate_with(generator, n, seed=seed, size=size)
        results[name] = {"generator": spec, "vae": generator.info["vae"], "steps": generator.info.get("steps_done"),
                         **evaluate_generation(fake, real, feature, real_features=real_features)}
    train = load_split_images(size, "train", root, split, limit=n)
    results["train split (reference)"] = {"generator": "real training images", "vae": "-", "steps": None,
                                          **evaluate_generation(train, real, feature, real_features=real_features)}
    return {"n_generated": n, "seed": seed, "image_size": size, "feature_vae": feature_vae,
            "feature_vae_sha256": weights_sha256(feature_vae),
            "device": torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu", "models": results}


def read_results(path: str | Path | None = None) -> dict:
    """A written ``generation.json`` (default: the committed one)."""
    path = Path(path) if path is not None else results_dir() / "generation.json"
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no generation results; run `bash scripts/generation_gpu_run.sh` on a GPU")
    return json.loads(path.read_text())


def results_markdown(report: dict, command: str) -> str:
    """The comparison as a Markdown table (means over the 9 backgrounds) with the command and device."""
    lines = ["# Generation: generated vs held-out real transparent images", "",
             f"Command: `{command}`  ", f"Device: {report['device']}; {report['n_generated']} samples per model, seed "
             f"{report['seed']}, {report['image_size']} px; means over the 9 backgrounds.", "",
             "| model | VAE | steps | KID-VAE ×10³ | FD-VAE | FID (Inception) | transparent % | soft % | opaque % |",
             "|---|---|---|---|---|---|---|---|---|"]
    real_alpha = None
    for name, r in report["models"].items():
        m = r["vae_features"]["mean"]
        inc = f"{r['inception']['mean']['fd']:.2f}" if r["inception"] else "unavailable"
        a = r["alpha"]["generated"]
        real_alpha = r["alpha"]["real"]
        lines.append(f"| {name} | {r['vae']} | {r['steps'] or '-'} | {1e3 * m['kid']:.2f} ± {1e3 * m['kid_std']:.2f} | "
                     f"{m['fd']:.2f} | {inc} | {100 * a['transparent']:.1f} | {100 * a['soft']:.1f} | {100 * a['opaque']:.1f} |")
    lines.append(f"| held-out real images | - | - | - | - | - | {100 * real_alpha['transparent']:.1f} | "
                 f"{100 * real_alpha['soft']:.1f} | {100 * real_alpha['opaque']:.1f} |")
    notes = list(report.get("notes", [])) + sorted({note for r in report["models"].values() for note in r["notes"]})
    lines += ["", "KID-VAE / FD-VAE: Fréchet and kernel distances on features of the project's pretrained RGB VAE "
              f"encoder (`{report['feature_vae']}`), the offline substitute for FID — **not FID**; lower is better. "
              "Alpha columns: share of pixels with α < 0.01 / in between / α > 0.99.", ""]
    lines += [f"- {note}" for note in notes]
    return "\n".join(lines) + "\n"


def write_results(report: dict, json_path: str | Path, md_path: str | Path, command: str) -> None:
    """Write the report as JSON (with the command) and as the Markdown table, atomically."""
    report = {**report, "command": command}
    atomic_write(json_path, lambda tmp: Path(tmp).write_text(json.dumps(report, indent=1) + "\n"))
    atomic_write(md_path, lambda tmp: Path(tmp).write_text(results_markdown(report, command)))


def main(argv: list[str] | None = None) -> int:
    """``python -m alphavae.generation.evaluate --model NAME=SPEC [--model ...] --json FILE --md FILE``"""
    parser = argparse.ArgumentParser(prog="python -m alphavae.generation.evaluate", description=__doc__.splitlines()[0],
                                     epilog="example: python -m alphavae.generation.evaluate --model main=embedded-generator "
                                            "--json results/generation.json --md results/generation.md")
    parser.add_argument("--model", action="append", required=True, metavar="NAME=SPEC", help="a generator to score (repeat)")
    parser.add_argument("--n", type=int, default=512, help="samples per generator")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--device", default="auto")
    parser.add_argument("--json", required=True)
    parser.add_argument("--md", required=True)
    parser.add_argument("--command", help="the command to record (default: this one)")
    parser.add_argument("--note", action="append", default=[], help="a line to add under the table (repeat)")
    args = parser.parse_args(argv)
    models = dict(m.split("=", 1) for m in args.model)
    report = compare_generators(models, n=args.n, seed=args.seed, device=args.device)
    report["notes"] = args.note
    command = args.command or "python -m alphavae.generation.evaluate " + " ".join(sys.argv[1:] if argv is None else argv)
    write_results(report, args.json, args.md, command)
    print(results_markdown(report, command))
    return 0


if __name__ == "__main__":
    sys.exit(main())
