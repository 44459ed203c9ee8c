"""The command-line contract (shared/docs/cli.md) at its edges: the pixel budget every image reader shares,
file modes, and the one-line exit-2 / named-skip exit-1 rules of ``eval``, ``reconstruct`` and ``generate``,
plus the fast failure of an uncached hub id with no network. Everything runs in-process through
:func:`alphavae.cli.main` except where a fresh process is the thing measured (the memory a read takes).
"""

from __future__ import annotations

import json
import os
import struct
import subprocess
import sys
import time
import zlib
from pathlib import Path

import numpy as np
import png
import pytest
import torch
from diffusers import AutoencoderKL
from PIL import Image

import alphavae
import alphavae.generation.sampler
import alphavae.vae.reconstruct
from alphavae.cli import main
from alphavae.generation.sampler import MAX_SAMPLES, MAX_SEED, iter_samples, load_generator
from alphavae.paths import models_dir
from alphavae.imageio import MAX_PIXELS, MAX_PIXELS_ENV, ImageReadError, atomic_write, load_rgba, save_png
from alphavae.metric.alpha import SSIM_WINDOW
from alphavae.vae.loading import load_vae

ROOT = Path(alphavae.__file__).resolve().parents[1]
#: Fresh processes import this checkout, not whatever ``alphavae`` the environment has installed.
ENV = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")])),
       "TQDM_DISABLE": "1"}


def one_line_error(capsys, code: int, *needles: str) -> str:
    """Assert exit status 2 and exactly one stderr line containing every needle; return that line."""
    err = capsys.readouterr().err.strip()
    assert code == 2 and len(err.splitlines()) == 1 and "Traceback" not in err, (code, err)
    for needle in needles:
        assert needle in err, err
    return err


def usage_error(capsys, argv: list[str], *needles: str) -> None:
    """An argparse usage error: SystemExit 2 with one stderr line containing every needle."""
    with pytest.raises(SystemExit) as exit_info:
        main(argv)
    one_line_error(capsys, exit_info.value.code, *needles)


def rgba_png(path: Path, width: int = 24, height: int = 20, seed: int = 0) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.random.default_rng(seed).integers(0, 256, (height, width, 4), dtype=np.uint8), "RGBA").save(path)
    return path


#: Decompressed size of the pixel data in :func:`png_declaring`'s bombs: far more than the memory allowed to grow.
BOMB_DATA_MB = 400


def png_declaring(path: Path, width: int, height: int, bit_depth: int, data_mb: int = BOMB_DATA_MB) -> Path:
    """An RGBA PNG with a valid IHDR declaring ``width × height`` and ``data_mb`` MB of zero scanlines in a
    ~1000:1 zlib stream (cut short of the declared size): a decoder that trusts the header fills hundreds of MB.

    The stream is one compressed MB repeated: after a full flush deflate forgets its history, so every later
    compressed MB is the same bytes.
    """
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    deflate, megabyte = zlib.compressobj(9), bytes(1 << 20)
    first = deflate.compress(megabyte) + deflate.flush(zlib.Z_FULL_FLUSH)
    repeat = deflate.compress(megabyte) + deflate.flush(zlib.Z_FULL_FLUSH)
    ihdr = struct.pack(">IIBBBBB", width, height, bit_depth, 6, 0, 0, 0)
    idat = first + repeat * (data_mb - 1)
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", idat) + chunk(b"IEND", b""))
    return path


def bmp_declaring(path: Path, width: int, height: int) -> Path:
    """A 24-bit BMP header declaring ``width × height`` with no pixel data (Pillow reads the size from it)."""
    info = struct.pack("<IiiHHIIiiII", 40, width, height, 1, 24, 0, 0, 2835, 2835, 0, 0)
    path.write_bytes(b"BM" + struct.pack("<IHHI", 14 + len(info), 0, 0, 14 + len(info)) + info)
    return path


def tiny_vae(folder: Path, channels: int = 4) -> Path:
    """A random 4-level (downsampling 8, like SD's) AutoencoderKL saved to ``folder``: fast on the CPU."""
    torch.manual_seed(0)
    AutoencoderKL(in_channels=channels, out_channels=channels, block_out_channels=(8,) * 4,
                  down_block_types=("DownEncoderBlock2D",) * 4, up_block_types=("UpDecoderBlock2D",) * 4,
                  norm_num_groups=4).save_pretrained(folder)
    return folder


# --- 1. one pixel budget for every reader, checked from the header --------------------------------------------


@pytest.mark.parametrize("width, height, bit_depth", [(13500, 13500, 16), (12000, 12000, 8)])
def test_a_png_bomb_is_refused_by_name_from_the_header_in_no_time_or_memory(tmp_path, width, height, bit_depth):
    """Measured in a fresh process, so that the peak resident size is this read's and nothing before it."""
    bomb = str(png_declaring(tmp_path / "bomb.png", width, height, bit_depth))
    assert width * height > MAX_PIXELS and Path(bomb).stat().st_size < BOMB_DATA_MB * 1100
    code = (
        "import json, resource, sys, time\n"
        "from alphavae.imageio import ImageReadError, load_rgba\n"
        "before, start, error = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss, time.perf_counter(), None\n"
        "try:\n    load_rgba(sys.argv[1])\n"
        "except ImageReadError as exc:\n    error = str(exc)\n"
        "print(json.dumps({'seconds': time.perf_counter() - start, 'error': error,\n"
        "                  'mb': (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before) / 1024}))\n"
    )
    result = subprocess.run([sys.executable, "-c", code, bomb], env=ENV, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout.splitlines()[-1])
    assert report["error"] and report["error"].startswith(f"{bomb}: {width}x{height} is ") and "budget" in report["error"], report
    assert report["seconds"] < 0.5 and report["mb"] < 200, report


def test_every_pillow_format_and_16_bit_png_share_the_budget_which_the_environment_sets(tmp_path, monkeypatch):
    rgba = np.random.default_rng(0).integers(0, 256, (20, 20, 4), dtype=np.uint8)
    files = [tmp_path / "x16.png"]
    png.Writer(20, 20, greyscale=False, alpha=True, bitdepth=16).write(
        files[0].open("wb"), (rgba.astype(np.uint16) * 257).reshape(20, -1).tolist())
    for suffix in (".png", ".webp", ".tiff", ".gif", ".bmp", ".jpg"):
        files.append(tmp_path / f"x{suffix}")
        Image.fromarray(rgba if suffix not in (".jpg", ".bmp") else rgba[..., :3]).save(files[-1])
    monkeypatch.setenv(MAX_PIXELS_ENV, str(20 * 20))
    assert all(load_rgba(f).shape == (4, 20, 20) for f in files)
    monkeypatch.setenv(MAX_PIXELS_ENV, str(20 * 20 - 1))
    for f in files:
        with pytest.raises(ImageReadError, match=f"{f.name}: 20x20 is 400 pixels, over the budget of 399"):
            load_rgba(f)


def test_pillow_bomb_limit_does_not_pre_empt_ours(tmp_path, monkeypatch):
    """13400×13400 is past Pillow's own DecompressionBombError limit; the message is still ours, and a budget
    raised past Pillow's limit is honoured (the header is read, the missing pixels are what fails)."""
    bomb = bmp_declaring(tmp_path / "huge.bmp", 13400, 13400)
    assert 13400 * 13400 > 2 * Image.MAX_IMAGE_PIXELS
    with pytest.raises(ImageReadError, match=r"huge.bmp: 13400x13400 is 179,560,000 pixels, over the budget") as error:
        load_rgba(bomb)
    assert "DecompressionBomb" not in str(error.value)
    monkeypatch.setenv(MAX_PIXELS_ENV, str(10**9))
    with pytest.raises(ImageReadError) as error:
        load_rgba(bomb)
    assert "budget" not in str(error.value) and "DecompressionBomb" not in str(error.value)
    assert Image.MAX_IMAGE_PIXELS is not None  # Pillow's limit is back for everyone else


def test_a_malformed_budget_names_the_variable(tmp_path, monkeypatch, capsys):
    for folder in ("pred", "target"):
        rgba_png(tmp_path / folder / "a.png")
    monkeypatch.setenv(MAX_PIXELS_ENV, "lots")
    one_line_error(capsys, main(["eval", "--pred", str(tmp_path / "pred"), "--target", str(tmp_path / "target"),
                                 "--metrics", "psnr"]), MAX_PIXELS_ENV, "lots")


def test_a_bomb_among_many_is_named_and_the_rest_evaluated(tmp_path, capsys):
    for folder in ("pred", "target"):
        for i in range(2):
            rgba_png(tmp_path / folder / f"ok{i}.png", seed=i)
    png_declaring(tmp_path / "target" / "bomb.png", 13500, 13500, 16)
    rgba_png(tmp_path / "pred" / "bomb.png")
    report = tmp_path / "r.json"
    assert main(["eval", "--pred", str(tmp_path / "pred"), "--target", str(tmp_path / "target"), "--metrics", "psnr",
                 "--json", str(report)]) == 1
    assert str(tmp_path / "target" / "bomb.png") in capsys.readouterr().err
    assert json.loads(report.read_text())["n_images"] == 2


# --- 2. written files get the umask's mode --------------------------------------------------------------------


@pytest.mark.parametrize("umask, mode", [(0o022, 0o644), (0o077, 0o600), (0o002, 0o664)])
def test_written_files_have_the_umask_mode(tmp_path, umask, mode):
    previous = os.umask(umask)
    try:
        png_file = save_png(torch.rand(4, 5, 6), tmp_path / "x.png")
        json_file = atomic_write(tmp_path / "sub" / "r.json", lambda tmp: Path(tmp).write_text("{}\n"))
    finally:
        os.umask(previous)
    assert (png_file.stat().st_mode & 0o777, json_file.stat().st_mode & 0o777) == (mode, mode)
    assert not list(tmp_path.rglob("*.tmp"))


# --- 3. eval ---------------------------------------------------------------------------------------------------


@pytest.fixture
def eval_folders(tmp_path) -> tuple[Path, Path]:
    """``pred/`` and ``target/`` with two 24×20 pairs."""
    for i in range(2):
        rgba_png(tmp_path / "target" / f"p{i}.png", seed=i)
        rgba_png(tmp_path / "pred" / f"p{i}.png", seed=i + 10)
    return tmp_path / "pred", tmp_path / "target"


def eval_args(folders: tuple[Path, Path], *extra: str) -> list[str]:
    return ["eval", "--pred", str(folders[0]), "--target", str(folders[1]), *extra]


def test_eval_skips_a_pair_smaller_than_the_ssim_window_by_name(eval_folders, tmp_path, capsys):
    small = SSIM_WINDOW - 1
    for folder, seed in zip(eval_folders, (1, 2)):
        rgba_png(folder / "tiny.png", width=small + 5, height=small, seed=seed)
    report = tmp_path / "r.json"
    assert main(eval_args(eval_folders, "--metrics", "psnr,ssim", "--json", str(report))) == 1
    err = capsys.readouterr().err
    assert "tiny.png" in err and "SSIM" in err and "Traceback" not in err
    data = json.loads(report.read_text())
    assert data["n_images"] == 2 and "tiny" in data["skipped"]
    assert main(eval_args(eval_folders, "--metrics", "psnr")) == 0  # without SSIM the small pair is scored


@pytest.mark.parametrize("value", [",", "fid", "psnr,fid"])
def test_eval_metrics_must_name_known_metrics(eval_folders, capsys, value):
    one_line_error(capsys, main(eval_args(eval_folders, "--metrics", value)), "--metrics")


def test_eval_backgrounds_must_name_known_backgrounds(eval_folders, capsys):
    one_line_error(capsys, main(eval_args(eval_folders, "--backgrounds", ",")), "--backgrounds")


def test_eval_reports_a_dangling_symlink_by_name(eval_folders, capsys):
    gone = eval_folders[0] / "gone.png"
    gone.symlink_to(eval_folders[0] / "deleted-long-ago.png")
    rgba_png(eval_folders[1] / "gone.png")
    assert main(eval_args(eval_folders, "--metrics", "psnr")) == 1
    err = capsys.readouterr().err
    assert str(gone) in err and "dangling" in err


def test_eval_reports_nan_pixels_by_name(eval_folders, capsys):
    """A float TIFF can hold NaN (PNG cannot); clamping would keep it and poison every mean."""
    values = np.full((20, 24), 0.5, dtype=np.float32)
    values[3, 4] = np.nan
    Image.fromarray(values, "F").save(eval_folders[0] / "nan.tiff")
    rgba_png(eval_folders[1] / "nan.png")
    assert main(eval_args(eval_folders, "--metrics", "psnr")) == 1
    err = capsys.readouterr().err
    assert str(eval_folders[0] / "nan.tiff") in err and "NaN" in err


# --- --device, every command that takes it --------------------------------------------------------------------


def command_args(command: str, tmp_path: Path) -> list[str]:
    rgba_png(tmp_path / "in" / "a.png")
    return {"eval": ["eval", "--pred", str(tmp_path / "in"), "--target", str(tmp_path / "in")],
            "reconstruct": ["reconstruct", "--vae", "embedded-rgba", "--input", str(tmp_path / "in"), "--output", str(tmp_path / "out")],
            "generate": ["generate", "--n", "1", "--output", str(tmp_path / "out")]}[command]


@pytest.mark.parametrize("command", ["eval", "reconstruct", "generate"])
def test_device_is_auto_cpu_or_an_available_cuda(command, tmp_path, capsys, monkeypatch):
    usage_error(capsys, command_args(command, tmp_path) + ["--device", "tpu"], "--device", "tpu")
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    one_line_error(capsys, main(command_args(command, tmp_path) + ["--device", "cuda"]), "--device cuda")
    assert not (tmp_path / "out").exists()


# --- 4. reconstruct --------------------------------------------------------------------------------------------


def test_reconstruct_refuses_two_inputs_with_one_stem(tmp_path, capsys):
    rgba_png(tmp_path / "in" / "a.png")
    Image.open(tmp_path / "in" / "a.png").save(tmp_path / "in" / "a.webp", lossless=True)
    rgba_png(tmp_path / "in" / "b.png")
    code = main(["reconstruct", "--vae", "embedded-rgba", "--input", str(tmp_path / "in"), "--output", str(tmp_path / "out")])
    one_line_error(capsys, code, "a.png", "a.webp")
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("output", [".", "sub", "sub/deeper"])
def test_reconstruct_refuses_an_output_inside_the_input(tmp_path, capsys, output):
    rgba_png(tmp_path / "in" / "a.png")
    rgba_png(tmp_path / "in" / "sub" / "b.png")
    code = main(["reconstruct", "--vae", "embedded-rgba", "--input", str(tmp_path / "in"),
                 "--output", str(tmp_path / "in" / output)])
    one_line_error(capsys, code, "--output")
    assert sorted(p.name for p in (tmp_path / "in").rglob("*.png")) == ["a.png", "b.png"]


@pytest.mark.parametrize("size", [8, 9, 40, 41])
def test_reconstruct_size_is_the_long_side_padded_transparent_to_8_and_cropped_back(tmp_path, monkeypatch, size):
    """cli.md: resize the long side to N (premultiplied), pad to a multiple of 8 with transparent pixels, crop back."""
    seen = []
    real = alphavae.vae.reconstruct.reconstruct
    monkeypatch.setattr(alphavae.vae.reconstruct, "reconstruct", lambda vae, x: seen.append(x) or real(vae, x))
    rgba_png(tmp_path / "in" / "wide.png", width=50, height=23)
    vae = tiny_vae(tmp_path / "vae")
    assert main(["reconstruct", "--vae", str(vae), "--input", str(tmp_path / "in"), "--output", str(tmp_path / "out"),
                 "--size", str(size), "--device", "cpu"]) == 0
    out = load_rgba(tmp_path / "out" / "wide.png")
    assert out.shape == (4, round(23 * size / 50), size)
    (x,) = seen
    assert x.shape[-1] % 8 == 0 and x.shape[-2] % 8 == 0
    assert (x[..., 3, out.shape[1]:, :] == 0).all() and (x[..., 3, :, size:] == 0).all()


def test_reconstruct_size_out_of_range_names_the_option(tmp_path, capsys):
    rgba_png(tmp_path / "in" / "a.png")
    for size in ("7", str(10**6)):
        one_line_error(capsys, main(["reconstruct", "--vae", "embedded-rgba", "--input", str(tmp_path / "in"),
                                     "--output", str(tmp_path / "out"), "--size", size]), f"--size {size}")


def test_reconstruct_help_states_the_size_rule(capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["reconstruct", "--help"])
    out = " ".join(capsys.readouterr().out.split())
    assert exit_info.value.code == 0 and "long side is resized to N" in out
    assert "transparent pixels to a multiple of 8" in out and "cropped back" in out


def test_reconstruct_reports_a_nan_reconstruction_by_name(tmp_path, monkeypatch, capsys):
    calls = []
    real = alphavae.vae.reconstruct.reconstruct

    def first_is_nan(vae, x):
        calls.append(x)
        y = real(vae, x)
        return torch.full_like(y, float("nan")) if len(calls) == 1 else y

    monkeypatch.setattr(alphavae.vae.reconstruct, "reconstruct", first_is_nan)
    rgba_png(tmp_path / "in" / "a.png")
    rgba_png(tmp_path / "in" / "b.png", seed=1)
    code = main(["reconstruct", "--vae", str(tiny_vae(tmp_path / "vae")), "--input", str(tmp_path / "in"),
                 "--output", str(tmp_path / "out"), "--batch-size", "1", "--device", "cpu"])
    assert code == 1
    err = capsys.readouterr().err
    assert str(tmp_path / "in" / "a.png") in err and "NaN" in err
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["b.png"]


# --- 5. generate -----------------------------------------------------------------------------------------------

GENERATE_FAST = ["generate", "--size", "32", "--steps", "2", "--device", "cpu"]


@pytest.mark.parametrize("option, value", [
    ("--n", "0"), ("--n", str(MAX_SAMPLES + 1)), ("--size", "0"), ("--size", "100"), ("--steps", "0"), ("--steps", "-3"),
    ("--steps", "100000"), ("--guidance", "nan"), ("--guidance", "inf"), ("--seed", str(MAX_SEED + 1)), ("--seed", "-1"),
])
def test_generate_bad_options_name_themselves(tmp_path, capsys, option, value):
    argv = [*GENERATE_FAST, "--n", "1", "--output", str(tmp_path / "out"), option, value]  # given twice, the last wins
    one_line_error(capsys, main(argv), f"{option} {value}")
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("content, needles", [
    ("[1, 2]", ["generator.json", "JSON object", "vae"]),
    ('{"image_size": 256, "shift_factor": 0, "scaling_factor": 0.3}', ["generator.json", '"vae"']),
    ('{"vae": "embedded-rgba", "image_size": "big", "shift_factor": 0, "scaling_factor": 0.3}', ["generator.json", '"image_size"']),
    ("{not json", ["generator.json", "JSON"]),
    ('{"vae": "embedded-rgba", "image_size": 256, "shift_factor": 0, "scaling_factor": []}', ["generator.json", '"scaling_factor"']),
    ('{"vae": "embedded-rgba", "image_size": 256, "shift_factor": [0, "x"], "scaling_factor": 1}', ["generator.json", '"shift_factor"']),
])
def test_a_bad_generator_json_names_the_file_and_key(tmp_path, capsys, content, needles):
    (tmp_path / "gen").mkdir()
    (tmp_path / "gen" / "generator.json").write_text(content)
    one_line_error(capsys, main([*GENERATE_FAST, "--model", str(tmp_path / "gen"), "--n", "1", "--output", str(tmp_path / "out")]),
                   str(tmp_path / "gen" / "generator.json"), *needles)


def test_generate_writes_each_sample_as_it_is_made(tmp_path, monkeypatch, capsys):
    """Killed while sampling the second batch (samples 16..): the first batch is already on disk, complete."""

    real, calls = alphavae.generation.sampler.sample_latents, []

    def interrupt_second_batch(*args, **kwargs):
        calls.append(len(list((tmp_path / "g").glob("*.png"))) if (tmp_path / "g").is_dir() else 0)
        if len(calls) == 2:
            raise KeyboardInterrupt
        return real(*args, **kwargs)

    monkeypatch.setattr(alphavae.generation.sampler, "sample_latents", interrupt_second_batch)
    assert main([*GENERATE_FAST, "--n", "20", "--seed", "1", "--output", str(tmp_path / "g")]) == 130
    assert "interrupted" in capsys.readouterr().err
    written = sorted((tmp_path / "g").iterdir())
    assert calls == [0, 16] and len(written) == 16 and written[0].name.startswith("0000-")
    assert all(load_rgba(p).shape == (4, 32, 32) for p in written)


def test_sampling_streams_in_bounded_memory():
    """The largest allowed ``n`` yields its first images after one batch: nothing is made for all n at once."""
    samples = iter_samples(load_generator("embedded-generator"), MAX_SAMPLES, seed=0, size=32, num_inference_steps=1, batch_size=2)
    assert all(next(samples).shape == (4, 32, 32) for _ in range(3))  # two batches of two, of 100000 images


def test_generate_help_states_the_limits(capsys):
    with pytest.raises(SystemExit):
        main(["generate", "--help"])
    out = capsys.readouterr().out
    assert str(MAX_SAMPLES) in out and "2**63-1" in out and MAX_SEED == 2**63 - 1


# --- 6. a hub id with no network and no cache ----------------------------------------------------------------


def test_uncached_hub_ids_without_network_fail_fast_in_one_line(tmp_path, monkeypatch, capsys):
    """HF_HUB_OFFLINE unset, the endpoint a closed port: one line each, no ~30 s of retries. A cached hub id
    still loads (from the cache) with the hub unreachable. In-process: huggingface_hub read ``$HF_ENDPOINT`` and
    ``$HF_HUB_CACHE`` into its constants when imported, so those are set as well as the variables."""
    from huggingface_hub import constants

    torch.manual_seed(0)
    vae = AutoencoderKL(block_out_channels=(8, 8), down_block_types=("DownEncoderBlock2D",) * 2,
                        up_block_types=("UpDecoderBlock2D",) * 2, norm_num_groups=4)
    repo = tmp_path / "hub" / "models--someorg--tiny-vae"
    (repo / "refs").mkdir(parents=True)
    (repo / "refs" / "main").write_text("0" * 40)
    vae.save_pretrained(repo / "snapshots" / ("0" * 40), safe_serialization=True)
    rgba_png(tmp_path / "in" / "a.png")
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    monkeypatch.setenv("HF_ENDPOINT", "http://127.0.0.1:9")
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "hub"))
    monkeypatch.setattr(constants, "ENDPOINT", "http://127.0.0.1:9")
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(tmp_path / "hub"))
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", False)
    argvs = [["reconstruct", "--vae", "nobody/no-such-vae", "--input", str(tmp_path / "in"),
              "--output", str(tmp_path / "out"), "--device", "cpu"],
             ["generate", "--model", "nobody/no-such-generator", "--n", "1", "--output", str(tmp_path / "out"),
              "--device", "cpu"]]
    for argv, spec in zip(argvs, ("nobody/no-such-vae", "nobody/no-such-generator")):
        start = time.perf_counter()
        assert main(argv) == 2
        seconds = time.perf_counter() - start
        message = one_line_error(capsys, 2, spec, "unreachable", "127.0.0.1:9")
        assert seconds < 5, (seconds, message)
    start = time.perf_counter()
    loaded = load_vae("someorg/tiny-vae")
    assert time.perf_counter() - start < 5
    assert all(torch.equal(a, b) for a, b in zip(vae.state_dict().values(), loaded.state_dict().values()))
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("value", ["64,100", "64", "a,b", "0,32", "32,,64", "8,32", "64,48"])
def test_generator_widths_are_checked_and_named(tmp_path, capsys, value):
    usage_error(capsys, ["generator", "train", "--output", str(tmp_path / "g"), "--block-out-channels", value],
                "--block-out-channels", value)
    assert not (tmp_path / "g").exists()


def test_generator_widths_reach_the_config(tmp_path, monkeypatch):
    """``--block-out-channels`` arrives in the run's config as a tuple (the trainer builds its UNet from that:
    tests/test_generation.py checks the built shape)."""
    import alphavae.generation.train as train_module

    seen = {}

    def record(config, output, **_):
        seen["widths"] = config.block_out_channels
        return output

    monkeypatch.setattr(train_module, "train_generator", record)
    assert main(["generator", "train", "--output", str(tmp_path / "g"), "--block-out-channels", "64,128,192"]) == 0
    assert seen["widths"] == (64, 128, 192)


def test_a_warm_start_takes_the_init_generators_shape_unless_given(tmp_path, monkeypatch, capsys):
    """``--init`` without shape options trains the init's UNet shape (read from its config.json); a given option wins
    over it; an init that cannot be read is a one-line error naming ``--init``, except on ``--resume`` (the init
    folder may be gone: the checkpoint's own check names the shape then); without ``--init``, the defaults."""
    import alphavae.generation.train as train_module
    from alphavae.generation.generator_config import UNetShape

    seen = []
    monkeypatch.setattr(train_module, "train_generator",
                        lambda config, output, **_: seen.append((config.block_out_channels, config.layers_per_block)) or output)
    run = ["generator", "train", "--output", str(tmp_path / "g")]
    shipped = json.loads((models_dir() / "embedded-generator" / "config.json").read_text())
    assert main(run + ["--init", "embedded-generator"]) == 0
    assert seen.pop() == (tuple(shipped["block_out_channels"]), shipped["layers_per_block"]) != (UNetShape().block_out_channels, 1)
    assert main(run + ["--init", "embedded-generator", "--layers-per-block", "2"]) == 0
    assert seen.pop() == (tuple(shipped["block_out_channels"]), 2)
    assert main(run + ["--init", "embedded-generator", "--block-out-channels", "64,128,192"]) == 0
    assert seen.pop() == ((64, 128, 192), shipped["layers_per_block"])
    assert main(run) == 0 and seen.pop() == (UNetShape().block_out_channels, UNetShape().layers_per_block)
    assert main(run + ["--init", str(tmp_path / "gone"), "--resume"]) == 0
    assert seen.pop() == (UNetShape().block_out_channels, UNetShape().layers_per_block)
    one_line_error(capsys, main(run + ["--init", str(tmp_path / "gone")]), "--init", str(tmp_path / "gone"))
    one_line_error(capsys, main(run + ["--init", "embedded-generator", "--layers-per-block", "0"]), "--layers-per-block", "0")
    assert not seen
