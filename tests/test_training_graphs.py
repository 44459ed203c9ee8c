"""The optimised step (``alphavae.training.graphs``, torch.compile) trains exactly as the eager step does.

On a CPU: the graphs' fixed-input path (``record=False``: the same copies into fixed tensors, schedules and EMA
outside) gives bit-identical losses and weights to the eager step; ``compile: on`` (Inductor's CPU kernels) gives
the eager losses and weights within the tolerances its test states; a capturable optimiser's checkpoint resumes
an eager run and an eager one a capturable run (rate tensors ↔ numbers). On a GPU (skipped without one):
recorded and replayed graphs against the eager step from the same start, every term on, each phase recorded and
replayed several times. Tolerance there: relative 1e-3 on every logged value and, on
each weight, 1e-2 of its largest change in the steps (bf16 autocast; cuDNN's backward kernels may sum in a
different order between calls)."""

from __future__ import annotations

import contextlib

from pathlib import Path
from types import SimpleNamespace

import pytest
import torch
from diffusers import AutoencoderKL
from torch.torch_version import TorchVersion

from alphavae.training.checkpoint import load_checkpoint, save_checkpoint
from alphavae.training.config import ConfigError, config_from_dict
from alphavae.training.graphs import StepGraphs
from alphavae.training.optim import adamw, lr_schedule, settle_groups
from alphavae.training.trainer import (build_setup, make_accelerator, read_logs, train_step, update, use_compile,
                                       use_cuda_graphs)

pytestmark = pytest.mark.usefixtures("one_thread")
DISC_START, STEPS = 6, 12  # each phase: graphs.WARMUP (3) eager steps, then its graph recorded and replayed 3 times


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
           "lr": 1e-3, "warmup_steps": 2, "loss": {"disc_start": DISC_START, "perceptual": 0.0}, "device": "cpu",
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
    assert any("loss functions" in note for note in setup.notes) == (config.compile == "on")  # compiled with the networks
    history = [read_logs(acc, train_step(setup, b, s)) for s, b in enumerate(batches(STEPS, config.image_size))]
    state = {f"vae.{k}": v.float().cpu() for k, v in setup.model.state_dict().items()}
    state.update({f"disc.{k}": v.float().cpu() for k, v in setup.discriminator.state_dict().items()})
    state.update({f"ema.{i}": p.float().cpu() for i, p in enumerate(setup.ema.shadow_params)})
    return history, state


def initial_state(config) -> dict[str, torch.Tensor]:
    torch.manual_seed(0)
    setup = build_setup(config, make_accelerator(config))
    return {f"vae.{k}": v.float().cpu() for k, v in setup.model.state_dict().items()}


@pytest.mark.parametrize("loss", [{}, {"alpha_l1": 0.1, "latent_noise": 0.2}], ids=["paper", "finetune"])
def test_the_graphs_fixed_input_path_trains_exactly_as_the_eager_step(tiny_vae, loss):
    """The paper's step, and the fine-tune's (method.md §3.9), whose latent noise is one more fixed input."""
    changes = {"loss": {"disc_start": DISC_START, "perceptual": 0.0, **loss}}
    eager, eager_state = train_some(config_for(tiny_vae, **changes), record=None)
    graphed, graphed_state = train_some(config_for(tiny_vae, **changes), record=False)
    assert ("loss/alpha_l1" in eager[-1]) == bool(loss)
    assert "disc/loss" not in eager[DISC_START - 1] and "disc/loss" in eager[DISC_START]  # both phases ran
    assert graphed == eager
    for key, value in eager_state.items():
        assert torch.equal(graphed_state[key], value), key


def reconstruction(config, state: dict[str, torch.Tensor]) -> torch.Tensor:
    """A fixed batch through an eager model with the VAE weights of ``state`` (posterior mean, in [-1, 1])."""
    model = build_setup(config, make_accelerator(config)).model
    model.load_state_dict({k.removeprefix("vae."): v for k, v in state.items() if k.startswith("vae.")})
    with torch.no_grad():
        x = batches(1, config.image_size)[0] * 2 - 1
        return model.decode(model.encode(x).latent_dist.mean).sample


@pytest.mark.filterwarnings("ignore::UserWarning")
def test_the_compiled_step_trains_as_the_eager_step_on_a_cpu(tiny_vae):
    """``compile: on`` (Inductor's CPU kernels, channels_last) against eager, STEPS steps across ``disc_start``.

    Tolerances (fp32): every logged value relative 1e-4 (absolute 1e-7 near 0), but the reference KL within 1e-4 of its
    largest value in the run: it is exactly 0 eager at the first step and a few 1e-6 compiled, since the trainable
    and the reference encoder, compiled for batches of 3·B and B with the layout-keeping group norm, round their
    reductions differently (its weighted value, 1e-16 times it, is far below 1e-7); every weight matrix or kernel of the VAE (and its EMA)
    within 1e-3 of its largest change, of the discriminator within 1e-3 of its largest weight; the trained VAE's reconstruction of a fixed batch within 1e-4. Biases are compared
    through that reconstruction, not one by one: those the loss cannot see (an attention key's bias, a
    convolution's bias just before a GroupNorm) have a gradient of rounding noise, which AdamW scales up to
    full-size steps of either sign in both runs.
    """
    eager, eager_state = train_some(config_for(tiny_vae), record=None)
    compiled, compiled_state = train_some(config_for(tiny_vae, compile="on"), record=None)
    start = initial_state(config_for(tiny_vae))
    assert "disc/loss" not in eager[DISC_START - 1] and "disc/loss" in eager[DISC_START]  # both phases ran
    largest = max(logs["loss/reference_kl"] for logs in eager)
    for step, (a, b) in enumerate(zip(eager, compiled, strict=True)):
        assert set(a) == set(b), step
        for key in a:
            floor = 1e-4 * largest if key.endswith("/reference_kl") and key.startswith("loss/") else 1e-7
            assert b[key] == pytest.approx(a[key], rel=1e-4, abs=floor), (step, key)
    start.update({f"ema.{i}": value for i, value in enumerate(list(start.values()))})  # EMA: the VAE's parameters, in order
    for key, value in eager_state.items():
        if value.ndim >= 2:
            moved = float((value - start[key]).abs().max()) if key in start else float(value.abs().max())
            assert torch.allclose(compiled_state[key], value, rtol=0, atol=1e-3 * moved), key
    assert torch.allclose(reconstruction(config_for(tiny_vae), compiled_state),
                          reconstruction(config_for(tiny_vae), eager_state), rtol=0, atol=1e-4)


@pytest.mark.filterwarnings("ignore:Detected call of")
@pytest.mark.parametrize("saved_capturable", [True, False])
def test_an_optimisers_checkpoint_resumes_with_or_without_capturable_rates(tmp_path, saved_capturable):
    """(A capturable AdamW cannot step on a CPU: the schedules alone run here; the GPU tests step it.)"""
    def fresh(capturable: bool):
        torch.manual_seed(0)
        params = [torch.nn.Parameter(torch.randn(5))]
        optimizer = adamw(params, 1e-2, capturable=capturable)
        return params, optimizer, lr_schedule(optimizer, "cosine", 2, 10)

    params, optimizer, schedule = fresh(capturable=saved_capturable)
    assert isinstance(optimizer.param_groups[0]["lr"], torch.Tensor) is saved_capturable
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


def test_a_resumed_optimiser_keeps_its_channels_last_parameters_layout(tmp_path):
    """A checkpoint stores AdamW's moments contiguous; a compiled network's convolution weights are channels_last,
    and CUDA's fused AdamW refuses moments of another layout (the first step of a resumed GPU run failed on an
    H100). After :func:`settle_groups` every moment has its parameter's strides and its saved values."""
    conv = torch.nn.Conv2d(4, 8, 3).to(memory_format=torch.channels_last)
    optimizer = adamw(conv.parameters(), 1e-3)
    conv(torch.randn(2, 4, 8, 8).to(memory_format=torch.channels_last)).sum().backward()
    optimizer.step()
    assert optimizer.state[conv.weight]["exp_avg"].stride() == conv.weight.stride()  # a fresh state follows its param
    save_checkpoint(tmp_path, 1, lambda: {"optimizer": optimizer.state_dict()}, {"rng": []}, 1, 0, lambda: None)
    shared, _ = load_checkpoint(tmp_path / "step-00000001", 0)
    resumed = adamw(conv.parameters(), 1e-3)
    resumed.load_state_dict(shared["optimizer"])
    settle_groups(resumed, False)
    for param in conv.parameters():
        for key in ("exp_avg", "exp_avg_sq"):
            moment = resumed.state[param][key]
            assert moment.stride() == param.stride(), (key, tuple(param.shape))
            assert torch.equal(moment, optimizer.state[param][key])


@pytest.mark.parametrize("foreach", [True, False])  # the trainers' EMA, and diffusers' default
def test_a_resumed_ema_follows_its_parameters(tmp_path, foreach):
    """diffusers' EMAModel keeps a checkpoint's tensors as loaded (CPU, contiguous): on a GPU its first step would
    mix devices. After :func:`settle_ema` each shadow has its parameter's device and strides, and its saved values."""
    from diffusers.training_utils import EMAModel

    from alphavae.training.optim import settle_ema

    conv = torch.nn.Conv2d(4, 8, 3).to(memory_format=torch.channels_last)
    ema = EMAModel(conv.parameters(), decay=0.9, foreach=foreach)
    with torch.no_grad():
        conv.weight.add_(1.0)
    ema.step(conv.parameters())
    save_checkpoint(tmp_path, 1, lambda: {"ema": ema.state_dict()}, {"rng": []}, 1, 0, lambda: None)
    shared, _ = load_checkpoint(tmp_path / "step-00000001", 0)
    resumed = EMAModel(conv.parameters(), decay=0.9, foreach=foreach)
    resumed.load_state_dict(shared["ema"])
    settle_ema(resumed, conv.parameters())
    for shadow, saved, param in zip(resumed.shadow_params, ema.shadow_params, conv.parameters(), strict=True):
        assert (shadow.device, shadow.stride()) == (param.device, param.stride())
        assert torch.equal(shadow, saved)


def test_cuda_graphs_on_without_a_gpu_is_an_error_naming_the_key(tiny_vae):
    config = config_for(tiny_vae, cuda_graphs="on")
    with pytest.raises(ConfigError, match="cuda_graphs"):
        use_cuda_graphs(config, make_accelerator(config))
    assert not use_cuda_graphs(config_for(tiny_vae, cuda_graphs="auto"), make_accelerator(config))
    with pytest.raises(ConfigError, match="'cuda_graphs' must be one of"):
        config_for(tiny_vae, cuda_graphs="yes").validate()


def gpu_like(processes: int = 1, precision: str = "bf16") -> SimpleNamespace:
    """What the two rules read of an Accelerator, as a GPU run would have it (no GPU needed)."""
    return SimpleNamespace(device=torch.device("cuda"), num_processes=processes, mixed_precision=precision)


def test_auto_optimises_one_gpu_process_only(tiny_vae):
    auto = config_for(tiny_vae, compile="auto", cuda_graphs="auto")
    assert use_compile(auto, gpu_like()) and use_cuda_graphs(auto, gpu_like())
    assert not use_compile(auto, gpu_like(processes=2)) and not use_cuda_graphs(auto, gpu_like(processes=2))
    assert use_compile(config_for(tiny_vae, compile="on"), gpu_like(processes=2))  # asked for: compiled DDP
    assert not use_compile(auto, make_accelerator(config_for(tiny_vae)))  # the CPU
    assert not use_cuda_graphs(auto, gpu_like(precision="fp16"))


def test_graphs_with_gradient_checkpointing_need_torch_2_10(tiny_vae, monkeypatch):
    auto = config_for(tiny_vae, cuda_graphs="auto", gradient_checkpointing=True)
    monkeypatch.setattr(torch, "__version__", TorchVersion("2.9.1"))
    assert not use_cuda_graphs(auto, gpu_like())
    with pytest.raises(ConfigError, match="cuda_graphs is 'on' but gradient checkpointing .* torch 2.10"):
        use_cuda_graphs(config_for(tiny_vae, cuda_graphs="on", gradient_checkpointing=True), gpu_like())
    assert use_cuda_graphs(config_for(tiny_vae, cuda_graphs="auto"), gpu_like())  # without checkpointing
    monkeypatch.setattr(torch, "__version__", TorchVersion("2.10.0"))
    assert use_cuda_graphs(auto, gpu_like())


def test_a_recording_lets_other_threads_call_cuda(monkeypatch):
    """The step is recorded in thread-local capture mode: the DataLoader's pin-memory thread allocates page-locked
    memory while the trainer records, which PyTorch's default ("global") turns into a failed capture. Run here
    with a stand-in graph (a CPU cannot capture) that only notes how it was entered."""
    entered = []

    class Graph:
        def replay(self):
            pass

    @contextlib.contextmanager
    def graph(cuda_graph, **kwargs):
        entered.append(kwargs)
        yield

    monkeypatch.setattr(torch.cuda, "CUDAGraph", Graph)
    monkeypatch.setattr(torch.cuda, "graph", graph)
    step = StepGraphs(lambda batch, choices, noise, latent_noise, adversarial: {"total": batch.sum()}, warmup=0)
    logs = step(torch.ones(2, 4, 8, 8), (torch.zeros(2), torch.zeros(2)), None, None, False)
    with pytest.raises(ValueError, match="optional inputs"):  # a fixed input never changes its meaning
        step(torch.ones(2, 4, 8, 8), (torch.zeros(2), torch.zeros(2)), None, torch.zeros(2, 4, 1, 1), False)
    assert float(logs["total"]) == 2 * 4 * 8 * 8
    assert entered == [{"capture_error_mode": "thread_local"}]


@pytest.mark.skipif(not torch.cuda.is_available(), reason="recording CUDA graphs needs a GPU")
@pytest.mark.parametrize("compile_networks", ["off", "on"])
def test_recorded_graphs_train_as_the_eager_step_on_a_gpu(compile_networks):
    from alphavae.metric.backbones import lpips_or_reason
    nets = [net for net in ("alex", "vgg") if lpips_or_reason(net, "cuda")[0] is not None]  # what the call carried
    changes = dict(device="auto", image_size=64, lpips_net=(nets or ["alex"])[0], compile=compile_networks,
                   loss={"disc_start": DISC_START, "perceptual": 0.5 if nets else 0.0})
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
    # uninterrupted: phase 2's graph recorded at step 7 and replayed to 15; split at 10: recorded at 7, replayed at
    # 8–9, then the resumed run warms up again (10–12), records at 13 and replays at 14–15
    # loader workers, as the trainer's configs have: their pin-memory thread runs while a graph is recorded (a
    # capture in PyTorch's default "global" error mode failed on that thread, benchmarks/NOTES.md "Stop 22")
    config = config_for("embedded", device="auto", image_size=64, steps=16, cuda_graphs="on", checkpoint_every=5,
                        sample_every=4, log_every=1, num_workers=2, loss={"disc_start": 4, "perceptual": 0.0})
    full = train(config, tmp_path / "full")
    assert any("CUDA graphs" in note for note in full.notes)
    stopped = train(config, tmp_path / "split", stop_after=10)  # checkpoints at 5 and at the stop, 10
    assert stopped.steps == 10
    train(config, tmp_path / "split", resume=True)
    a, b = (load_file(p / "model" / "diffusion_pytorch_model.safetensors") for p in (tmp_path / "full", tmp_path / "split"))
    for key, value in a.items():
        assert torch.allclose(b[key].float(), value.float(), rtol=1e-3, atol=1e-5), key
    totals = [[entry["total"] for entry in read_log(p)] for p in (tmp_path / "full", tmp_path / "split")]
    assert len(totals[0]) == len(totals[1]) == 16
    assert totals[1] == pytest.approx(totals[0], rel=1e-3)
