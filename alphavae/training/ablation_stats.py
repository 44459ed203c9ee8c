"""The ablation's statistics over seeds: a mean with its 95 % interval, and a variant's paired difference from main.

A short run's numbers move with the seed (the discriminator's start, the batches, the blend backgrounds), so one
run per variant cannot tell a real difference from seed noise. With several seeds each metric is reported as the
mean over the seeds ± the half-width of the 95 % Student-t interval of that mean, and a variant is compared with
``main`` seed by seed: the same seed gives both runs the same batches and backgrounds, so the paired differences
cancel the noise the two share, and a difference is *real* when its interval excludes 0.

The t quantile is computed here (Student's t CDF in closed form for integer degrees of freedom, Abramowitz &
Stegun 26.7.3–4, inverted by bisection): scipy is not a dependency, and ``torch.distributions.StudentT`` has
neither ``cdf`` nor ``icdf``.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

#: Two-sided coverage of the intervals.
COVERAGE = 0.95
#: Row sections that get intervals and differences (metric name → value in each).
SECTIONS = ("mean", "alpha", "masked_mean")


def _central_probability(t: float, df: int) -> float:
    """P(|T| < t) for Student's t with ``df`` (a positive integer) degrees of freedom."""
    theta = math.atan(t / math.sqrt(df))
    c2, term, total = math.cos(theta) ** 2, 1.0, 1.0
    if df % 2 == 0:  # sinθ (1 + 1/2 cos²θ + 1·3/(2·4) cos⁴θ + … + 1·3…(df−3)/(2·4…(df−2)) cos^(df−2)θ)
        for k in range(1, df // 2):
            term *= (2 * k - 1) / (2 * k) * c2
            total += term
        return math.sin(theta) * total
    if df == 1:
        return 2 * theta / math.pi
    for k in range(1, (df - 1) // 2):  # (2/π)(θ + sinθ cosθ (1 + 2/3 cos²θ + … + 2·4…(df−3)/(3·5…(df−2)) cos^(df−3)θ))
        term *= 2 * k / (2 * k + 1) * c2
        total += term
    return 2 / math.pi * (theta + math.sin(theta) * math.cos(theta) * total)


def t_quantile(df: int, coverage: float = COVERAGE) -> float:
    """The t with P(|T| < t) = ``coverage`` (e.g. 4.303 for df 2 at 95 %, the ``(1 + coverage) / 2`` quantile)."""
    if df < 1:
        raise ValueError(f"degrees of freedom must be >= 1, got {df}")
    lo, hi = 0.0, 1.0
    while _central_probability(hi, df) < coverage:
        lo, hi = hi, 2 * hi
    for _ in range(100):
        mid = (lo + hi) / 2
        lo, hi = (mid, hi) if _central_probability(mid, df) < coverage else (lo, mid)
    return (lo + hi) / 2


def mean_interval(values: Sequence[float | None]) -> tuple[float | None, float | None]:
    """``(mean, half-width of its 95 % Student-t interval)``; the half-width is None for one value, both are None
    when a value is missing (a metric not computed, or not finite, on some seed)."""
    if not values or any(v is None for v in values):
        return None, None
    n = len(values)
    mean = sum(values) / n
    if n < 2:
        return mean, None
    sd = math.sqrt(sum((v - mean) ** 2 for v in values) / (n - 1))
    return mean, t_quantile(n - 1) * sd / math.sqrt(n)


def mean_over(items: Sequence[Any]) -> Any:
    """The element-wise mean of equally shaped values: numbers, or dicts of them (nested); None where any is None."""
    if any(item is None for item in items):
        return None
    if isinstance(items[0], Mapping):
        return {key: mean_over([item[key] for item in items]) for key in items[0]}
    return sum(items) / len(items)


def summarize_seeds(per_seed: Mapping[str, Mapping[str, Any]]) -> dict[str, Any]:
    """A variant's row from its per-seed rows (seed → ``{"mean", "alpha", "masked_mean", "backgrounds", ...}``, all
    with the same keys and numeric values).

    Every key is the mean over the seeds (so a reader of one-seed tables reads the mean); ``seeds`` keeps each
    seed's values but its ``backgrounds`` (only their mean is kept); ``interval95`` holds the per-metric
    half-widths of :data:`SECTIONS`, None with one seed.
    """
    rows = list(per_seed.values())
    out = {key: mean_over([row[key] for row in rows]) for key in rows[0]}
    out["seeds"] = {seed: {k: v for k, v in row.items() if k != "backgrounds"} for seed, row in per_seed.items()}
    out["interval95"] = None if len(rows) < 2 else {
        key: None if out[key] is None else {m: mean_interval([row[key][m] for row in rows])[1] for m in out[key]}
        for key in SECTIONS}
    return out


def paired_difference(variant: Mapping[str, float | None], main: Mapping[str, float | None]) -> dict[str, Any]:
    """Variant − main, paired by seed (the keys): ``{"diff": mean, "interval95": half-width, "real": bool}``.

    ``real`` is True when the interval excludes 0; with one common seed the half-width and ``real`` are None.
    """
    seeds = [s for s in variant if s in main]
    diffs = [None if variant[s] is None or main[s] is None else variant[s] - main[s] for s in seeds]
    diff, half = mean_interval(diffs)
    return {"diff": diff, "interval95": half, "real": None if half is None else abs(diff) > half}


def differences_from(row: Mapping[str, Any], main: Mapping[str, Any]) -> dict[str, Any]:
    """``vs_main`` of a variant row: per section and metric, :func:`paired_difference` over the two rows' seeds."""
    out: dict[str, Any] = {}
    for key in SECTIONS:
        sections = [row["seeds"][s][key] for s in row["seeds"]] + [main["seeds"][s][key] for s in main["seeds"]]
        if any(section is None for section in sections):
            out[key] = None
            continue
        metrics = main["seeds"][next(iter(main["seeds"]))][key]
        out[key] = {m: paired_difference({s: v[key][m] for s, v in row["seeds"].items()},
                                         {s: v[key][m] for s, v in main["seeds"].items()}) for m in metrics}
    return out
