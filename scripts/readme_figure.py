"""Draw the README's picture, ``docs/alphavae.png``: held-out clip art (the shipped sample's images of the held-out
split, which no model trained on), its reconstruction by ``embedded-rgba``, and samples of ``embedded-generator``, all
on checkerboards, with the shipped weights on the CPU (≈ 20 s).

Run from the repository root: ``python scripts/readme_figure.py``.
"""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import torch  # noqa: E402

from alphavae.training.data import RGBAFolder  # noqa: E402
from alphavae.training.splits import read_split  # noqa: E402
from alphavae.paths import sample_dir, shipped_config  # noqa: E402
from alphavae.generation.sampler import generate  # noqa: E402
from alphavae.notebook.plotting import show_rgba  # noqa: E402
from alphavae.vae.reconstruct import reconstruct  # noqa: E402
from alphavae.vae.loading import load_vae  # noqa: E402

N = 4
OUT = Path("docs/alphavae.png")


def main() -> None:
    heldout = {Path(p).stem for p in read_split(shipped_config("split-rgba-train"))["heldout"]}
    files = [p for p in RGBAFolder(sample_dir()).files if p.stem in heldout][:N]
    sample = RGBAFolder(sample_dir(), size=128, files=files)
    real = sample.load_all()
    with torch.no_grad():
        recon = reconstruct(load_vae("embedded-rgba"), real)
    generated = torch.nn.functional.interpolate(generate("embedded-generator", n=N, seed=0, device="cpu"), size=128,
                                                mode="bilinear", antialias=True)
    titles = ["held-out clip art"] + [""] * (N - 1) + ["embedded-rgba reconstruction"] + [""] * (N - 1) \
        + ["embedded-generator samples"] + [""] * (N - 1)
    fig = show_rgba(list(real) + list(recon) + list(generated), titles=titles, ncols=N, panel=1.4)
    OUT.parent.mkdir(exist_ok=True)
    fig.savefig(OUT, dpi=110, bbox_inches="tight")
    print(f"wrote {OUT} ({OUT.stat().st_size / 1e3:.0f} kB)")


if __name__ == "__main__":
    main()
