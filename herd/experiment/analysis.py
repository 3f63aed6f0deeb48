"""Per-arm means with 95% confidence intervals and paired comparisons between arms over shared seeds.

Seeds are few (2–5), so intervals use Student's t with n − 1 degrees of freedom, not the normal 1.96; and
arms run with the same seeds are compared on the per-seed differences (a paired t-test), which removes the
variance the arms share (same data order, same initialization). A claim's verdict follows the interval
of the difference: "holds" when it excludes zero on the claimed side, "does not hold" when it excludes
zero on the other side, otherwise "inconclusive".
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from typing import Any

from scipy import stats


@dataclass
class ArmStats:
    arm: str
    n: int
    mean: float
    std: float
    ci95: float  # half-width, Student's t
    values: list[float]
    wall_s: float  # total over the arm's runs


@dataclass
class Comparison:
    arm: str
    baseline: str
    n_pairs: int
    diff: float  # mean of (arm − baseline) over shared seeds
    ci95: float  # half-width of the paired interval
    p_value: float  # two-sided paired t-test
    verdict: str  # holds / does not hold / inconclusive: "arm is better than baseline"


def t_half_width(values: Sequence[float]) -> float:
    """95% half-width of the mean of `values`: t(0.975, n−1)·s/√n (nan below two values)."""
    n = len(values)
    if n < 2:
        return float("nan")
    mean = sum(values) / n
    s = math.sqrt(sum((v - mean) ** 2 for v in values) / (n - 1))
    return float(stats.t.ppf(0.975, n - 1)) * s / math.sqrt(n)


def arm_stats(arm: str, records: Sequence[Mapping[str, Any]]) -> ArmStats:
    values = [float(r["value"]) for r in records]
    n, mean = len(values), sum(values) / len(values)
    std = math.sqrt(sum((v - mean) ** 2 for v in values) / (n - 1)) if n > 1 else float("nan")
    return ArmStats(arm, n, mean, std, t_half_width(values), values, sum(r.get("wall_s", 0.0) for r in records))


def compare(arm: str, baseline: str, records: Sequence[Mapping[str, Any]], higher_is_better: bool) -> Comparison:
    """Paired over the seeds both arms ran: the mean difference, its 95% interval, p and the verdict."""
    by = {(r["arm"], r["seed"]): float(r["value"]) for r in records}
    seeds = sorted({s for a, s in by if a == arm} & {s for a, s in by if a == baseline})
    diffs = [by[(arm, s)] - by[(baseline, s)] for s in seeds]
    if not diffs:
        raise ValueError(f"arms {arm!r} and {baseline!r} share no seed to compare on")
    diff, half = sum(diffs) / len(diffs), t_half_width(diffs)
    if len(diffs) < 2 or all(d == diffs[0] for d in diffs):
        p = float("nan") if len(diffs) < 2 else (0.0 if diffs[0] != 0 else 1.0)
    else:
        p = float(stats.ttest_rel([by[(arm, s)] for s in seeds], [by[(baseline, s)] for s in seeds]).pvalue)
    return Comparison(arm, baseline, len(diffs), diff, half, p, _verdict(diff, half, higher_is_better))


def _verdict(diff: float, half: float, higher_is_better: bool) -> str:
    if math.isnan(half):
        return "inconclusive"
    lo, hi = diff - half, diff + half
    better, worse = (lo > 0, hi < 0) if higher_is_better else (hi < 0, lo > 0)
    return "holds" if better else "does not hold" if worse else "inconclusive"


def analyse(records: Sequence[Mapping[str, Any]], baseline: str, higher_is_better: bool) -> dict[str, Any]:
    """Stats per arm (in first-seen order) and each other arm compared with `baseline`."""
    arms = list(dict.fromkeys(r["arm"] for r in records))
    per_arm = [arm_stats(a, [r for r in records if r["arm"] == a]) for a in arms]
    comps = [compare(a, baseline, records, higher_is_better) for a in arms if a != baseline]
    return {"arms": [asdict(s) for s in per_arm], "comparisons": [asdict(c) for c in comps]}
