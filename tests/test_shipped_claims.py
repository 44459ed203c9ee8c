"""Claims the repository makes about its shipped files, checked against those files.

* Every model card (``data/models/*/MODEL_CARD.md``) states the sha256 of its own weights file, and every
  sha256 a card, ``generator.json`` or a results file states is the sha256 of the weights it names.
* The README's result tables print the values of ``results/ablation.json`` and ``results/generation.json``,
  rounded as printed; the README's RGB-VAE table is the model card's; the cards' numbers are the results'.

A number that no longer matches means a file was regenerated without the text that reports it (or the
reverse); the failure says which file and which value.
"""

from __future__ import annotations

import hashlib
import json
import math
import re
import statistics
from pathlib import Path

import pytest

from alphavae.paths import models_dir, results_dir

ROOT = Path(__file__).resolve().parents[1]  # the checkout: README.md is not in the wheel
WEIGHTS = "diffusion_pytorch_model.safetensors"
#: SPEC → folder in data/models/ (alphavae.vae.loading.EMBEDDED).
SPECS = {"embedded": "embedded-vae", "embedded-rgba": "embedded-rgba", "embedded-generator": "embedded-generator"}
#: A full sha256, or a prefix of at least 8 hex digits followed by an ellipsis (``a275bfe5…``).
FULL_HASH = re.compile(r"(?<![0-9a-f])([0-9a-f]{64})(?![0-9a-f])")
HASH_PREFIX = re.compile(r"(?<![0-9a-f])([0-9a-f]{8,63})(?:…|\.\.\.)")
#: How a card marks the sha256 of weights it derives from that are no longer shipped.
NOT_SHIPPED = "(not shipped)"


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


SHIPPED = {folder: _sha256(models_dir() / folder / WEIGHTS) for folder in SPECS.values()}


def _sentence(text: str, position: int) -> str:
    return re.split(r"\.\s|\n\n", text[:position])[-1]


def _stated_hashes(text: str) -> list[tuple[int, str]]:
    """``(position, hex)`` of every full sha256 or ellipsised prefix in ``text``, except those of weights the
    sentence says are ``(not shipped)`` (a parent kept in git history)."""
    found = [(m.start(1), m.group(1)) for m in FULL_HASH.finditer(text)]
    found += [(m.start(1), m.group(1)) for m in HASH_PREFIX.finditer(text)]
    return sorted((pos, h) for pos, h in found if NOT_SHIPPED not in _sentence(text, pos))


def _named_model(text: str, position: int) -> str | None:
    """The folder of the model a hash belongs to, if its sentence names one as a backticked SPEC
    (``Paired VAE weights: `embedded-rgba` with sha256 …``); ``None`` if the sentence names none."""
    sentence = _sentence(text, position)
    names = re.findall(r"`(embedded(?:-rgba|-generator)?)`", sentence)
    return SPECS[names[-1]] if names else None


def _card(folder: str) -> str:
    return (models_dir() / folder / "MODEL_CARD.md").read_text()


# --- sha256 ----------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("folder", sorted(SPECS.values()))
def test_model_card_states_the_sha256_of_its_own_weights(folder):
    text, own = _card(folder), SHIPPED[folder]
    own_stated = [h for pos, h in _stated_hashes(text) if (_named_model(text, pos) or folder) == folder]
    assert any(own.startswith(h) for h in own_stated), (
        f"data/models/{folder}/MODEL_CARD.md states no sha256 of its own weights file {WEIGHTS}; "
        f"add (e.g. in its Weights paragraph): sha256 `{own}`"
        + (f" (it states {own_stated}, which is not that file's)" if own_stated else ""))


@pytest.mark.parametrize("folder", sorted(SPECS.values()))
def test_every_sha256_in_a_model_card_is_the_one_of_the_weights_it_names(folder):
    text = _card(folder)
    for pos, stated in _stated_hashes(text):
        named = _named_model(text, pos) or folder
        assert SHIPPED[named].startswith(stated), (
            f"data/models/{folder}/MODEL_CARD.md: sha256 {stated} (for {named}) is not the sha256 of "
            f"data/models/{named}/{WEIGHTS}, which is {SHIPPED[named]}")


def test_generator_json_names_the_sha256_of_its_shipped_vae():
    from alphavae.vae.loading import weights_sha256

    info = json.loads((models_dir() / "embedded-generator" / "generator.json").read_text())
    assert info["vae"] in SPECS, info["vae"]
    assert info["vae_sha256"] == SHIPPED[SPECS[info["vae"]]], (
        f"generator.json: vae_sha256 {info['vae_sha256']} is not the sha256 of the shipped {info['vae']} "
        f"weights ({SHIPPED[SPECS[info['vae']]]})")
    assert weights_sha256(info["vae"]) == info["vae_sha256"]  # what load_generator compares


def test_results_files_name_the_sha256_of_the_shipped_vae_they_used():
    ablation = json.loads((results_dir() / "ablation.json").read_text())
    if ablation["vae_sha256"] != SHIPPED[SPECS[ablation["vae"]]]:  # the ablation's RGB VAE was replaced since:
        card = _card("embedded-rgba")  # the shipped RGBA VAE (its main row) must say it derives from the old one
        pos = card.find(ablation["vae_sha256"])
        assert pos >= 0 and NOT_SHIPPED in _sentence(card, pos), (
            f"results/ablation.json started from {ablation['vae']} with sha256 {ablation['vae_sha256']}, which is "
            f"not the shipped one; embedded-rgba/MODEL_CARD.md must state that sha256 as {NOT_SHIPPED!r}")
    generation = json.loads((results_dir() / "generation.json").read_text())
    assert generation["features"] == "FD-VGG16 (not FID: no Inception weights)"
    info = json.loads((models_dir() / "embedded-generator" / "generator.json").read_text())
    assert generation["models"]["main"]["vae"] == info["vae"] == "embedded-rgba"
    assert info["vae_sha256"] == SHIPPED["embedded-rgba"]  # the shipped generator is the table's main row


# --- README tables -----------------------------------------------------------------------------------------------


def _table(markdown: str, header_start: str) -> list[dict[str, str]]:
    """The rows of the markdown table whose header line starts with ``header_start``, as {column: cell}."""
    lines = markdown.splitlines()
    starts = [i for i, line in enumerate(lines) if line.startswith(header_start)]
    assert len(starts) == 1, f"expected one table starting {header_start!r}, found {len(starts)}"
    i = starts[0]

    def cells(line: str) -> list[str]:
        return [c.strip() for c in line.strip().strip("|").split("|")]

    header = cells(lines[i])
    rows = []
    for line in lines[i + 2:]:
        if not line.startswith("|"):
            break
        values = cells(line)
        assert len(values) == len(header), line
        rows.append(dict(zip(header, values)))
    return rows


def _printed(cell: str, value: float | None, scale: float = 1.0, where: str = "") -> None:
    """``cell`` is ``value·scale`` rounded to the decimals it shows; ``unavailable`` / ``—`` stand for None."""
    cell = cell.replace("−", "-").rstrip("%").strip()
    if cell in ("unavailable", "—", "-"):
        assert value is None, f"{where}: prints {cell!r} but the results file has {value}"
        return
    assert value is not None, f"{where}: prints {cell} but the results file has no value"
    decimals = len(cell.split(".")[1]) if "." in cell else 0
    assert f"{value * scale:.{decimals}f}" == cell, (
        f"{where}: prints {cell}, the results file has {value * scale} (→ {value * scale:.{decimals}f})")


README = (ROOT / "README.md").read_text()

#: README row label → ``results/ablation.json`` row name.
ABLATION_ROWS = {
    "converted, untouched": "converted, untouched",
    "main (the paper's objective)": "main",
    "without GAN": "no_gan",
    "without prior KL": "no_prior_kl",
    "without reference KL": "no_reference_kl",
    "naive 4-channel MSE": "naive_mse",
    "without LPIPS": "no_lpips",
    "LPIPS per pixel (taming's share)": "lpips_per_pixel",
    "alpha overshoot held at the bound (shipped recipe)": "free_alpha_overshoot",
    "RGB VAE on composites": "RGB VAE on composites (ceiling)",
}
ABLATION_COLUMNS = {"PSNR": ("mean", "psnr"), "SSIM": ("mean", "ssim"), "LPIPS": ("mean", "lpips"),
                    "α PSNR": ("alpha", "psnr"), "α SAD": ("alpha", "sad"),
                    "soft α %": ("alpha", "soft_pct")}

#: README row label → ``results/generation.json`` model key.
GENERATION_ROWS = {
    "`embedded-rgba` (shipped generator)": "main",
    "(real training images)": "train split (reference)",
    "(real training images through `embedded-rgba`)": "train split through the VAE (reference)",
}
#: The README's second generation table (results/generation_ablation.json): a label → that file's model.
ABLATION_GENERATION_ROWS = {
    "ablation main (the paper's terms)": "main",
    "ablation naive_mse": "naive_mse",
    "ablation no_reference_kl": "no_reference_kl",
    "(real training images through ablation main)": "train split through the VAE (reference)",
}


def test_readme_ablation_table_prints_results_ablation_json():
    """Each README cell is the results file's mean, and ``± h`` its 95 % interval's half-width where it prints one."""
    results = {row["name"]: row for row in json.loads((results_dir() / "ablation.json").read_text())["rows"]}
    rows = _table(README, "| model | PSNR | SSIM | LPIPS |")
    labels = [row["model"] for row in rows]
    assert sorted(labels) == sorted(ABLATION_ROWS), f"README ablation rows {labels}: update ABLATION_ROWS"
    for row in rows:
        result = results[ABLATION_ROWS[row["model"]]]
        for column, (section, key) in ABLATION_COLUMNS.items():
            where = f"README ablation {row['model']!r} {column}"
            value, _, half = row[column].partition("±")
            _printed(value, result.get(section, {}).get(key), where=where)
            interval = (result.get("interval95") or {}).get(section, {}).get(key)
            assert bool(half) == (interval is not None), f"{where}: ± printed iff the results file has an interval"
            if half:
                _printed(half, interval, where=where + " interval")


@pytest.mark.parametrize(("results_file", "header", "labels"), [
    ("generation.json", "| generator on the latents of |", GENERATION_ROWS),
    ("generation_ablation.json", "| generator on the ablation VAE |", ABLATION_GENERATION_ROWS)])
def test_readme_generation_tables_print_the_results(results_file, header, labels):
    models = json.loads((results_dir() / results_file).read_text())["models"]
    rows = _table(README, header)
    column = header.strip("| ")
    printed = [row[column] for row in rows]
    assert sorted(printed) == sorted(labels), f"README generation rows {printed}: update the test's labels"
    for row in rows:
        label = row[column]
        model = models[labels[label]]
        where = f"README generation {label!r}"
        kid_column = next(c for c in row if c.startswith("KID"))
        assert "10³" in kid_column, kid_column
        kid, kid_std = row[kid_column].split("±")
        _printed(kid, model["vgg16"]["mean"]["kid"], 1e3, where + " KID")
        _printed(kid_std, model["vgg16"]["mean"]["kid_std"], 1e3, where + " KID std")
        _printed(row["FD-VGG16"], model["vgg16"]["mean"]["fd"], where=where + " FD")
        _printed(row["FID"], model["inception"], where=where + " FID")
        shares = row["transparent / soft / opaque pixels"].rstrip("%").split("/")
        for cell, key in zip(shares, ("transparent", "soft", "opaque"), strict=True):
            _printed(cell, model["alpha"]["generated"][key], 100, f"{where} {key} %")
    if results_file == "generation.json":
        assert models["main"]["vae"] == "embedded-rgba"


def test_readme_prose_around_the_tables_matches_the_results():
    ablation = json.loads((results_dir() / "ablation.json").read_text())
    generation = json.loads((results_dir() / "generation.json").read_text())
    claims = {
        rf"{ablation['n_images']} held-out clip-art images": "ablation n_images",
        rf"{ablation['steps']:,} steps at {ablation['image_size']} px, batch {ablation['batch_size']}": "ablation schedule",
        rf"{generation['n_generated']} samples each": "generation n_generated",
    }
    for pattern, what in claims.items():
        assert re.search(re.escape(pattern), README), f"README does not say {pattern!r} ({what} in results/)"


def _card_table_prints_the_sets(folder: str, header: str, results: dict, columns: dict[str, tuple[str, ...]]) -> list[dict]:
    """The rows of the card's table starting ``header`` (bold stripped), checked to be ``results["sets"]`` in order:
    each row's test set ends with its image count, and each ``column`` prints the value at its key path in the set.
    Returns the rows."""
    rows = [{k: v.replace("*", "") for k, v in row.items()} for row in _table(_card(folder), header)]
    sets = list(results["sets"].values())
    assert len(rows) == len(sets), ([r["test set"] for r in rows], list(results["sets"]))
    for row, result in zip(rows, sets):
        where = f"{folder} card {row['test set']!r}"
        assert row["test set"].endswith(f"({result['images']})"), where
        for column, path in columns.items():
            value = result
            for key in path:
                value = value[key]
            _printed(row[column], value, where=f"{where} {column}")
    return rows


def test_readme_rgb_vae_table_is_the_model_cards_and_the_results():
    """The RGB VAE's table in its card prints ``benchmarks/results/heldout_quality_rgb.json`` (one row per set, in
    order), and the README's table repeats the card's rows."""
    results = json.loads((ROOT / "benchmarks" / "results" / "heldout_quality_rgb.json").read_text())
    assert results["rgb"] == "embedded"
    card_rows = _card_table_prints_the_sets("embedded-vae", "| test set | VAE PSNR |", results, {
        "VAE PSNR": ("rgb_white", "vae", "psnr"), "VAE LPIPS-Alex": ("rgb_white", "vae", "lpips_alex")})
    baselines = {"bicubic ×3.46 PSNR / LPIPS-Alex": "bicubic", "bicubic ×6.93 PSNR / LPIPS-Alex": "bicubic_issue"}
    for row, result in zip(card_rows, results["sets"].values()):
        for column, key in baselines.items():
            psnr, lpips = row[column].split(" / ")
            _printed(psnr, result["rgb_white"][key]["psnr"], where=f"card {row['test set']!r} {column}")
            _printed(lpips, result["rgb_white"][key]["lpips_alex"], where=f"card {row['test set']!r} {column}")
    readme_rows = _table(README, "| test set | VAE PSNR / LPIPS-Alex |")
    assert readme_rows
    for row in readme_rows:
        prefix = row["test set"].split(" px")[0]  # "held-out clip art, 256"
        matches = [c for c in card_rows if c["test set"].startswith(prefix)]
        assert len(matches) == 1, (row["test set"], [c["test set"] for c in card_rows])
        card = matches[0]
        assert row["VAE PSNR / LPIPS-Alex"] == f"{card['VAE PSNR']} / {card['VAE LPIPS-Alex']}", row
        for column in baselines:
            assert row[column] == card[column], row


# --- model cards' numbers ------------------------------------------------------------------------------------------


NUMBER = r"(\d+(?:\.\d+)?)"


def _find(text: str, pattern: str, where: str) -> re.Match:
    """The claim ``pattern`` in ``text``; ``{N}`` in it stands for a captured decimal number."""
    m = re.search(pattern.replace("{N}", NUMBER), text, flags=re.S)
    assert m, f"{where}: the claim {pattern!r} was not found (reworded? update this test with the new wording)"
    return m


def test_rgba_model_card_table_is_the_heldout_results_of_the_shipped_weights():
    """The card's held-out table prints ``benchmarks/results/heldout_quality_rgba.json`` (one row per set, in
    order), and that file scored exactly the shipped weights."""
    results = json.loads((ROOT / "benchmarks" / "results" / "heldout_quality_rgba.json").read_text())
    assert results["rgba_sha256"] == SHIPPED["embedded-rgba"], (
        "benchmarks/results/heldout_quality_rgba.json scored other weights than the shipped embedded-rgba: re-run "
        "python benchmarks/heldout_quality.py --ood DIR --json benchmarks/results/heldout_quality_rgba.json")
    assert results["rgb_sha256"] == SHIPPED["embedded-vae"], results["rgb_sha256"]
    rows = _card_table_prints_the_sets("embedded-rgba", "| test set | mean PSNR |", results, {
        "mean PSNR": ("rgba", "psnr"), "LPIPS-Alex": ("rgba", "lpips_alex"), "alpha PSNR": ("rgba", "alpha_psnr"),
        "RGB ceiling PSNR": ("rgba", "ceiling_psnr")})
    readme_rows = _table(README, "| test set | mean PSNR |")  # the README repeats the card's rows, in order
    assert [{k: v for k, v in r.items() if k != "test set"} for r in readme_rows] == [
        {k.replace("alpha", "α"): v for k, v in r.items() if k != "test set"} for r in rows], "README RGBA table"


def test_rgba_model_card_ablation_claims_are_the_ablation_results():
    text = " ".join(_card("embedded-rgba").split())
    rows = {row["name"]: row for row in json.loads((results_dir() / "ablation.json").read_text())["rows"]}
    where = "embedded-rgba/MODEL_CARD.md"
    m = _find(text, r"without the GAN scores higher on pixel metrics \({N} dB against main's {N}\)", where)
    _printed(m.group(1), rows["no_gan"]["mean"]["psnr"], where=where)
    _printed(m.group(2), rows["main"]["mean"]["psnr"], where=where)
    m = _find(text, r"learns alpha better by step 5,000 \(alpha PSNR {N} dB against {N}\)", where)
    _printed(m.group(1), rows["naive_mse"]["alpha"]["psnr"], where=where)
    _printed(m.group(2), rows["main"]["alpha"]["psnr"], where=where)
    vs_main = rows["free_alpha_overshoot"]["vs_main"]["alpha"]
    m = _find(text, r"soft-alpha pixels −{N} ± {N} points and alpha SAD −{N} ± {N} thousand \(both real\)", where)
    for (key, part, sign), cell in zip([("soft_pct", "diff", -1), ("soft_pct", "interval95", 1), ("sad", "diff", -1),
                                        ("sad", "interval95", 1)], m.groups()):
        _printed(cell, sign * vs_main[key][part], where=f"{where} overshoot {key} {part}")
    assert vs_main["soft_pct"]["real"] and vs_main["sad"]["real"], where
    vs_main = rows["free_alpha_overshoot"]["vs_main"]
    m = _find(text, r"PSNR \+{N} ± {N} dB and alpha PSNR \+{N} ± {N} dB \(within noise\)", where)
    for (part, key), diff, half in ((("mean", "psnr"), *m.groups()[:2]), (("alpha", "psnr"), *m.groups()[2:])):
        _printed(diff, vs_main[part][key]["diff"], where=f"{where} overshoot {part} psnr")
        _printed(half, vs_main[part][key]["interval95"], where=f"{where} overshoot {part} psnr interval")
        assert not vs_main[part][key]["real"], f"{where}: the card calls the {part} PSNR difference noise"


def test_generator_card_and_json_agree_with_the_shipped_unet():
    from diffusers import UNet2DModel

    info = json.loads((models_dir() / "embedded-generator" / "generator.json").read_text())
    text = " ".join(_card("embedded-generator").split())
    unet = UNet2DModel.from_pretrained(models_dir() / "embedded-generator", use_safetensors=True)
    n = sum(p.numel() for p in unet.parameters())
    assert n == info["n_parameters"]
    _printed(_find(text, r"\({N} M parameters", "generator card").group(1), n / 1e6, where="generator card")
    assert f"the {len(info['class_names'])} clip-art categories" in text
    assert unet.config.num_class_embeds == len(info["class_names"]) + 1  # + the "unconditional" class
    assert f"scale {info['guidance_scale']}" in text and f"({info['num_inference_steps']} steps, trailing spacing)" in text
    assert f"({info['n_train_images']} images" in text and f"{info['steps_done']} steps of batch {info['config']['batch_size']}" in text
    counts = info["class_counts"]  # what unasked classes are drawn by: one per class, summing to the training images
    assert len(counts) == len(info["class_names"]) and sum(counts) == info["n_train_images"] and min(counts) > 0


def test_rgb_vae_card_parameter_count_and_scaling_factor():
    from alphavae.vae.loading import load_vae

    vae = load_vae("embedded")
    text = _card("embedded-vae")
    assert f"{sum(p.numel() for p in vae.parameters()):,} parameters" in text
    summary = json.loads((models_dir() / "embedded-vae" / "pretrain_summary.json").read_text())
    assert vae.config.scaling_factor == pytest.approx(summary["scaling_factor"])
    assert f"**{vae.config.scaling_factor:.4f}**" in text
    assert f"**{summary['steps_done']:,} steps**" in text


def test_the_ablation_table_is_every_committed_run_of_the_config():
    """``results/ablation.json`` has every variant × seed of ``configs/ablation.json`` (at least 3 seeds), and each
    seed's figures are that run's ``score.json`` in ``benchmarks/results/ablation_runs/``: the committed runs are the
    table's runs."""
    from alphavae.training.ablation import load_ablation
    ablation = load_ablation(ROOT / "configs" / "ablation.json")
    result = json.loads((results_dir() / "ablation.json").read_text())
    runs = ROOT / "benchmarks" / "results" / "ablation_runs"
    assert result["seeds"] == list(ablation.seeds) and len(ablation.seeds) >= 3
    rows = {row["name"]: row for row in result["rows"]}
    assert sorted(runs.glob("*/seed-*/score.json")) == sorted(
        runs / v / f"seed-{s}" / "score.json" for v in ablation.variants for s in ablation.seeds)
    for variant in ablation.variants:
        assert sorted(rows[variant]["seeds"]) == [str(s) for s in ablation.seeds], variant
        for seed in ablation.seeds:
            numbers = json.loads((runs / variant / f"seed-{seed}" / "score.json").read_text())["numbers"]
            for part in ("mean", "alpha", "masked_mean"):
                for key, value in numbers[part].items():
                    assert rows[variant]["seeds"][str(seed)][part][key] == pytest.approx(value, rel=1e-6), (
                        f"{variant} seed {seed} {part} {key}")


def test_the_ablation_means_intervals_and_differences_are_those_of_its_seeds():
    """Each variant's mean, 95 % half-width and paired difference from main (with its ``real`` flag), recomputed
    here from the per-seed figures with the standard library: the README's cells (checked against these keys) are
    then the committed runs' statistics, not numbers typed into the results file."""
    from alphavae.training.ablation_stats import t_quantile
    result = json.loads((results_dir() / "ablation.json").read_text())
    rows = {row["name"]: row for row in result["rows"] if row.get("seeds")}
    seeds = [str(s) for s in result["seeds"]]
    t = t_quantile(len(seeds) - 1)
    assert t == pytest.approx(4.302653, abs=1e-5)  # Student t, 2 degrees of freedom, 97.5 % quantile

    def half(values: list[float]) -> float:
        return t * statistics.stdev(values) / math.sqrt(len(values))

    for name, row in rows.items():
        for part in ("mean", "alpha", "masked_mean"):
            for key, value in row[part].items():
                per_seed = [row["seeds"][s][part][key] for s in seeds]
                where = f"{name} {part} {key}"
                assert value == pytest.approx(statistics.fmean(per_seed), rel=1e-9, abs=1e-12), where
                assert row["interval95"][part][key] == pytest.approx(half(per_seed), rel=1e-6, abs=1e-12), where
                if name == "main":
                    continue
                diffs = [row["seeds"][s][part][key] - rows["main"]["seeds"][s][part][key] for s in seeds]
                d = row["vs_main"][part][key]
                assert d["diff"] == pytest.approx(statistics.fmean(diffs), rel=1e-6, abs=1e-12), where
                assert d["interval95"] == pytest.approx(half(diffs), rel=1e-6, abs=1e-12), where
                assert d["real"] == (abs(statistics.fmean(diffs)) > half(diffs)), where
    assert result["steps"] == 5000 and result["vae"] == "embedded" and result["vae_sha256"] == SHIPPED["embedded-vae"]


def test_readme_ablation_differences_print_results_ablation_json():
    """The README's table of differences from main prints each ``vs_main`` difference ± interval, in bold exactly
    where the results file calls it real."""
    results = {row["name"]: row for row in json.loads((results_dir() / "ablation.json").read_text())["rows"]}
    rows = _table(README, "| variant − main |")
    assert sorted(row["variant − main"] for row in rows) == sorted(
        label for label, name in ABLATION_ROWS.items() if results[name].get("vs_main"))
    for row in rows:
        vs_main = results[ABLATION_ROWS[row["variant − main"]]]["vs_main"]
        for column, (section, key) in ABLATION_COLUMNS.items():
            cell, where = row[column], f"README ablation difference {row['variant − main']!r} {column}"
            d = vs_main[section][key]
            assert cell.startswith("**") == d["real"], f"{where}: bold must mean real ({d['real']})"
            diff, half = cell.strip("*").split("±")
            _printed(diff.strip().lstrip("+"), d["diff"], where=where)
            _printed(half, d["interval95"], where=where + " interval")


def test_readme_training_speed_figures_are_the_h200_run():
    """The README's training-step speeds are the rows of ``benchmarks/results/train_speed_h200_stop27.json``."""
    rows = {(r["name"], r["model"], r["batch"]): r
            for r in json.loads((ROOT / "benchmarks" / "results" / "train_speed_h200_stop27.json").read_text())}
    assert {r["machine"] for r in rows.values()} == {"NVIDIA H200"} and {r["lpips_net"] for r in rows.values()} == {"vgg"}
    text = " ".join(README.split())
    where = "README training speed"
    m = _find(text, r"embedded VAE at {N} images/s at batch 8, {N}× the official formulation's {N} in the same run", where)
    optimised, official = rows[("optimised", "embedded", 8)], rows[("official", "embedded", 8)]
    _printed(m.group(1), optimised["images_per_s"], where=where)
    _printed(m.group(2), optimised["images_per_s"] / official["images_per_s"], where=where)
    _printed(m.group(3), official["images_per_s"], where=where)
    m = _find(text, r"SD-sized VAE at {N} images/s at batch 16 with a {N} GiB peak", where)
    _printed(m.group(1), rows[("optimised", "sd", 16)]["images_per_s"], where=where)
    _printed(m.group(2), rows[("optimised", "sd", 16)]["peak_memory_gib"], where=where)
