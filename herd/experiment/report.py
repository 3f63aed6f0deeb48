"""The experiment's report: a table per arm (mean ± 95% CI over seeds), the paired comparisons with their
verdicts, every run's value, and a plot of the runs and arm means, as Markdown and HTML."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from herd.recipe.report import Figure, Paragraph, Section, Table, write_sections


def _pm(mean: float, half: float) -> str:
    return f"{mean:.4g} ± {half:.2g}"


def write_experiment_report(
    title: str,
    claim: str,
    metric: str,
    analysis: Mapping[str, Any],
    records: Sequence[Mapping[str, Any]],
    out: Path,
    also: Mapping[str, Mapping[str, Any]] | None = None,
) -> Path:
    arms = analysis["arms"]
    blocks: list[Any] = [Paragraph(f"Claim: {claim}") if claim else Paragraph(f"Metric: {metric}")]
    blocks += _tables(metric, analysis)
    blocks.append(Figure(_plot(arms, metric, out), f"{metric} per run and arm mean ± 95% CI"))
    for name, result in (also or {}).items():
        blocks += _tables(name, result)
    runs = [[r["arm"], r["seed"], f"{r['value']:.5g}", f"{r.get('wall_s', 0):.0f}"] for r in records]
    blocks.append(Table(["arm", "seed", metric, "wall s"], runs, caption="Every run"))
    return write_sections(title, [Section("result", "Result", blocks)], out)


def _tables(metric: str, analysis: Mapping[str, Any]) -> list[Any]:
    """The per-arm table and the paired comparisons of one metric."""
    arms = analysis["arms"]
    rows = [[a["arm"], a["n"], _pm(a["mean"], a["ci95"]), f"{a['std']:.3g}", f"{a['wall_s']:.0f}"] for a in arms]
    blocks: list[Any] = [Table(["arm", "seeds", f"{metric} (mean ± 95% CI)", "std", "wall s (all seeds)"], rows)]
    comps = [
        [c["arm"], c["baseline"], c["n_pairs"], _pm(c["diff"], c["ci95"]), f"{c['p_value']:.3g}", c["verdict"]]
        for c in analysis["comparisons"]
    ]
    if comps:
        head = ["arm", "vs", "pairs", "difference (mean ± 95% CI)", "paired t-test p", "verdict"]
        blocks.append(Table(head, comps, caption=f"Paired over shared seeds (Student's t, n − 1 df): {metric}"))
    return blocks


def _plot(arms: Sequence[Mapping[str, Any]], metric: str, out: Path) -> str:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(1.6 + 1.3 * len(arms), 3.4))
    for i, a in enumerate(arms):
        ax.plot([i] * len(a["values"]), a["values"], "o", color="#999", ms=4)
        ci = 0 if a["ci95"] != a["ci95"] else a["ci95"]  # nan with one seed
        ax.errorbar([i + 0.15], [a["mean"]], yerr=[ci], fmt="s", capsize=4, color="C0")
    ax.set_xticks(range(len(arms)), [a["arm"] for a in arms], rotation=20)
    ax.set_ylabel(metric)
    fig.tight_layout()
    fig.savefig(Path(out) / "arms.png", dpi=110)
    plt.close(fig)
    return "arms.png"
