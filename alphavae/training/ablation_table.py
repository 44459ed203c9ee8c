"""The ablation's Markdown table: one row per model, with the setup and notes under it.

With one seed per variant it prints each value as it is (the layout of every table written before seeds);
with several it prints ``mean ± half-width`` of the 95 % interval (:mod:`alphavae.training.ablation_stats`)
and a second table: each variant's difference from ``main``, paired by seed, in bold where it is real.
"""

from __future__ import annotations

from typing import Any

from alphavae.metric.alpha_shares import OPAQUE, TRANSPARENT
from alphavae.training.ablation_stats import COVERAGE

#: The metric columns: header, row section, metric, digits.
COLUMNS = (("PSNR", "mean", "psnr", 2), ("SSIM", "mean", "ssim", 4), ("LPIPS", "mean", "lpips", 4),
           ("PSNR (α>0)", "masked_mean", "psnr", 2), ("α PSNR", "alpha", "psnr", 2), ("α SAD", "alpha", "sad", 2),
           ("α grad", "alpha", "grad", 4), ("soft α %", "alpha", "soft_pct", 1))


def _fmt(value: float | None, digits: int) -> str:
    return "—" if value is None else f"{value:.{digits}f}"


def _share(value: float | None) -> str:
    """A gradient share as a percentage, with enough digits to show a share of 10⁻⁵."""
    return "off" if value is None else f"{100 * value:.3g} %"


def _section(row: dict[str, Any], key: str, part: str | None = None) -> dict[str, Any]:
    """``row[key]`` (or ``row[part][key]``) as a dict; {} where it is missing or None."""
    holder = (row.get(part) or {}) if part else row
    return holder.get(key) or {}


def _value_cell(row: dict[str, Any], section: str, metric: str, digits: int, missing: str) -> str:
    value = _section(row, section).get(metric)
    if value is None:
        return missing
    half = _section(row, section, "interval95").get(metric)
    return _fmt(value, digits) + ("" if half is None else f" ± {_fmt(half, digits)}")


def _difference_cell(row: dict[str, Any], section: str, metric: str, digits: int) -> str:
    d = _section(row, section, "vs_main").get(metric) or {}
    if d.get("diff") is None:
        return "—"
    text = f"{d['diff']:+.{digits}f}" + ("" if d.get("interval95") is None else f" ± {_fmt(d['interval95'], digits)}")
    return f"**{text}**" if d.get("real") else text


def _columns(result: dict[str, Any]) -> tuple[tuple[str, str, str, int], ...]:
    """The :data:`COLUMNS` some row has a key for (tables written before a column existed print as they were)."""
    return tuple(c for c in COLUMNS if any(c[2] in _section(row, c[1]) for row in result["rows"]))


def _header(first: str, columns: tuple[tuple[str, str, str, int], ...]) -> list[str]:
    return [f"| {first} | " + " | ".join(c[0] for c in columns) + " |", "|---|" + "---|" * len(columns)]


#: How the table names the machine of a run whose ``run.json`` predates the field (the trainer writes it since stop 26).
NOT_RECORDED = "a machine its run.json does not name"


def _machines(result: dict[str, Any]) -> str:
    """Where the runs trained (their ``run.json``; results files before stop 26 name one machine, the scoring one) and
    where this table was made."""
    trained = result.get("trained_on")
    if trained is None:
        return f"machine: {result['machine']}"
    runs = ", ".join(f"{NOT_RECORDED if machine == 'not recorded' else machine} ({count} run{'s' * (count != 1)})"
                     for machine, count in trained.items())
    return f"trained on: {runs or 'no run found'}; this table made on {result['machine']}"


def markdown_table(result: dict[str, Any]) -> str:
    """The ablation table as Markdown (one row per model), with the setup and notes under it."""
    seeds = result.get("seeds") or []
    columns = _columns(result)
    lines = _header("model", columns)
    for row in result["rows"]:
        name = row["name"] + (f" (= {row['same_run_as']})" if row.get("same_run_as") else "")
        cells = [_value_cell(row, section, metric, digits,
                             "unavailable" if metric == "lpips" and result["lpips_unavailable"] else "—")
                 for _, section, metric, digits in columns]
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    compared = [row for row in result["rows"] if row.get("vs_main")]
    if len(seeds) > 1 and compared:
        lines += ["", (f"Difference from main ({100 * COVERAGE:.0f} % interval, paired by seed; **bold**: the interval "
                       "excludes 0, a real difference):"), "", *_header("variant", columns)]
        lines += [f"| {row['name']} | " + " | ".join(_difference_cell(row, section, metric, digits)
                                                    for _, section, metric, digits in columns) + " |" for row in compared]
    shares = [row for row in result["rows"] if row.get("gradient_shares")]
    if shares:
        terms = list(dict.fromkeys(t for row in shares for t in row["gradient_shares"]))
        lines += ["", "Share of the gradient on the VAE's weights at the start (converted model, GAN on), per term:", "",
                  "| variant | " + " | ".join(terms) + " |", "|---|" + "---|" * len(terms)]
        lines += [f"| {row['name']} | " + " | ".join(_share(row["gradient_shares"].get(t)) for t in terms) + " |" for row in shares]
    lines += ["", (f"Held-out split: {result['n_images']} images at {result['image_size']} px (square, transparent "
                   "padding); composite metrics are the mean over the 9 backgrounds; SAD and grad in thousands (lower is "
                   "better)" + ("" if result.get("real_soft_alpha_pct") is None else
                               f"; soft α %: pixels with {TRANSPARENT} ≤ α ≤ {OPAQUE}, {result['real_soft_alpha_pct']:.1f} % in the "
                               "held-out images themselves") + "."),
              (f"Training: {result['steps']} steps, global batch {result['batch_size']}, from `{result['vae']}`; "
               + _machines(result) + ".")]
    if len(seeds) > 1:
        lines.append(f"Seeds: {len(seeds)} runs per variant (seeds {', '.join(map(str, seeds))}); a variant's value is "
                     f"the mean over its seeds ± the half-width of the {100 * COVERAGE:.0f} % Student-t interval of that mean "
                     f"({len(seeds) - 1} degrees of freedom); the two reference rows are deterministic, computed once.")
    lines += [f"Command: `{result['command']}`", ""]
    lines += [f"- {note}" for note in result["notes"]]
    return "\n".join(lines) + "\n"
