"""The step as CUDA graphs (``alphavae.training.graphs``) trains exactly as the eager step does.

On a CPU: the graphs' fixed-input path (``record=False``: the same copies into fixed tensors, the same phase
switch at ``disc_start``, schedules and EMA outside) gives bit-identical losses and weights to the eager step;
a capturable optimiser's checkpoint resumes an eager run and back (rate tensors ↔ numbers). On a GPU (skipped
without one): recorded and replayed graphs against the eager step from the same start, every term on, across
``disc_start``. Tolerance there: relative 1e-3 on every logged value and, on
each weight, 1e-2 of its largest change in the steps (bf16 autocast; cuDNN's backward kernels may sum in a
different order between calls).
"""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from diffusers import AutoencoderKL

from alphavae.training.checkpoint import load_checkpoint, save_checkpoint
from alphavae.training.config import ConfigError, config_from_dict
from alphavae.training.graphs import StepGraphs
from alphavae.training.optim import adamw, lr_schedule, settle_groups
from alphavae.training.trainer import build_setup, make_accelerator, read_logs, train_step, update, use_cuda_graphs

pytestmark = pytest.mark.usefixtures("one_thread")
STEPS = 7  # disc_start 3: three eager steps (the warm-up), then each phase's graph


@pytest.fixture(scope="module")
def tiny_vae(tmp_path_factory) -> Path:
    torch.manual_seed(0)
    vae = AutoencoderKL(in_channels=3, out_channels=3, block_out_channels=(8, 16), layers_per_block=1, latent_channels=4,
                        norm_num_groups=8, down_block_types=("DownEncoderBlock2D",) * 2,
                        up_block_types=("UpDecoderBlock2D",) * 2, sample_size=32)
    path = tmp_path_factory.mktemp("vae") / "tiny"
    vae.save_pretrained(path)
    return path


def config_for(vae: Path | str, **changes):
    raw = {"vae": str(vae), "data": "sample", "split": None, "image_size": 32, "steps": 50, "batch_size": 4,
           "lr": 1e-3, "warmup_steps": 2, "loss": {"disc_start": 3, "perceptual": 0.0}, "device": "cpu",
           "num_workers": 0, "ema_decay": 0.9, "cuda_graphs": "off"}
    raw.update(changes)
    return config_from_dict(raw)


def batches(n: int, size: int) -> list[torch.Tensor]:
    g = torch.Generator().manual_seed(3)
    out = []
    for _ in range(n):
        x = torch.rand(4, 4, size, size, generator=g)
        x[:, 3] = (x[:, 3] > 0.3).float() * x[:, 3]
        out.append(x)
    return out


def train_some(config, record: bool | None) -> tuple[list[dict[str, float]], dict[str, torch.Tensor]]:
    """STEPS steps from a seeded start: eager (``record`` None), or through StepGraphs (recording or not)."""
    acc = make_accelerator(config)
    torch.manual_seed(0)
    setup = build_setup(config, acc)
    if record is False:
        setup.graphs = StepGraphs(lambda *args: update(setup, *args), record=False)
    assert (setup.graphs is not None) == (record is not None)
    history = [read_logs(acc, train_step(setup, b, s)) for s, b in enumerate(batches(STEPS, config.image_size))]
    state = {f"vae.{k}": v.float().cpu() for k, v in setup.model.state_dict().items()}
    state.update({f"disc.{k}": v.float().cpu() for k, v in setup.discriminator.state_dict().items()})
    state.update({f"ema.{i}": p.float().cpu() for i, p in enumerate(setup.ema.shadow_params)})
    return history, state


def initial_state(config) -> dict[str, torch.Tensor]:
    torch.manual_seed(0)
    setup = build_setup(config, make_accelerator(config))
    return {f"vae.{k}": v.float().cpu() for k, v in setup.model.state_dict().items()}


def test_the_graphs_fixed_input_path_trains_exactly_as_the_eager_step(tiny_vae):
    eager, eager_state = train_some(config_for(tiny_vae), record=None)
    graphed, graphed_state = train_some(config_for(tiny_vae), record=False)
    assert "disc/loss" not in eager[2] and "disc/loss" in eager[3]  # both phases ran
    assert graphed == eager
    for key, value in eager_state.items():
        assert torch.equal(graphed_state[key], value), key


@pytest.mark.filterwarnings("ignore:Detected call of")
def test_a_capturable_optimisers_checkpoint_resumes_an_eager_one_and_back(tmp_path):
    def fresh(capturable: bool):
        torch.manual_seed(0)
        params = [torch.nn.Parameter(torch.randn(5))]
        optimizer = adamw(params, 1e-2, capturable=capturable)
        return params, optimizer, lr_schedule(optimizer, "cosine", 2, 10)

    params, optimizer, schedule = fresh(capturable=True)
    assert isinstance(optimizer.param_groups[0]["lr"], torch.Tensor)
    assert all(isinstance(lr, float) for lr in schedule.base_lrs)  # no read-back of the rate per step
    for _ in range(3):
        schedule.step()
    state = {"optimizer": optimizer.state_dict(), "scheduler": schedule.state_dict()}
    save_checkpoint(tmp_path, 3, lambda: state, {"rng": []}, 1, 0, lambda: None)
    shared, _ = load_checkpoint(tmp_path / "step-00000003", 0)
    for _ in range(4):
        schedule.step()
    uninterrupted = float(optimizer.param_groups[0]["lr"])
    assert 0 < uninterrupted < 1e-2 * 0.9  # on the cosine's way down
    for capturable in (False, True):
        _, resumed, resumed_schedule = fresh(capturable)
        resumed.load_state_dict(shared["optimizer"])
        resumed_schedule.load_state_dict(shared["scheduler"])
        settle_groups(resumed, capturable, resumed_schedule)
        group = resumed.param_groups[0]
        assert group["capturable"] is capturable
        assert isinstance(group["lr"], torch.Tensor) is capturable
        for _ in range(4):
            resumed_schedule.step()
        assert float(group["lr"]) == pytest.approx(uninterrupted, rel=1e-6)


def test_cuda_graphs_on_without_a_gpu_is_an_error_naming_the_key(tiny_vae):
    config = config_for(tiny_vae, cuda_graphs="on")
    with pytest.raises(ConfigError, match="cuda_graphs"):
        use_cuda_graphs(config, make_accelerator(config))
    assert not use_cuda_graphs(config_for(tiny_vae, cuda_graphs="auto"), make_accelerator(config))
    with pytest.raises(ConfigError, match="'cuda_graphs' must be one of"):
        config_for(tiny_vae, cuda_graphs="yes").validate()


@pytest.mark.skipif(not torch.cuda.is_available(), reason="recording CUDA graphs needs a GPU")
@pytest.mark.parametrize("compile_networks", ["off", "on"])
def test_recorded_graphs_train_as_the_eager_step_on_a_gpu(compile_networks):
    from alphavae.metric.backbones import lpips_or_reason
    nets = [net for net in ("alex", "vgg") if lpips_or_reason(net, "cuda")[0] is not None]  # what the call carried
    changes = dict(device="auto", image_size=64, lpips_net=(nets or ["alex"])[0], compile=compile_networks,
                   loss={"disc_start": 3, "perceptual": 0.5 if nets else 0.0})
    eager, eager_state = train_some(config_for("embedded", cuda_graphs="off", **changes), record=None)
    start = initial_state(config_for("embedded", cuda_graphs="off", **changes))
    graphed, graphed_state = train_some(config_for("embedded", cuda_graphs="on", **changes), record=True)
    for step, (a, b) in enumerate(zip(eager, graphed, strict=True)):
        assert set(a) == set(b), step
        for key in a:
            assert b[key] == pytest.approx(a[key], rel=1e-3, abs=1e-6), (step, key)
    for key, value in eager_state.items():
        moved = float((value - start[key]).abs().max()) if key in start else float(value.abs().max())
        assert torch.allclose(graphed_state[key], value, rtol=0, atol=1e-2 * moved + 1e-6), key


@pytest.mark.skipif(not torch.cuda.is_available(), reason="recording CUDA graphs needs a GPU")
def test_a_graphed_run_stopped_and_resumed_ends_as_an_uninterrupted_one_on_a_gpu(tmp_path):
    from alphavae.training.loop import read_log
    from alphavae.training.trainer import train
    from safetensors.torch import load_file
    config = config_for("embedded", device="auto", image_size=64, steps=12, cuda_graphs="on", checkpoint_every=5,
                        sample_every=4, log_every=1, loss={"disc_start": 4, "perceptual": 0.0})
    full = train(config, tmp_path / "full")
    assert any("CUDA graphs" in note for note in full.notes)
    stopped = train(config, tmp_path / "split", stop_after=7)  # checkpoint at 5 and at the stop, 7
    assert stopped.steps == 7
    train(config, tmp_path / "split", resume=True)
    a, b = (load_file(p / "model" / "diffusion_pytorch_model.safetensors") for p in (tmp_path / "full", tmp_path / "split"))
    for key, value in a.items():
        assert torch.allclose(b[key].float(), value.float(), rtol=1e-3, atol=1e-5), key
    totals = [[entry["total"] for entry in read_log(p)] for p in (tmp_path / "full", tmp_path / "split")]
    assert len(totals[0]) == len(totals[1]) == 12
    assert totals[1] == pytest.approx(totals[0], rel=1e-3)
