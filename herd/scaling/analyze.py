"""`herd scaling fit`: sweep results → IsoFLOP minima, power laws, extrapolation, downstream forecast, plots.

Writes `<run_dir>/fit.json` and PNGs beside it. The held-out run (config `holdout`) is excluded from every
fit; its validation loss is predicted from the fits and compared with the measurement.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np

from herd.core.io import atomic_write_text
from herd.core.logging import get_logger
from herd.scaling.config import ScalingConfig
from herd.scaling.fit import FitError, ScalingFit, fit_flops_to_nll, fit_nll_to_accuracy, fit_scaling
from herd.scaling.sweep import SWEEP_LOG, collect

log = get_logger(__name__)


def by_budget(results: list[dict[str, Any]], key: str) -> tuple[list[float], list[np.ndarray], list[np.ndarray]]:
    """Budgets (ascending) with each budget's x (`tokens` or `params`) and validation losses."""
    budgets = sorted({r["budget"] for r in results})
    xs = [np.array([r[key] for r in results if r["budget"] == c], dtype=float) for c in budgets]
    ys = [np.array([r["val_loss"] for r in results if r["budget"] == c], dtype=float) for c in budgets]
    return budgets, xs, ys


def _law_summary(fit: ScalingFit, target: float) -> dict[str, Any]:
    point, lo, hi = fit.predict(target)
    return {
        "alpha": fit.law.alpha,
        "alpha_ci": fit.alpha_ci,
        "A": fit.law.A,
        "A_ci": fit.A_ci,
        "minima": [
            {"budget": f.budget, "x_opt": f.x_opt, "loss_opt": f.loss_opt, "inside_grid": f.inside}
            for f in fit.isoflops
        ],
        "target_budget": target,
        "target_x_opt": point,
        "target_x_opt_ci": (lo, hi),
    }


def downstream(train: list[dict[str, Any]], fit: ScalingFit) -> dict[str, Any] | None:
    """Stage 1 on each budget's best run (the compute-optimal model, as the paper), stage 2 on every run."""
    scored = [r for r in train if "nll_norm" in r]
    if len({r["budget"] for r in scored}) < 2:
        return None
    budgets = [f.budget for f in fit.isoflops]
    best = [min((r for r in scored if r["budget"] == c), key=lambda r: r["val_loss"]) for c in budgets]
    stage1 = fit_flops_to_nll([r["flops"] for r in best], [r["nll_norm"] for r in best])
    out: dict[str, Any] = {"stage1": {"slope": stage1.slope, "intercept": stage1.intercept}, "stage2": None}
    try:
        chance = float(np.mean([r["chance"] for r in scored]))
        stage2 = fit_nll_to_accuracy([r["nll_norm"] for r in scored], [r["accuracy"] for r in scored], floor=chance)
        out["stage2"] = {"floor": stage2.floor, "ceil": stage2.ceil, "k": stage2.k, "mid": stage2.mid}
    except FitError as e:
        log.warning("downstream stage 2 skipped: %s", e)
    return out


def predict_holdout(fit: ScalingFit, held: dict[str, Any], key: str) -> dict[str, Any]:
    """The held-out run's loss from fits that never saw it: the compute-optimal loss trend at its budget,
    plus the mean IsoFLOP curvature for its distance from the law's optimum x*(C). The measurement is
    read only after the prediction is made, to compare."""
    budget, x = held["budget"], held[key]
    pred, lo, hi = fit.predict_loss(budget, x)
    x_opt, x_lo, x_hi = fit.predict(budget)
    out = {
        "budget": budget,
        "size": held["size"],
        "x": x,
        "x_opt": x_opt,  # where the law puts the optimum at this budget
        "x_opt_ci": (x_lo, x_hi),
        "predicted": pred,
        "predicted_ci": (lo, hi),
    }
    measured = held["val_loss"]
    return {**out, "measured": measured, "relative_error": (pred - measured) / measured}


def timing(cfg: ScalingConfig, results: list[dict[str, Any]]) -> dict[str, Any]:
    """Sums of the per-run wall and CPU times (training + benchmark; with one thread per run, CPU time is
    what a run takes on an idle core) and the wall time of each `sweep` call."""
    calls = []
    log_path = Path(cfg.run_dir) / SWEEP_LOG
    if log_path.is_file():
        calls = [json.loads(line) for line in log_path.read_text().splitlines() if line.strip()]
    return {
        "runs": len(results),
        "run_seconds_sum": float(sum(r.get("seconds", 0.0) for r in results)),
        "run_cpu_seconds_sum": float(sum(r.get("cpu_seconds", 0.0) for r in results)),
        "sweep_calls": calls,
    }


def analyze(cfg: ScalingConfig, n_boot: int = 1000, plots: bool = True) -> dict[str, Any]:
    results = collect(cfg)
    train = [r for r in results if not r["holdout"]]
    if not train:
        raise FileNotFoundError(f"{cfg.run_dir}/runs: no finished runs; run `herd scaling sweep` first")
    key = "tokens" if cfg.axis == "tokens" else "params"
    # Each run's actual FLOPs differ from its nominal budget by the rounding to whole steps; the law is
    # fitted against the nominal budget, the grid's label.
    fits = {k: fit_scaling(*by_budget(train, k), n_boot=n_boot, seed=cfg.seed) for k in ("tokens", "params")}
    report: dict[str, Any] = {
        "axis": key,
        "runs": len(train),
        "tokens": _law_summary(fits["tokens"], cfg.target_budget),
        "params": _law_summary(fits["params"], cfg.target_budget),
        "downstream": downstream(train, fits[key]),
    }
    held = [r for r in results if r["holdout"]]
    report["holdout"] = predict_holdout(fits[key], held[0], key) if held else None
    report["timing"] = timing(cfg, results)
    out = Path(cfg.run_dir)
    if plots:
        from herd.scaling.plots import plot_all

        paths = plot_all(out, train, held, fits[key], key, report["downstream"], report["holdout"])
        report["plots"] = [str(p) for p in paths]
    atomic_write_text(out / "fit.json", json.dumps(report, indent=2, default=float) + "\n")
    return report


def format_report(report: dict[str, Any]) -> str:
    lines = []
    for axis, name in (("tokens", "D*(C) (tokens)"), ("params", "N*(C) (parameters)")):
        s = report[axis]
        lines.append(
            f"{name} = A·C^α: α = {s['alpha']:.3f} [{s['alpha_ci'][0]:.3f}, {s['alpha_ci'][1]:.3f}], "
            f"A = {s['A']:.3g} [{s['A_ci'][0]:.3g}, {s['A_ci'][1]:.3g}] (95% bootstrap CI)"
        )
        for m in s["minima"]:
            flag = "" if m["inside_grid"] else "  (minimum outside the sampled sizes: extrapolated)"
            lines.append(f"  C {m['budget']:.2e}: optimum {m['x_opt']:.4g}, loss {m['loss_opt']:.4f}{flag}")
        lo, hi = s["target_x_opt_ci"]
        lines.append(f"  at C = {s['target_budget']:.2e}: {s['target_x_opt']:.4g} [{lo:.4g}, {hi:.4g}]")
    d = report.get("downstream")
    if d:
        s1 = d["stage1"]
        lines.append(f"stage 1: nll_norm = {s1['slope']:.4f}·log10 C + {s1['intercept']:.4f}")
        if d["stage2"]:
            s2 = d["stage2"]
            lines.append(f"stage 2: acc = {s2['floor']:.3f} + ({s2['ceil']:.3f} - {s2['floor']:.3f}) / "
                         f"(1 + exp({s2['k']:.3g}·(nll - {s2['mid']:.3f})))")  # fmt: skip
    h = report.get("holdout")
    if h:
        lo, hi = h["predicted_ci"]
        verdict = "within" if abs(h["relative_error"]) <= 0.03 else "OUTSIDE"
        x_name = "tokens" if report["axis"] == "tokens" else "parameters"
        lines.append(
            f"held-out run C {h['budget']:.2e} {h['size']} ({h['x']:.4g} {x_name}; the law's optimum there: "
            f"{h['x_opt']:.4g} [{h['x_opt_ci'][0]:.4g}, {h['x_opt_ci'][1]:.4g}])"
        )
        lines.append(
            f"  predicted loss {h['predicted']:.4f} [{lo:.4f}, {hi:.4f}], measured {h['measured']:.4f}, "
            f"error {100 * h['relative_error']:+.2f}% ({verdict} 3%)"
        )
    t = report.get("timing")
    if t and t["run_seconds_sum"]:
        walls = ", ".join(f"{c['wall_seconds']:.0f}s ({c['trained']} runs, {c['workers']} workers)"
                          for c in t["sweep_calls"])  # fmt: skip
        cpu = f" ({t['run_cpu_seconds_sum']:.0f} CPU-s)" if t["run_cpu_seconds_sum"] else ""
        lines.append(f"{t['runs']} runs, per-run times sum to {t['run_seconds_sum']:.0f}s{cpu}")
        lines.append(f"sweep wall time per `sweep` call: {walls or 'n/a (no sweeps.jsonl)'}")
    for p in report.get("plots", []):
        lines.append(f"plot: {p}")
    return "\n".join(lines)
