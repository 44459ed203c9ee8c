"""Notebook 03 §8: every setting the text suggests trying in the loss-weight panel does what the text promises.

Runs the panel's pure function (:func:`~alphavae.notebook.loss_panel.finetune_demo`) the way one click does in
fast mode — the shipped ``embedded`` VAE, 8 sample images at 48 px, 30 steps of batch 4 at lr 5e-4, seed 0 —
once with the paper's weights and once per :data:`~alphavae.notebook.loss_panel.SUGGESTIONS` entry.
"""

from __future__ import annotations

from dataclasses import replace

import matplotlib

matplotlib.use("Agg")

import pytest  # noqa: E402
import torch  # noqa: E402

from alphavae.losses import LossWeights  # noqa: E402
from alphavae.metric.backbones import lpips_or_reason  # noqa: E402
from alphavae.notebook.loss_panel import SUGGESTIONS, finetune_demo  # noqa: E402
from alphavae.paths import sample_dir  # noqa: E402
from alphavae.presets import FAST  # noqa: E402
from alphavae.training.data import RGBAFolder  # noqa: E402
from alphavae.vae.loading import load_vae  # noqa: E402

pytestmark = pytest.mark.usefixtures("one_thread")
LR = 5e-4  # notebook 03's LR


@pytest.fixture(scope="module")
def runs():
    rgb = load_vae("embedded")
    data = RGBAFolder(sample_dir(), size=FAST.train_size)
    images = torch.stack([data[i] for i in range(FAST.n_images)])
    lpips_model = lpips_or_reason("alex")[0]

    def run(weights):
        demo = finetune_demo(rgb, images, weights, steps=FAST.steps, lr=LR, batch_size=FAST.batch_size, seed=0,
                             lpips_model=lpips_model)
        return demo, demo.scores()

    paper = LossWeights()
    return {"paper": run(paper)} | {s.label: run(replace(paper, **s.changes)) for s in SUGGESTIONS}


def test_the_suggestions_are_the_ones_checked_here():
    assert [s.label for s in SUGGESTIONS] == ["naive MSE instead of ABMSE", "prior KL 1 (10⁶ × the paper's)",
                                              "GAN from step 10", "blend p = 1"]


def test_paper_weights_learn_alpha(runs):
    _, paper = runs["paper"]
    assert paper["alpha_error_before"] > 0.6 and paper["alpha_error"] < 0.8 * paper["alpha_error_before"]


def test_naive_mse_learns_alpha_faster(runs):
    assert runs["naive MSE instead of ABMSE"][1]["alpha_error"] < runs["paper"][1]["alpha_error"] - 0.1


def test_a_large_prior_kl_hurts_the_reconstruction(runs):
    assert runs["prior KL 1 (10⁶ × the paper's)"][1]["colour_error"] > 1.3 * runs["paper"][1]["colour_error"]


def test_gan_from_step_10_appears_in_the_curves(runs):
    history = runs["GAN from step 10"][0].history
    with_gan = [int(h["step"]) for h in history if "loss/adversarial" in h]
    assert with_gan == list(range(10, FAST.steps)) and all("disc/loss" in h for h in history[10:])
    assert not any("loss/adversarial" in h for h in runs["paper"][0].history)  # the paper's step 4000: never here


def test_blend_p_1_does_not_learn_alpha(runs):
    assert runs["blend p = 1"][1]["alpha_error"] > 0.6
