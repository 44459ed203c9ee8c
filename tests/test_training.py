"""The trainer's mechanics on the CPU with a tiny VAE: exact resume after a SIGKILL, NaN stop, config errors,
two processes (gloo) ending with identical weights. A tiny freshly initialised AutoencoderKL stands in for the
pretrained one: these tests check plumbing, not what the model learns (notebook 04 and the GPU ablation do).
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from diffusers import AutoencoderKL
from safetensors.torch import load_file

from alphavae.training.checkpoint import checkpoint_dirs, latest_checkpoint
from alphavae.cli import main as cli_main
from alphavae.losses import AlphaVAEObjective
from alphavae.training.config import ConfigError, config_from_dict, load_config
from alphavae.training.data import StepBatchSampler
from alphavae.training.loop import read_log
from alphavae.training.trainer import TrainingDiverged, train

ROOT = Path(__file__).resolve().parents[1]
ENV = {**os.environ, "HF_HUB_OFFLINE": "1", "TQDM_DISABLE": "1", "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"}


pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def tiny_vae(tmp_path_factory) -> Path:
    """A tiny RGB AutoencoderKL folder (random init, seeded)."""
    torch.manual_seed(0)
    vae = AutoencoderKL(in_channels=3, out_channels=3, block_out_channels=(8, 16), layers_per_block=1, latent_channels=4,
                        norm_num_groups=8, down_block_types=("DownEncoderBlock2D",) * 2,
                        up_block_types=("UpDecoderBlock2D",) * 2, sample_size=32)
    path = tmp_path_factory.mktemp("vae") / "tiny"
    vae.save_pretrained(path)
    return path


def tiny_config(vae: Path, **changes) -> dict:
    """A config of a few 32-px steps on the shipped sample, GAN from step 2 so every part runs."""
    raw = {"vae": str(vae), "data": "sample", "split": None, "image_size": 32, "steps": 8, "batch_size": 4,
           "lr": 1e-3, "warmup_steps": 1, "loss": {"disc_start": 2, "perceptual": 0.0}, "device": "cpu", "num_workers": 0,
           "log_every": 1, "sample_every": 4, "checkpoint_every": 3, "keep_checkpoints": 2, "ema_decay": 0.9}
    raw.update(changes)
    return raw


def weights_of(run: Path) -> dict[str, torch.Tensor]:
    return load_file(run / "model" / "diffusion_pytorch_model.safetensors")


def assert_same_weights(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> None:
    assert a.keys() == b.keys()
    for key in a:
        assert torch.equal(a[key], b[key]), key


def test_sampler_order_is_a_function_of_the_step():
    s = StepBatchSampler(30, 4, steps=20, seed=3)
    batches = list(s)
    assert batches == [s.global_indices(k) for k in range(20)]
    assert list(StepBatchSampler(30, 4, steps=20, seed=3, start_step=11)) == batches[11:]
    # every epoch (7 batches of 4 out of 30) visits distinct images, and two epochs are ordered differently
    epoch0 = sum(batches[:7], [])
    assert len(set(epoch0)) == 28 and sum(batches[7:14], []) != epoch0
    # two processes split each global batch between them
    r0 = list(StepBatchSampler(30, 4, steps=5, seed=3, rank=0, world_size=2))
    r1 = list(StepBatchSampler(30, 4, steps=5, seed=3, rank=1, world_size=2))
    assert [sorted(a + b) for a, b in zip(r0, r1)] == [sorted(b) for b in batches[:5]]


def test_a_resume_on_another_image_list_is_refused(tiny_vae, tmp_path):
    """The batch order of an exact resume depends on the training images: a checkpoint records their list, and a
    resume whose data, split, max_images or extra_data give another list is a one-line error naming the checkpoint."""
    config = config_from_dict(tiny_config(tiny_vae, steps=6, max_images=12))
    train(config, tmp_path / "run", stop_after=3)
    with pytest.raises(ConfigError) as err:
        train(config_from_dict(tiny_config(tiny_vae, steps=6, max_images=10)), tmp_path / "run", resume=True)
    assert "step-00000003" in str(err.value) and "another list of images" in str(err.value) and "\n" not in str(err.value)
    assert train(config, tmp_path / "run", resume=True).steps == 6  # the same list resumes


def test_kill_and_resume_gives_the_same_weights(tiny_vae, tmp_path, capsys):
    raw = tiny_config(tiny_vae, steps=16, checkpoint_every=4)
    cfg_file = tmp_path / "cfg.json"
    cfg_file.write_text(json.dumps(raw))
    config = load_config(cfg_file)
    full = train(config, tmp_path / "full")

    run = tmp_path / "killed"
    cmd = [sys.executable, "-m", "alphavae", "train", "--config", str(cfg_file), "--output", str(run)]
    proc = subprocess.Popen(cmd, env=ENV, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    checkpoints, deadline = run / "checkpoints", time.time() + 120
    while proc.poll() is None and time.time() < deadline:  # stop it while it writes a checkpoint after a complete one
        if latest_checkpoint(checkpoints) is not None and list(checkpoints.glob(".tmp-step-*")):
            os.kill(proc.pid, signal.SIGSTOP)
            os.waitpid(proc.pid, os.WUNTRACED)  # returns once it is really stopped
            if list(checkpoints.glob(".tmp-step-*")):
                break  # (a write that was renamed before the stop took effect: let it go, try the next)
            os.kill(proc.pid, signal.SIGCONT)
        time.sleep(0.001)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    killed_at, half_written = latest_checkpoint(checkpoints), list(checkpoints.glob(".tmp-step-*"))
    assert killed_at is not None and len(half_written) == 1 and not (run / "model").exists(), \
        "the run must be killed mid-way, while writing a checkpoint after a complete one"
    # the half-written checkpoint is newer than the one resumed from, and is not taken for a checkpoint
    assert half_written[0].name.removeprefix(".tmp-") > killed_at.name and killed_at == checkpoint_dirs(checkpoints)[-1]

    capsys.readouterr()
    assert cli_main(["train", "--config", str(cfg_file), "--output", str(run), "--resume"]) == 0
    # it continued from the checkpoint (a fresh start with the same seed would also end with these weights)
    assert f"resumed from {killed_at} (step {int(killed_at.name.split('-')[1])})" in capsys.readouterr().out
    assert_same_weights(weights_of(full.output), weights_of(run))
    log = read_log(run)
    assert [entry["step"] for entry in log] == list(range(1, 17))  # no step logged twice after the resume
    assert [entry["total"] for entry in log] == [entry["total"] for entry in read_log(full.output)]
    assert len(checkpoint_dirs(run / "checkpoints")) <= 2 and not list((run / "checkpoints").glob(".tmp-*"))


def test_outputs_fp16_copy_and_notes(tiny_vae, tmp_path):
    raw = tiny_config(tiny_vae, steps=4, lpips_net="alex", loss={"disc_start": 2})  # every term on, real LPIPS-Alex
    result = train(config_from_dict(raw), tmp_path / "run")
    fp32, fp16 = weights_of(tmp_path / "run"), load_file(result.fp16_dir / "diffusion_pytorch_model.safetensors")
    assert all(t.dtype == torch.float16 for t in fp16.values())
    assert all(torch.allclose(fp32[k], fp16[k].float(), rtol=1e-3, atol=1e-4) for k in fp32)
    assert json.loads((result.fp16_dir / "config.json").read_text())["in_channels"] == 4
    info = json.loads((tmp_path / "run" / "run.json").read_text())
    assert info["notes"] == [] and result.notes == []  # no term skipped
    log = read_log(tmp_path / "run")
    assert {"loss/reconstruction", "loss/perceptual", "loss/prior_kl", "loss/reference_kl", "lr", "total"} <= log[0].keys()
    assert "disc/loss" in log[-1] and "loss/adversarial" in log[-1]  # the GAN runs from disc_start = 2
    assert list((tmp_path / "run" / "tensorboard").rglob("events.out.tfevents.*"))


def test_nan_stops_naming_step_and_term(tiny_vae, tmp_path, monkeypatch):
    original = AlphaVAEObjective.reconstruction_term
    calls = {"n": 0}

    def poisoned(self, pred, target):
        calls["n"] += 1
        value = original(self, pred, target)
        return value * float("nan") if calls["n"] == 3 else value

    monkeypatch.setattr(AlphaVAEObjective, "reconstruction_term", poisoned)
    with pytest.raises(TrainingDiverged, match=r"step 2: loss term 'reconstruction' is nan"):
        train(config_from_dict(tiny_config(tiny_vae)), tmp_path / "run")
    assert not (tmp_path / "run" / "model").exists()


def test_config_errors_name_the_key_and_file(tmp_path, capsys):
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps({"steps": 10, "lerning_rate": 1e-4}))
    with pytest.raises(ConfigError, match=r"bad\.json.*'lerning_rate'"):
        load_config(bad)
    assert cli_main(["train", "--config", str(bad), "--output", str(tmp_path / "o")]) == 2
    err = capsys.readouterr().err
    assert "lerning_rate" in err and "bad.json" in err and len(err.strip().splitlines()) == 1
    with pytest.raises(ConfigError, match="'steps' must be int"):
        config_from_dict({"steps": "many"}, "x.json")
    with pytest.raises(ConfigError, match="'batch_size' must be > 0"):
        config_from_dict({"batch_size": 0}, "x.json")
    with pytest.raises(ConfigError, match=r"x\.json.*'loss\.disk_start'"):
        config_from_dict({"loss": {"disk_start": 5}}, "x.json")


def test_shipped_configs_load():
    for path in sorted((ROOT / "configs").glob("*.json")):
        if path.name.startswith(("split-", "ablation")):
            continue
        config = load_config(path)
        if config.trainable == "decoder":  # a fine-tune of a trained RGBA VAE: any discriminator is fresh, from step 0
            assert config.loss_weights().disc_start == 0 and config.vae == "embedded-rgba", path
        elif path.stem not in ("toy", "paper"):  # short runs keep the paper's proportions of warm-up and GAN start
            assert abs(config.loss_weights().disc_start / config.steps - 4000 / 30000) < 0.01, path


def test_a_perceptual_weight_without_lpips_weights_is_refused_not_skipped(tiny_vae, tmp_path, monkeypatch):
    monkeypatch.setenv("ALPHAVAE_CACHE", str(tmp_path / "empty-cache"))
    with pytest.raises(ConfigError, match=r"loss\.perceptual is 0\.5 but LPIPS-vgg needs ImageNet weights: run `alphavae weights fetch`"):
        train(config_from_dict(tiny_config(tiny_vae, loss={})), tmp_path / "run")
    assert not (tmp_path / "run" / "checkpoints").exists()


DDP_SCRIPT = """
import os, sys, torch
from alphavae.training.config import config_from_dict
from alphavae.training.trainer import train
import json
raw = json.loads(sys.argv[1]); out = sys.argv[2]
result = train(config_from_dict(raw), out, resume=True)
rank = int(os.environ["RANK"])
state = {**{"vae." + k: v for k, v in result.model.state_dict().items()},
         **{"disc." + k: v for k, v in result.discriminator.state_dict().items()}}
torch.save(state, f"{out}/rank{rank}.pt")
"""


def test_two_processes_gloo_end_with_identical_weights(tiny_vae, tmp_path):
    raw = tiny_config(tiny_vae, steps=4, checkpoint_every=2, ema_decay=None)
    out = tmp_path / "ddp"
    out.mkdir()
    script = tmp_path / "ddp.py"
    script.write_text(DDP_SCRIPT)
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--master_port", "29517",
           str(script), json.dumps(raw), str(out)]
    done = subprocess.run(cmd, env={**ENV, "OMP_NUM_THREADS": "1"}, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    r0, r1 = torch.load(out / "rank0.pt"), torch.load(out / "rank1.pt")
    assert_same_weights(r0, r1)
    start = load_file(tiny_vae / "diffusion_pytorch_model.safetensors")
    assert not torch.equal(r0["vae.decoder.conv_in.weight"], start["decoder.conv_in.weight"])  # it did train
    info = json.loads((out / "run.json").read_text())
    assert info["processes"] == 2


def test_two_processes_train_like_one_process_on_the_same_global_batch(tiny_vae, tmp_path):
    """Same global batch, same per-sample random numbers (blend augmentation, posterior noise, latent noise), gradients
    averaged by DDP: the losses of every step agree and so do the weights. The latent noise's spread is the whole
    batch's, averaged over the processes (the decoder fine-tune's terms are on, method.md §3.9). The discriminator is off (on a CPU,
    BatchNorm statistics cannot be synchronised over gloo; on GPUs the trainer uses SyncBatchNorm).
    Weight tolerance: 1e-5 for kernels (they move by ~1e-3 per step); biases within 2·lr per step, because a
    bias right before a GroupNorm has a gradient that is zero in exact arithmetic, and Adam scales its
    round-off, which differs between one sum and two averaged halves, up to a full learning-rate step."""
    raw = tiny_config(tiny_vae, steps=4, checkpoint_every=4, ema_decay=None,
                      loss={"disc_start": 100, "perceptual": 0.0, "latent_noise": 0.3, "alpha_l1": 0.1})
    one = train(config_from_dict(raw), tmp_path / "one")
    out = tmp_path / "two"
    out.mkdir()
    script = tmp_path / "ddp.py"
    script.write_text(DDP_SCRIPT.replace('**{"disc." + k: v for k, v in result.discriminator.state_dict().items()}', ""))
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--master_port", "29519",
           str(script), json.dumps(raw), str(out)]
    done = subprocess.run(cmd, env=ENV, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    a, b = read_log(one.output), read_log(out)
    assert len(a) == len(b) == 4
    for x, y in zip(a, b):
        for key in x:
            if key.startswith(("loss/", "weighted/", "total")):
                assert y[key] == pytest.approx(x[key], rel=1e-4), (x["step"], key)
    two = torch.load(out / "rank0.pt")
    for key, value in one.model.state_dict().items():
        atol = 1e-5 if value.dim() > 1 else 2 * raw["lr"] * raw["steps"]
        assert torch.allclose(two[f"vae.{key}"], value, rtol=0, atol=atol), key


def test_gradient_checkpointing_changes_memory_not_results(tiny_vae, tmp_path):
    plain = train(config_from_dict(tiny_config(tiny_vae, steps=3, ema_decay=None)), tmp_path / "plain")
    ckpt = train(config_from_dict(tiny_config(tiny_vae, steps=3, ema_decay=None, gradient_checkpointing=True)),
                 tmp_path / "ckpt")
    assert ckpt.model.is_gradient_checkpointing
    a, b = read_log(plain.output), read_log(ckpt.output)
    assert [e["total"] for e in a] == pytest.approx([e["total"] for e in b], rel=1e-4)
    for key, value in weights_of(plain.output).items():
        assert torch.allclose(value, weights_of(ckpt.output)[key], atol=1e-5), key


@pytest.fixture(scope="module")
def tiny_rgba(tiny_vae, tmp_path_factory) -> Path:
    """The tiny VAE converted to RGBA and trained a few steps: an RGBA VAE to fine-tune."""
    run = tmp_path_factory.mktemp("rgba") / "run"
    train(config_from_dict(tiny_config(tiny_vae, steps=4, ema_decay=None)), run)
    return run / "model"


def test_a_decoder_only_run_keeps_the_encoder_and_resumes_exactly(tiny_rgba, tmp_path):
    """``trainable: decoder`` with the fine-tune's alpha L1 and latent noise (method.md §3.9): the encoder and its
    quant_conv come out bit for bit as they went in (so the latent space, and a generator trained on it, stay), the
    decoder moves, both KL terms are off and noted, and a run split in two ends with the same weights."""
    loss = {"disc_start": 2, "perceptual": 0.0, "reference_kl": 0.0, "alpha_l1": 0.1, "latent_noise": 0.2}
    raw = tiny_config(tiny_rgba, trainable="decoder", steps=6, loss=loss)
    full = train(config_from_dict(raw), tmp_path / "full")
    before, after = load_file(tiny_rgba / "diffusion_pytorch_model.safetensors"), weights_of(tmp_path / "full")
    frozen = [k for k in before if k.startswith(("encoder.", "quant_conv."))]
    assert frozen and all(torch.equal(before[k], after[k]) for k in frozen)
    assert max(float((before[k] - after[k]).abs().max()) for k in before if k.startswith("decoder.")) > 1e-4
    assert full.notes == ["trainable: decoder: prior_kl off (they reach only the frozen encoder)",
                          "perceptual term off: weight 0"]
    log = read_log(tmp_path / "full")
    assert "loss/alpha_l1" in log[0] and "loss/prior_kl" not in log[0] and "loss/adversarial" in log[-1]
    train(config_from_dict(raw), tmp_path / "split", stop_after=3)
    train(config_from_dict(raw), tmp_path / "split", resume=True)
    assert_same_weights(after, weights_of(tmp_path / "split"))
    noiseless = train(config_from_dict({**raw, "loss": {**loss, "latent_noise": 0.0}}), tmp_path / "noiseless")
    assert read_log(noiseless.output)[0]["total"] != log[0]["total"]  # the decoder did see the noise


def test_an_rgba_vae_with_the_reference_kl_on_or_an_rgb_decoder_fine_tune_is_refused(tiny_vae, tiny_rgba, tmp_path):
    with pytest.raises(ConfigError, match="reference_kl"):
        train(config_from_dict(tiny_config(tiny_rgba, loss={"perceptual": 0.0, "reference_kl": 1e-16})), tmp_path / "r")
    with pytest.raises(ConfigError, match="is RGB"):
        train(config_from_dict(tiny_config(tiny_vae, trainable="decoder")), tmp_path / "d")
