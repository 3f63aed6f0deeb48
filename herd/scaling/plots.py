"""PNG plots of a fitted sweep: IsoFLOP curves with minima, the power law, both downstream stages."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from herd.scaling.fit import LinearFit, ScalingFit, SigmoidFit


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")  # files only, no display
    import matplotlib.pyplot as plt

    return plt


def plot_isoflops(
    path: Path,
    runs: list[dict[str, Any]],
    held: list[dict[str, Any]],
    fit: ScalingFit,
    key: str,
    prediction: dict[str, Any] | None = None,
) -> Path:
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(6.4, 4.4))
    colors = plt.cm.viridis(np.linspace(0, 0.85, len(fit.isoflops)))
    for f, color in zip(fit.isoflops, colors):
        pts = [r for r in runs if r["budget"] == f.budget]
        ax.scatter([r[key] for r in pts], [r["val_loss"] for r in pts], color=color, label=f"{f.budget:.1e} FLOPs")
        grid = np.logspace(min(f.u_min, f.log_x_opt) - 0.1, max(f.u_max, f.log_x_opt) + 0.1, 100)
        ax.plot(grid, f.loss(grid), color=color, lw=1)
        ax.scatter([f.x_opt], [f.loss_opt], color=color, marker="*", s=160, edgecolor="black", zorder=3)
    for h in held:
        ax.scatter([h[key]], [h["val_loss"]], color="red", marker="D", label=f"held out {h['budget']:.1e}")
    if prediction:
        p, (lo, hi) = prediction["predicted"], prediction["predicted_ci"]
        ax.errorbar([prediction["x"]], [p], yerr=[[p - lo], [hi - p]], color="red", marker="o", mfc="none",
                    capsize=3, ls="none", label="its prediction (95% CI)")  # fmt: skip
    ax.set_xscale("log")
    ax.set_xlabel("training tokens D" if key == "tokens" else "parameters N")
    ax.set_ylabel("validation loss")
    ax.set_title("IsoFLOP curves (stars: fitted minima)")
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path


def plot_power_law(path: Path, fit: ScalingFit, key: str) -> Path:
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(6.4, 4.4))
    budgets = np.array([f.budget for f in fit.isoflops])
    ax.scatter(budgets, [f.x_opt for f in fit.isoflops], color="black", zorder=3, label="IsoFLOP minima")
    grid = np.logspace(np.log10(budgets.min()) - 0.3, np.log10(budgets.max()) + 1, 100)  # a decade past the data
    band = np.array([fit.predict(c)[1:] for c in grid])
    ax.plot(grid, fit.law(grid), label=f"{fit.law.A:.3g}·C^{fit.law.alpha:.3f}")
    ax.fill_between(grid, band[:, 0], band[:, 1], alpha=0.25, label="95% bootstrap CI")
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel("compute budget C (FLOPs)")
    ax.set_ylabel("compute-optimal " + ("tokens D*" if key == "tokens" else "parameters N*"))
    ax.set_title("Power law of the compute-optimal point")
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path


def plot_downstream(path: Path, runs: list[dict[str, Any]], down: dict[str, Any]) -> Path:
    plt = _pyplot()
    fig, (a1, a2) = plt.subplots(1, 2, figsize=(10, 4.2))
    scored = [r for r in runs if "nll_norm" in r]
    s1 = LinearFit(**down["stage1"])
    a1.scatter([r["flops"] for r in scored], [r["nll_norm"] for r in scored], color="gray", s=12, label="all runs")
    c = np.logspace(np.log10(min(r["flops"] for r in scored)), np.log10(max(r["flops"] for r in scored)) + 1, 50)
    a1.plot(c, s1(c), label="stage 1 (fit on each budget's best run)")
    a1.set_xscale("log")
    a1.set_xlabel("training FLOPs")
    a1.set_ylabel(f"normalized NLL of the correct answer ({scored[0].get('benchmark', '')})")
    a1.legend(fontsize=8)
    a2.scatter([r["nll_norm"] for r in scored], [r["accuracy"] for r in scored], color="gray", s=12)
    if down.get("stage2"):
        s2 = SigmoidFit(**down["stage2"])
        x = np.linspace(min(r["nll_norm"] for r in scored) - 1, max(r["nll_norm"] for r in scored) + 0.2, 100)
        a2.plot(x, s2(x), label="stage 2 sigmoid")
        a2.legend(fontsize=8)
    a2.set_xlabel("normalized NLL of the correct answer")
    a2.set_ylabel("accuracy")
    fig.suptitle("Two-stage downstream forecast [P §3.2.1]")
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path


def plot_all(
    out: Path,
    runs: list[dict[str, Any]],
    held: list[dict[str, Any]],
    fit: ScalingFit,
    key: str,
    down: dict[str, Any] | None,
    prediction: dict[str, Any] | None = None,
) -> list[Path]:
    out.mkdir(parents=True, exist_ok=True)
    paths = [
        plot_isoflops(out / "isoflops.png", runs, held, fit, key, prediction),
        plot_power_law(out / "power_law.png", fit, key),
    ]
    if down:
        paths.append(plot_downstream(out / "downstream.png", runs, down))
    return paths
