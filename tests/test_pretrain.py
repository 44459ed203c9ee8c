"""The pretraining recipe end to end on the CPU at toy size (exact resume with and without the PatchGAN, a
16-channel latent through loading and conversion), its pieces (device-side crops, the grouped held-out split),
and the photo-set rebuild script on a fake package tree (offline)."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest
import torch
from PIL import Image
from safetensors import safe_open

from alphavae.blending import composite
from alphavae.paths import sample_dir
from alphavae.imageio import list_images, load_rgba, resize_long_side, save_png
from alphavae.training.checkpoint import checkpoint_step, latest_checkpoint, load_checkpoint
from alphavae.training.loop import read_log
from alphavae.training.step import step_generator
from alphavae.vae import pretrain
from alphavae.vae.conversion import convert_to_rgba
from alphavae.vae.pretrain import PretrainConfig, train
from alphavae.vae.pretrain_data import PhotoCrops, image_groups, split_folder, split_photos
from alphavae.vae.loading import load_vae

from script_modules import load_script


@pytest.fixture(scope="module")
def tiny_photos(tmp_path_factory) -> Path:
    """Six small real RGB images: sample clip art over white, 96 px (the shipped data, so CI needs no
    ../shared; the toy run checks the recipe's mechanics, not photo quality)."""
    folder = tmp_path_factory.mktemp("photos")
    for path in list_images(sample_dir())[:6]:
        rgb = composite(resize_long_side(load_rgba(path), 96), (1.0, 1.0, 1.0))
        save_png(rgb, folder / f"{path.stem}.png")
    return folder


def toy_config(photos: Path, output: Path, **overrides) -> PretrainConfig:
    settings = dict(photos=str(photos), output=str(output), steps=4, batch_size=2, crop=32, scales=(1.0, 0.5),
                    block_out_channels=(8, 8, 16, 16), norm_num_groups=4, warmup=2, checkpoint_every=2,
                    lpips_weight=0.0, device="cpu")
    return PretrainConfig(**{**settings, **overrides})


def test_split_holds_out_every_sixth_sorted_file():
    files = [Path(f"{c}.jpg") for c in "lkjihgfedcba"]
    train_files, held = split_photos(files)
    assert held == [Path("f.jpg"), Path("l.jpg")]
    assert len(train_files) == 10 and not set(train_files) & set(held)


def test_crops_are_reproducible_and_in_range(tiny_photos):
    crops = PhotoCrops(list_images(tiny_photos), 32, (1.0, 0.5), torch.device("cpu"), colour_augment=True)
    a = crops.sample(5, torch.Generator().manual_seed(1))
    b = crops.sample(5, torch.Generator().manual_seed(1))
    assert a.shape == (5, 3, 32, 32) and torch.equal(a, b) and 0 <= a.min() and a.max() <= 1
    with pytest.raises(ValueError, match="smaller than the crop"):
        PhotoCrops(list_images(tiny_photos), 512, (1.0,), torch.device("cpu"))


def test_device_batches_are_a_function_of_seed_and_step(tiny_photos):
    crops = PhotoCrops(list_images(tiny_photos), 32, (1.0, 0.5), torch.device("cpu"), colour_augment=True)
    assert crops.pixels.dtype == torch.uint8 and crops.pixels.device.type == "cpu"
    a, b = (crops.sample(4, step_generator(0, 7, "cpu")) for _ in range(2))
    assert torch.equal(a, b) and not torch.equal(a, crops.sample(4, step_generator(0, 8, "cpu")))
    assert not torch.equal(a, crops.sample(4, step_generator(1, 7, "cpu")))


def test_crops_cut_the_window_they_say(tmp_path):
    """Without augmentation a crop of a scale-1 copy is a window of the image itself (or its mirror)."""
    image = torch.rand(3, 40, 50)
    save_png(image, tmp_path / "a.png")
    stored = load_rgba(tmp_path / "a.png")[:3]
    crops = PhotoCrops([tmp_path / "a.png"], 32, (1.0,), torch.device("cpu"))
    windows = stored.unfold(1, 32, 1).unfold(2, 32, 1).permute(1, 2, 0, 3, 4).reshape(-1, 3, 32, 32)
    for crop in crops.sample(6, torch.Generator().manual_seed(0)):
        found = [(windows - c).abs().amax(dim=(1, 2, 3)).min().item() for c in (crop, crop.flip(-1))]
        assert min(found) < 1e-6


def fake_corpus(folder: Path) -> dict[str, int]:
    """A corpus-like tree: 2 photographs with 3 views each, a composite over each, and 12 sprites, every image
    one flat grey level of its own (its identity, which a crop keeps); returns file → grey level."""
    rows, levels = [], {}
    for n in range(2):
        for view in ("", "-crop0", "-crop1"):
            rows.append((f"photo/pkg/p{n}{view}.webp", "photo", "pkg", f"p{n}.jpg", ""))
        rows.append((f"clipart-composite/c{n}.webp", "clipart-composite", "openclipart-png", f"c{n}.png", f"pkg:p{n}.jpg"))
    rows += [(f"sprite/game/s{n:02d}.png", "sprite", "game", f"s{n}.png", "") for n in range(12)]
    for i, (file, *_rest) in enumerate(rows):
        levels[file] = 10 * i + 5
        (folder / file).parent.mkdir(parents=True, exist_ok=True)
        Image.new("RGB", (40, 36), (levels[file],) * 3).save(folder / file, lossless=True)
    with (folder / "manifest.csv").open("w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["file", "kind", "package", "source", "photo"])
        writer.writerows(rows)
    return levels


def test_split_keeps_a_photographs_views_and_composites_together(tmp_path):
    fake_corpus(tmp_path)
    files, groups = list_images(tmp_path), image_groups(tmp_path)
    train_files, held = split_photos(files, every=2, groups=groups)  # group 2 of 14 (by first path) is photograph p1
    names = {p.relative_to(tmp_path).as_posix() for p in held}
    assert {"clipart-composite/c1.webp", "photo/pkg/p1.webp", "photo/pkg/p1-crop0.webp", "photo/pkg/p1-crop1.webp"} <= names
    assert not any(p.stem.split("-")[0] in ("p0", "c0") for p in held) and len(held) == 4 + 6
    assert sorted(train_files + held) == files
    assert [p.name for p in split_folder(tmp_path)[1]] == ["s03.png", "s09.png"]  # groups 6 and 12: 1/6 of them


def test_heldout_images_never_reach_a_training_batch(tmp_path, monkeypatch):
    levels = fake_corpus(tmp_path / "corpus")
    _, held = split_folder(tmp_path / "corpus")
    held_levels = {levels[p.relative_to(tmp_path / "corpus").as_posix()] for p in held}
    seen = set()
    real_loss = pretrain.vae_loss

    def recording_loss(vae, x01, *args, **kwargs):
        seen.update((x01 * 255).round().int().unique().tolist())
        return real_loss(vae, x01, *args, **kwargs)

    monkeypatch.setattr(pretrain, "vae_loss", recording_loss)
    train(toy_config(tmp_path / "corpus", tmp_path / "run", steps=6, batch_size=8, scales=(1.0,), colour_augment=False))
    assert held_levels and seen and not seen & held_levels and seen <= set(levels.values())


@pytest.mark.parametrize("adversarial", [{}, {"adversarial_weight": 0.5, "disc_start": 1, "log_every": 1}],
                         ids=["plain", "patchgan"])
def test_recipe_runs_end_to_end_and_resumes_exactly(tiny_photos, tmp_path, adversarial):
    straight = train(toy_config(tiny_photos, tmp_path / "straight", **adversarial))

    interrupted = toy_config(tiny_photos, tmp_path / "resumed", max_minutes=0.0, **adversarial)
    checkpoint = train(interrupted)  # stops after its first step, with a checkpoint
    assert checkpoint.parent.name == "checkpoints" and checkpoint_step(checkpoint) == 1
    resumed = train(toy_config(tiny_photos, tmp_path / "resumed", **adversarial), resume=True)

    a, b = load_vae(str(straight)), load_vae(str(resumed))
    for (name, x), y in zip(a.state_dict().items(), b.state_dict().values()):
        assert torch.equal(x, y), name

    config = json.loads((straight / "config.json").read_text())
    assert config["in_channels"] == 3 and config["latent_channels"] == 4 and config["scaling_factor"] != 0.18215
    with safe_open(straight / "diffusion_pytorch_model.safetensors", "pt") as f:
        assert all(f.get_tensor(k).dtype == torch.float16 for k in f.keys())
    summary = json.loads((tmp_path / "straight" / "pretrain_summary.json").read_text())
    assert summary["steps_done"] == 4
    assert any("held-out photos: 1 of 6 images" in n for n in summary["config"]["notes"])
    seconds = [e["seconds"] for e in read_log(tmp_path / "straight")]  # what scripts/gpu_pretrain_rgb.sh times its probe by
    assert seconds == sorted(seconds) and seconds[0] >= 0
    if adversarial:  # the term and the discriminator's updates from disc_start (step 1, logged as done = 2) on
        assert [("adversarial" in e, "disc_loss" in e) for e in read_log(tmp_path / "straight")] == \
            [(False, False)] + [(True, True)] * 3
        shared, _ = load_checkpoint(latest_checkpoint(tmp_path / "straight" / "checkpoints"))
        assert {"discriminator", "disc_optimizer"} <= set(shared) and shared["disc_optimizer"]["state"]


def test_a_16_channel_latent_trains_loads_and_converts(tiny_photos, tmp_path):
    folder = train(toy_config(tiny_photos, tmp_path / "run", steps=2, latent_channels=16))
    vae = load_vae(str(folder))
    assert vae.config.latent_channels == 16 and vae.config.scaling_factor != 0.18215
    with torch.no_grad():
        assert vae.encode(torch.zeros(1, 3, 32, 32)).latent_dist.mean.shape == (1, 16, 4, 4)
        rgba = convert_to_rgba(vae)
        z = rgba.encode(torch.zeros(1, 4, 32, 32)).latent_dist.mean
        assert z.shape == (1, 16, 4, 4) and rgba.decode(z).sample.shape == (1, 4, 32, 32)


def test_a_perceptual_weight_without_lpips_weights_is_refused(tiny_photos, tmp_path, monkeypatch):
    monkeypatch.setenv("ALPHAVAE_CACHE", str(tmp_path / "empty-cache"))
    with pytest.raises(ValueError, match=r"--lpips-weight 1\.0: LPIPS-vgg needs ImageNet weights: run `alphavae weights fetch`"):
        train(toy_config(tiny_photos, tmp_path / "run", lpips_weight=1.0))
    assert not (tmp_path / "run" / "checkpoints").exists()


def test_scaling_factor_is_one_over_latent_std(tiny_photos, tmp_path):
    from alphavae.vae.pretrain import build_vae, latent_scaling_factor

    torch.manual_seed(0)
    vae = build_vae(toy_config(tiny_photos, tmp_path)).eval()
    crops = PhotoCrops(list_images(tiny_photos), 32, (1.0,), torch.device("cpu"))
    factor = latent_scaling_factor(vae, crops, n_batches=2, batch_size=4, generator=torch.Generator().manual_seed(0))
    g = torch.Generator().manual_seed(0)
    with torch.no_grad():
        z = torch.cat([vae.encode(crops.sample(4, g) * 2 - 1).latent_dist.sample() for _ in range(2)])
    assert factor * z.std().item() == pytest.approx(1.0, rel=0.05)  # posterior samples differ between the two draws


def test_rebuild_script_on_a_fake_package_tree(tmp_path):
    script = load_script("scripts/rebuild_rgb_photos.py")
    tree = tmp_path / "tree"
    big = tree / "usr/share/backgrounds/mate/nature/Big.jpg"
    big.parent.mkdir(parents=True)
    Image.new("RGB", (2048, 1280), (10, 120, 200)).save(big)
    small = tree / "usr/share/wallpapers/Small/contents/images/640x400.png"
    small.parent.mkdir(parents=True)
    Image.new("RGBA", (640, 400), (200, 30, 30, 255)).save(small)
    manifest = tmp_path / "manifest.csv"
    with manifest.open("w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["file", "package", "source", "license", "width", "height", "soft_alpha"])
        writer.writerow(["Big.jpg", "pkg-a", "nature/Big.jpg", "GPL-2+", 1024, 640, 0.0])
        writer.writerow(["small.jpg", "pkg-b", "Small/contents/images/640x400.png", "GPL-2+", 640, 400, 0.0])
    out = tmp_path / "out"
    assert script.main(["--manifest", str(manifest), "--out", str(out), "--package-dir", f"pkg-a={tree}",
                        "--package-dir", f"pkg-b={tree}"]) == 0
    with Image.open(out / "Big.jpg") as im:
        assert im.format == "JPEG" and im.size == (1024, 640)
    with Image.open(out / "small.jpg") as im:
        assert im.size == (640, 400)  # never enlarged
    rows = list(csv.DictReader((out / "manifest.csv").open()))
    assert [r["file"] for r in rows] == ["Big.jpg", "small.jpg"] and rows[0]["license"] == "GPL-2+"
    with pytest.raises(FileNotFoundError, match="Missing.jpg"):
        script.find_source(tree, "nature/Missing.jpg")
