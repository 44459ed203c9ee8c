"""The trainers against hostile and broken run folders and configs (the CLI contract): resuming never unpickles
anything (a planted pickle is refused by name, its payload never runs), a second trainer on one folder is refused,
a log line cut short by a kill is dropped, and every bad config ends in one line naming the file and key."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from diffusers import AutoencoderKL

from alphavae.cli import main
from alphavae.generation.train import GeneratorConfig, train_generator
from alphavae.paths import sample_dir
from alphavae.training.checkpoint import CheckpointError, latest_checkpoint
from alphavae.training.loop import RunLocked, run_lock
from alphavae.training.splits import make_split, write_split
from alphavae.training.trainer import train
from alphavae.vae.conversion import convert_to_rgba
from alphavae.vae.pretrain import PretrainConfig
from alphavae.vae.pretrain import train as pretrain

pytestmark = pytest.mark.usefixtures("one_thread")


class Payload:
    """Unpickling this runs ``touch MARKER`` — what a shared run folder must never be able to do."""

    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def plant(folder: Path, name: str, marker: Path) -> Path:
    path = folder / name
    torch.save({"step": 999, "evil": Payload(marker)}, path)
    return path


def tiny_vae(root: Path, channels: int = 3) -> Path:
    torch.manual_seed(0)
    vae = AutoencoderKL(in_channels=3, out_channels=3, block_out_channels=(8, 16), layers_per_block=1, latent_channels=4,
                        norm_num_groups=8, down_block_types=("DownEncoderBlock2D",) * 2,
                        up_block_types=("UpDecoderBlock2D",) * 2, sample_size=32)
    path = root / ("vae" if channels == 3 else "vae-rgba")
    (vae if channels == 3 else convert_to_rgba(vae)).save_pretrained(path)
    return path


def config_file(root: Path, **changes) -> Path:
    raw = {"vae": str(tiny_vae(root)), "data": "sample", "split": None, "image_size": 32, "steps": 4, "batch_size": 4,
           "lr": 1e-3, "warmup_steps": 1, "loss": {"disc_start": 2, "perceptual": 0.0}, "device": "cpu",
           "num_workers": 0, "log_every": 1, "checkpoint_every": 2, "keep_checkpoints": 2, **changes}
    path = root / "config.json"
    path.write_text(json.dumps(raw))
    return path


def one_line_error(capsys, code: int, *needles: str) -> str:
    err = capsys.readouterr().err.strip()
    assert code == 2 and len(err.splitlines()) == 1, err
    for needle in needles:
        assert needle in err, (needle, err)
    return err


@pytest.fixture
def stopped_run(tmp_path) -> tuple[Path, Path]:
    """A trainer run stopped after 2 steps, with its checkpoint."""
    cfg = config_file(tmp_path)
    run = tmp_path / "run"
    from alphavae.training.config import load_config

    train(load_config(cfg), run, stop_after=2)
    assert latest_checkpoint(run / "checkpoints") is not None
    return cfg, run


@pytest.mark.parametrize("name", ["custom_checkpoint_0.pkl", "random_states_0.pkl", "model.pt"])
def test_train_resume_refuses_a_planted_pickle_without_running_it(stopped_run, tmp_path, capsys, name):
    cfg, run = stopped_run
    marker = tmp_path / "PWNED"
    plant(latest_checkpoint(run / "checkpoints"), name, marker)
    code = main(["train", "--config", str(cfg), "--output", str(run), "--resume"])
    one_line_error(capsys, code, name, "refusing to resume")
    assert not marker.exists()


def test_train_resume_refuses_a_pickle_in_place_of_the_weights(stopped_run, tmp_path, capsys):
    cfg, run = stopped_run
    marker = tmp_path / "PWNED"
    ckpt = latest_checkpoint(run / "checkpoints")
    (ckpt / "shared.safetensors").unlink()
    plant(ckpt, "shared.safetensors", marker)
    code = main(["train", "--config", str(cfg), "--output", str(run), "--resume"])
    one_line_error(capsys, code, "shared.safetensors", "not a readable safetensors file")
    assert not marker.exists()


def test_train_resume_names_a_truncated_checkpoint(stopped_run, capsys):
    cfg, run = stopped_run
    weights = latest_checkpoint(run / "checkpoints") / "shared.safetensors"
    weights.write_bytes(weights.read_bytes()[: weights.stat().st_size // 2])
    one_line_error(capsys, main(["train", "--config", str(cfg), "--output", str(run), "--resume"]), "shared.safetensors")


def test_pretrain_resume_refuses_a_planted_pickle(tmp_path):
    from alphavae.imageio import list_images, load_rgba, save_png

    photos = tmp_path / "photos"
    for path in list_images(sample_dir())[:6]:
        save_png(load_rgba(path)[:3], photos / f"{path.stem}.png")
    config = PretrainConfig(photos=str(photos), output=str(tmp_path / "run"), steps=4, batch_size=2, crop=32,
                            scales=(1.0,), block_out_channels=(8, 8, 16, 16), norm_num_groups=4, warmup=1,
                            checkpoint_every=2, lpips_weight=0.0, device="cpu", max_minutes=0.0)
    pretrain(config)
    marker = tmp_path / "PWNED"
    plant(latest_checkpoint(tmp_path / "run" / "checkpoints"), "checkpoint.pt", marker)
    with pytest.raises(CheckpointError, match="checkpoint.pt.*refusing to resume"):
        pretrain(PretrainConfig(**{**config.__dict__, "max_minutes": None}), resume=True)
    assert not marker.exists()


def test_generator_resume_refuses_a_planted_pickle(tmp_path):
    write_split(make_split(sample_dir(), 0.2), tmp_path / "split.json")
    config = GeneratorConfig(vae=str(tiny_vae(tmp_path, 4)), data=str(sample_dir()), split=str(tmp_path / "split.json"),
                             image_size=32, steps=4, batch_size=4, block_out_channels=(16, 32), checkpoint_every=2,
                             device="cpu", max_minutes=0.0)
    assert train_generator(config, tmp_path / "run", progress=False) is None
    marker = tmp_path / "PWNED"
    plant(latest_checkpoint(tmp_path / "run" / "checkpoints"), "checkpoint.pt", marker)
    with pytest.raises(CheckpointError, match="checkpoint.pt.*refusing to resume"):
        train_generator(GeneratorConfig(**{**config.__dict__, "max_minutes": None}), tmp_path / "run", resume=True,
                        progress=False)
    assert not marker.exists()


def test_a_second_trainer_on_the_same_output_is_refused(tmp_path, capsys):
    holder = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        run = tmp_path / "run"
        run.mkdir()
        (run / ".lock").write_text(str(holder.pid))  # a live trainer holds it
        cfg = config_file(tmp_path)
        one_line_error(capsys, main(["train", "--config", str(cfg), "--output", str(run), "--resume"]),
                       str(run), f"pid {holder.pid}")
        with pytest.raises(RunLocked):
            with run_lock(run):
                pass
    finally:
        holder.kill()
        holder.wait()
    with run_lock(run):  # the holder is gone: a stale lock is taken over
        assert (run / ".lock").read_text() == str(os.getpid())
    assert not (run / ".lock").exists()


def test_a_log_line_cut_short_by_a_kill_is_dropped_on_resume(stopped_run):
    cfg, run = stopped_run
    with (run / "log.jsonl").open("a") as fh:
        fh.write('{"step": 3, "tot')  # the kill came mid-line
    from alphavae.training.config import load_config

    with pytest.warns(UserWarning, match=r"log\.jsonl: line 3 is cut short"):
        train(load_config(cfg), run, resume=True)
    steps = [json.loads(line)["step"] for line in (run / "log.jsonl").read_text().splitlines()]
    assert steps == [1, 2, 3, 4]


@pytest.mark.parametrize("changes, needle", [
    ({"loss": {"disc_start": "six"}}, "'loss.disc_start'"),
    ({"loss": {"foo": 1}}, "'loss.foo'"),
    ({"lr_schedule": "nonexistent"}, "'lr_schedule'"),
    ({"image_size": 30}, "'image_size'"),
    ({"seed": 2**40}, "'seed'"),
    ({"lpips_net": "squeeze"}, "'lpips_net'"),
])
def test_bad_config_values_name_the_file_and_key(tmp_path, capsys, changes, needle):
    cfg = config_file(tmp_path, **changes)
    one_line_error(capsys, main(["train", "--config", str(cfg), "--output", str(tmp_path / "o")]), "config.json", needle)
    assert not (tmp_path / "o").exists()


@pytest.mark.parametrize("kind", ["empty folder", "batch larger than the data"])
def test_too_little_data_is_one_line_and_leaves_nothing_behind(tmp_path, capsys, kind):
    data = tmp_path / "data"
    data.mkdir()
    if kind == "empty folder":
        cfg = config_file(tmp_path, data=str(data))
        needle = "0 training image(s)"
    else:
        cfg = config_file(tmp_path, batch_size=64)
        needle = "fewer than one batch"
    run = tmp_path / "run"
    one_line_error(capsys, main(["train", "--config", str(cfg), "--output", str(run)]), needle)
    assert not run.exists() or not any(run.iterdir())  # no run.json / tensorboard/: the corrected rerun is not refused
    fixed = config_file(tmp_path)
    assert main(["train", "--config", str(fixed), "--output", str(run)]) == 0


def test_checkpoint_files_have_the_umask_mode(stopped_run):
    _, run = stopped_run
    umask = os.umask(0)
    os.umask(umask)
    for path in latest_checkpoint(run / "checkpoints").iterdir():
        assert path.stat().st_mode & 0o777 == 0o666 & ~umask, path


def test_the_trained_model_folders_have_the_umask_mode(tmp_path):
    from alphavae.training.config import load_config

    result = train(load_config(config_file(tmp_path)), tmp_path / "run")
    umask = os.umask(0)
    os.umask(umask)
    for folder in (result.model_dir, result.fp16_dir):
        for path in folder.iterdir():
            assert path.stat().st_mode & 0o777 == 0o666 & ~umask, path
