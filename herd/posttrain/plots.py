"""Per-round post-training metrics: a flat table (for summary.json and reports) and one PNG of it."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any


def _get(d: Mapping[str, Any], *keys: str) -> float | None:
    """d[k1][k2]…, or None when any level is missing (a stage may be switched off)."""
    for k in keys:
        if not isinstance(d, Mapping) or k not in d:
            return None
        d = d[k]
    return float(d) if isinstance(d, int | float) else None


def metrics_table(rounds: Sequence[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """One row per round from the rounds' stage counts (held-out numbers, before → after each stage)."""
    rows = []
    for info in rounds:
        row: dict[str, Any] = {
            "round": info["round"],
            "rm_accuracy_before": _get(info, "rm", "held_out_before", "accuracy"),
            "rm_accuracy": _get(info, "rm", "held_out", "accuracy"),
            "rs_best_of_k": _get(info, "rs", "best_of_k_mean_score"),
            "rs_mean_of_k": _get(info, "rs", "all_samples_mean_score"),
            "sft_loss_before": _get(info, "sft", "held_out_loss_before"),
            "sft_loss": _get(info, "sft", "held_out_loss"),
            "dpo_reward_accuracy_sft": _get(info, "dpo", "held_out_sft", "reward_accuracy"),
            "dpo_reward_accuracy": _get(info, "dpo", "held_out_dpo", "reward_accuracy"),
            "dpo_reward_margin": _get(info, "dpo", "held_out_dpo", "reward_margin"),
            "dpo_logp_margin_sft": _get(info, "dpo", "held_out_sft", "logp_margin"),
            "dpo_logp_margin": _get(info, "dpo", "held_out_dpo", "logp_margin"),
            "dpo_logp_accuracy_sft": _get(info, "dpo", "held_out_sft", "logp_accuracy"),
            "dpo_logp_accuracy": _get(info, "dpo", "held_out_dpo", "logp_accuracy"),
            "prune_in": _get(info, "prune", "in"),
            "prune_kept": _get(info, "prune", "kept"),
        }
        rows.append(row)
    return rows


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")  # files only, no display
    import matplotlib.pyplot as plt

    return plt


# (title, y label, [(column, legend label, line style)])
PANELS = [
    ("Reward model", "held-out pair accuracy", [("rm_accuracy_before", "base", ":"), ("rm_accuracy", "trained", "-")]),
    ("SFT", "held-out loss", [("sft_loss_before", "before", ":"), ("sft_loss", "after", "-")]),
    (
        "DPO preference accuracy",
        "held-out accuracy",
        [
            ("dpo_logp_accuracy_sft", "log-prob, before DPO", ":"),
            ("dpo_logp_accuracy", "log-prob, after DPO", "--"),
            ("dpo_reward_accuracy", "implicit reward, after", "-"),
        ],
    ),
    (
        "DPO margin (held out)",
        "log p(chosen) − log p(rejected)",
        [
            ("dpo_logp_margin_sft", "before DPO", ":"),
            ("dpo_logp_margin", "after DPO", "--"),
            ("dpo_reward_margin", "β·log-ratio, after", "-"),
        ],
    ),
    ("Rejection sampling", "RM score", [("rs_best_of_k", "best of K", "-"), ("rs_mean_of_k", "mean of K", "--")]),
    ("Data pruning", "SFT dialogs", [("prune_in", "in", ":"), ("prune_kept", "kept", "-")]),
]


def plot_rounds(rows: Sequence[Mapping[str, Any]], path: str | Path) -> Path:
    """A 2×3 grid of the table's columns by round; a panel with no data says so."""
    plt = _pyplot()
    fig, axes = plt.subplots(2, 3, figsize=(12, 6.4))
    rounds = [r["round"] for r in rows]
    for ax, (title, ylabel, series) in zip(axes.flat, PANELS):
        drawn = False
        for col, label, style in series:
            pts = [(x, r[col]) for x, r in zip(rounds, rows) if r.get(col) is not None]
            if pts:
                ax.plot(*zip(*pts), style, marker="o", label=label)
                drawn = True
        ax.set_title(title)
        ax.set_xlabel("round")
        ax.set_ylabel(ylabel)
        ax.set_xticks(rounds)
        if drawn:
            ax.legend(fontsize=8)
        else:
            ax.text(0.5, 0.5, "off in this run", ha="center", va="center", transform=ax.transAxes, color="gray")
    fig.suptitle("herd posttrain: held-out metrics by round")
    fig.tight_layout()
    path = Path(path)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def capability_table(summary: Mapping[str, Any]) -> list[dict[str, Any]]:
    """One row per capability and model (base, round 1, ...): its evaluation with the 95% CI half-width, and
    the data its pipeline kept and dropped that round [P §4.3]."""
    rows = []
    evals = [(0, summary.get("capability_evals_base") or {}, {})]
    evals += [(i["round"], i.get("capability_evals") or {}, i) for i in summary["rounds"]]
    for r, per_cap, info in evals:
        for name, e in per_cap.items():
            data = info.get(f"cap-{name}", {})
            rows.append(
                {
                    "capability": name,
                    "round": r,
                    "metric": e.get("metric"),
                    "value": e.get("value"),
                    "ci95": e.get("ci95"),
                    "n": e.get("n"),
                    "kept": data.get("kept"),
                    "dropped": data.get("dropped"),
                }
            )
    return rows


def plot_capabilities(rows: Sequence[Mapping[str, Any]], path: str | Path) -> Path:
    """Each capability's evaluation by round (0 = the base model) with its 95% CI as error bars."""
    plt = _pyplot()
    names = sorted({r["capability"] for r in rows})
    fig, axes = plt.subplots(1, len(names), figsize=(3.6 * len(names), 3.2), squeeze=False)
    for ax, name in zip(axes.flat, names):
        pts = [r for r in rows if r["capability"] == name and r.get("value") is not None]
        ax.errorbar([r["round"] for r in pts], [r["value"] for r in pts], yerr=[r.get("ci95") or 0 for r in pts],
                    marker="o", capsize=3)  # fmt: skip
        ax.set_title(name)
        ax.set_xlabel("round (0 = base)")
        ax.set_ylabel(pts[0]["metric"] if pts else "")
        ax.set_xticks(sorted({r["round"] for r in pts}))
    fig.suptitle("herd posttrain: capability evaluations (± 95% CI)")
    fig.tight_layout()
    path = Path(path)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path
