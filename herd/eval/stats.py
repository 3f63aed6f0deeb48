"""Scores with their 95% confidence intervals [P §5], and the unbiased pass@k estimator."""

from __future__ import annotations

import math
from collections.abc import Sequence


def ci95(score: float, n: int) -> float:
    """Half-width of the paper's 95% interval, 1.96·√(S(1−S)/N), for a score S in [0, 1] over N examples."""
    if n <= 0:
        return float("nan")
    s = min(max(score, 0.0), 1.0)
    return 1.96 * math.sqrt(s * (1.0 - s) / n)


def ci95_mean(values: Sequence[float]) -> float:
    """Half-width of the 95% interval of a mean, 1.96·σ/√N (σ the population standard deviation): for 0/1
    values this is exactly ci95(mean, N); for F1 or bits per byte it uses their actual spread."""
    n = len(values)
    if n == 0:
        return float("nan")
    m = sum(values) / n
    return 1.96 * math.sqrt(sum((v - m) ** 2 for v in values) / n / n)


def mean(values: Sequence[float]) -> float:
    return sum(values) / len(values) if values else float("nan")


def pass_at_k(n: int, c: int, k: int) -> float:
    """P(at least one of k samples passes) given c of n samples passed, without bias (Chen et al. 2021)."""
    if k > n:
        raise ValueError(f"pass@{k} needs at least {k} samples per problem, got {n}")
    if n - c < k:
        return 1.0
    # 1 - C(n-c, k) / C(n, k), as a product to stay exact for large n.
    return 1.0 - math.prod(1.0 - k / i for i in range(n - c + 1, n + 1))


def fmt_score(score: float, n: int) -> str:
    """'63.2 ± 2.1' in percent."""
    return f"{100 * score:.1f} ± {100 * ci95(score, n):.1f}"
