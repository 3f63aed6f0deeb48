"""Scaling-law fits as pure numpy/scipy functions [P §3.2.1].

- IsoFLOP: at each compute budget, a second-order polynomial of validation loss in log10(x) (x = tokens D
  or parameters N); its minimum is the compute-optimal point.
- Power law: x*(C) = A·C^α, a straight line in log-log space through the minima.
- Bootstrap: residual bootstrap of the per-budget quadratics (residuals rescaled for the 3 fitted
  coefficients), propagated through the power law to CIs on α, A and any extrapolated budget.
- Two-stage downstream forecast: normalized NLL of the correct answer linear in log10 FLOPs, then a sigmoid
  from that NLL to accuracy.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from numpy.typing import ArrayLike


class FitError(ValueError):
    """The data cannot support the requested fit (one line, says why)."""


# ------------------------------------------------------------------------------------------------ IsoFLOP


@dataclass(frozen=True)
class IsoFLOPFit:
    """loss(u) = a·u² + b·u + c with u = log10(x); the minimum sits at u* = -b / 2a."""

    budget: float
    a: float
    b: float
    c: float
    u_min: float  # smallest sampled log10(x): a minimum outside [u_min, u_max] is an extrapolation
    u_max: float

    @property
    def log_x_opt(self) -> float:
        return -self.b / (2 * self.a)

    @property
    def x_opt(self) -> float:
        return float(10**self.log_x_opt)

    @property
    def loss_opt(self) -> float:
        return self.c - self.b**2 / (4 * self.a)

    @property
    def inside(self) -> bool:
        return self.u_min <= self.log_x_opt <= self.u_max

    def loss(self, x: ArrayLike) -> np.ndarray:
        u = np.log10(np.asarray(x, dtype=float))
        return self.a * u**2 + self.b * u + self.c


def _check_points(x: np.ndarray, loss: np.ndarray, budget: float) -> None:
    if x.shape != loss.shape or x.ndim != 1:
        raise FitError(f"budget {budget:.3g}: x and loss must be 1-D arrays of the same length")
    if (n := len(np.unique(x))) < 3:
        raise FitError(f"budget {budget:.3g}: a second-order fit needs at least 3 distinct sizes, got {n}")
    if np.any(x <= 0) or not np.all(np.isfinite(loss)):
        raise FitError(f"budget {budget:.3g}: sizes must be positive and losses finite")


def fit_isoflop(budget: float, x: ArrayLike, loss: ArrayLike) -> IsoFLOPFit:
    """Second-order fit of loss against log10(x) at one budget; a non-convex fit has no minimum: error."""
    xa, ya = np.asarray(x, dtype=float), np.asarray(loss, dtype=float)
    _check_points(xa, ya, budget)
    u = np.log10(xa)
    a, b, c = np.polyfit(u, ya, 2)
    if a <= 0:
        raise FitError(f"budget {budget:.3g}: loss is not convex in log size (a = {a:.3g}); widen the size grid")
    return IsoFLOPFit(float(budget), float(a), float(b), float(c), float(u.min()), float(u.max()))


def _quadratic_minima(u: np.ndarray, ys: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Minima (u*, loss*) of quadratics fitted to each column of ys (n, B); NaN where not convex."""
    a, b, c = np.polyfit(u, ys, 2)
    with np.errstate(divide="ignore", invalid="ignore"):
        u_opt = np.where(a > 0, -b / (2 * a), np.nan)
        l_opt = np.where(a > 0, c - b**2 / (4 * a), np.nan)
    return u_opt, l_opt


# ------------------------------------------------------------------------------------------------ power law


@dataclass(frozen=True)
class PowerLaw:
    """x*(C) = A·C^α [P §3.2.1]."""

    alpha: float
    A: float

    def __call__(self, budget: ArrayLike) -> np.ndarray:
        return self.A * np.asarray(budget, dtype=float) ** self.alpha


def fit_power_law(budgets: ArrayLike, x_opt: ArrayLike) -> PowerLaw:
    """Least squares of log10 x* on log10 C (the paper's straight line on its log-log plot)."""
    c, x = np.asarray(budgets, dtype=float), np.asarray(x_opt, dtype=float)
    if len(c) < 2 or len(np.unique(c)) < 2:
        raise FitError(f"a power law needs at least 2 distinct budgets, got {len(np.unique(c))}")
    if np.any(c <= 0) or np.any(x <= 0):
        raise FitError("budgets and optimal sizes must be positive")
    alpha, log_a = np.polyfit(np.log10(c), np.log10(x), 1)
    return PowerLaw(float(alpha), float(10**log_a))


def fit_loss_trend(budgets: ArrayLike, loss_opt: ArrayLike) -> tuple[float, float]:
    """The compute-optimal loss as a line in log10 C: (slope, intercept). Over one or two decades the
    saturating form E + B·C^-β is indistinguishable from a line and needs more budgets than we have."""
    slope, icpt = np.polyfit(np.log10(np.asarray(budgets, dtype=float)), np.asarray(loss_opt, dtype=float), 1)
    return float(slope), float(icpt)


# ------------------------------------------------------------------------------------------------ bootstrap


@dataclass
class ScalingFit:
    """Everything fitted from an IsoFLOP sweep along one axis (tokens or parameters)."""

    isoflops: list[IsoFLOPFit]
    law: PowerLaw
    loss_trend: tuple[float, float]  # compute-optimal loss = slope·log10 C + intercept
    samples: np.ndarray  # (B, 2): bootstrap (α, log10 A)
    trend_samples: np.ndarray  # (B, 2): bootstrap (slope, intercept) of the loss trend
    level: float = 0.95

    def ci(self, values: np.ndarray) -> tuple[float, float]:
        tail = 100 * (1 - self.level) / 2
        lo, hi = np.nanpercentile(values, [tail, 100 - tail])
        return float(lo), float(hi)

    @property
    def alpha_ci(self) -> tuple[float, float]:
        return self.ci(self.samples[:, 0])

    @property
    def A_ci(self) -> tuple[float, float]:
        lo, hi = self.ci(self.samples[:, 1])
        with np.errstate(over="ignore"):  # a wild draw (minimum far outside the grid) gives inf, not an error
            return float(np.power(10.0, lo)), float(np.power(10.0, hi))

    def predict(self, budget: float) -> tuple[float, float, float]:
        """x*(C) and its bootstrap CI."""
        with np.errstate(over="ignore"):
            draws = 10 ** (self.samples[:, 1] + self.samples[:, 0] * np.log10(budget))
            return float(self.law(budget)), *self.ci(draws)

    def predict_loss(self, budget: float, x: float | None = None) -> tuple[float, float, float]:
        """Validation loss at budget C for size x (default: the compute-optimal x*(C)), with a CI.

        The compute-optimal loss follows the trend line; an off-optimal x adds the mean IsoFLOP curvature
        times its squared distance from x*(C) in log10 units."""
        curv = float(np.mean([f.a for f in self.isoflops]))
        lc = np.log10(budget)
        du = 0.0 if x is None else np.log10(x) - np.log10(float(self.law(budget)))
        du_draws = 0.0 if x is None else np.log10(x) - (self.samples[:, 1] + self.samples[:, 0] * lc)
        point = self.loss_trend[0] * lc + self.loss_trend[1] + curv * du**2
        draws = self.trend_samples[:, 0] * lc + self.trend_samples[:, 1] + curv * du_draws**2
        return float(point), *self.ci(draws)


def fit_scaling(
    budgets: Sequence[float],
    xs: Sequence[ArrayLike],
    losses: Sequence[ArrayLike],
    n_boot: int = 1000,
    seed: int = 0,
    level: float = 0.95,
) -> ScalingFit:
    """IsoFLOP quadratics per budget → minima → power law, with a residual bootstrap for CIs.

    Each bootstrap draw adds resampled residuals (scaled by √(n/(n-3)) because three fitted coefficients
    shrink them) to every budget's fitted curve, refits all quadratics and the power law."""
    if len(budgets) != len(xs) or len(xs) != len(losses):
        raise FitError("budgets, sizes and losses must have one entry per budget")
    fits = [fit_isoflop(c, x, y) for c, x, y in zip(budgets, xs, losses)]
    law = fit_power_law(budgets, [f.x_opt for f in fits])
    trend = fit_loss_trend(budgets, [f.loss_opt for f in fits])
    rng = np.random.default_rng(seed)
    u_opts, l_opts = [], []
    for f, x, y in zip(fits, xs, losses):
        u, ya = np.log10(np.asarray(x, dtype=float)), np.asarray(y, dtype=float)
        fitted = f.a * u**2 + f.b * u + f.c
        resid = (ya - fitted) * np.sqrt(len(u) / max(len(u) - 3, 1))
        draws = fitted[:, None] + rng.choice(resid, size=(len(u), n_boot), replace=True)
        uo, lo = _quadratic_minima(u, draws)
        u_opts.append(uo)
        l_opts.append(lo)
    lc = np.log10(np.asarray(budgets, dtype=float))
    samples = _line_fits(lc, np.array(u_opts))  # (B, 2): slope α, intercept log10 A
    trend_samples = _line_fits(lc, np.array(l_opts))
    return ScalingFit(fits, law, trend, samples, trend_samples, level)


def _line_fits(x: np.ndarray, ys: np.ndarray) -> np.ndarray:
    """Least-squares lines through each column of ys (n_points, B); a column with a NaN gives NaNs."""
    ok = np.all(np.isfinite(ys), axis=0)
    out = np.full((ys.shape[1], 2), np.nan)
    if ok.any():
        slope, icpt = np.polyfit(x, ys[:, ok], 1)
        out[ok] = np.stack([slope, icpt], axis=1)
    return out


# ------------------------------------------------------------------------------------------------ downstream


@dataclass(frozen=True)
class LinearFit:
    """Stage 1: normalized NLL = slope·log10 C + intercept [P §3.2.1]."""

    slope: float
    intercept: float

    def __call__(self, budget: ArrayLike) -> np.ndarray:
        return self.slope * np.log10(np.asarray(budget, dtype=float)) + self.intercept


def fit_flops_to_nll(budgets: ArrayLike, nll: ArrayLike) -> LinearFit:
    c, y = np.asarray(budgets, dtype=float), np.asarray(nll, dtype=float)
    if len(np.unique(c)) < 2:
        raise FitError("stage 1 needs runs at 2 or more budgets")
    slope, icpt = np.polyfit(np.log10(c), y, 1)
    return LinearFit(float(slope), float(icpt))


@dataclass(frozen=True)
class SigmoidFit:
    """Stage 2: acc = floor + (ceil - floor) / (1 + exp(k·(nll - mid))) [P §3.2.1]; k > 0, so accuracy
    falls from `ceil` to `floor` (chance) as the NLL of the correct answer grows."""

    floor: float
    ceil: float
    k: float
    mid: float

    def __call__(self, nll: ArrayLike) -> np.ndarray:
        z = np.clip(self.k * (np.asarray(nll, dtype=float) - self.mid), -60, 60)
        return self.floor + (self.ceil - self.floor) / (1 + np.exp(z))


def fit_nll_to_accuracy(nll: ArrayLike, acc: ArrayLike, floor: float = 0.25) -> SigmoidFit:
    """Sigmoid with its lower asymptote fixed at chance (`floor`), fitted by scipy's least squares."""
    from scipy.optimize import curve_fit

    x, y = np.asarray(nll, dtype=float), np.asarray(acc, dtype=float)
    if len(x) < 4:
        raise FitError(f"stage 2 needs at least 4 (NLL, accuracy) points, got {len(x)}")

    def f(v: np.ndarray, ceil: float, k: float, mid: float) -> np.ndarray:
        return SigmoidFit(floor, ceil, k, mid)(v)

    p0 = [max(float(y.max()), floor + 0.05), 4.0 / max(float(np.ptp(x)), 1e-3), float(np.median(x))]
    bounds = ([floor, 1e-6, -np.inf], [1.0, np.inf, np.inf])
    try:
        (ceil, k, mid), _ = curve_fit(f, x, y, p0=p0, bounds=bounds, maxfev=20000)
    except RuntimeError as e:
        raise FitError(f"stage 2 sigmoid did not converge: {e}") from None
    return SigmoidFit(floor, float(ceil), float(k), float(mid))
