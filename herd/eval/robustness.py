"""The robustness suite of [P §5.1.2] on a letter-choice task (MMLU): how much the score moves when only the
presentation changes.

Axes: few-shot label bias (4 shots whose answers follow AAAA, ABCD, AABB or CCDD), label variants
($ & # @ / œ § з ü / A. / A) / 1.), fixed permutations of the answer order (cyclic rotations), and 5 prompt
formats. Each condition is one letter-choice run; the reference condition ("A.", plain, original order,
0 shots) is shared by the axes that contain it and scored once.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from herd.eval.harness import evaluate_mc, subset
from herd.eval.prompts import FORMATS, LABEL_VARIANTS, move_gold, permute, pick_shots, rotation
from herd.eval.scorer import Scorer
from herd.eval.stats import ci95
from herd.eval.tasks import LETTERS, MCExample, Task

PATTERNS = ("AAAA", "ABCD", "AABB", "CCDD")  # [P §5.1.2]


@dataclass
class RobustnessRow:
    axis: str
    condition: str
    score: float
    n: int
    top_label_pct: float  # share of predictions on the most-predicted position: label bias shows here

    @property
    def ci(self) -> float:
        return ci95(self.score, self.n)


def run_robustness(
    task: Task,
    scorer: Scorer,
    limit: int | None = 100,
    shots: int = 0,
    seed: int = 1234,
    axes: tuple[str, ...] = ("label_bias", "label_variant", "permutation", "format"),
) -> list[RobustnessRow]:
    """One row per condition. `shots` applies to all axes but label bias (always 4 shots)."""
    # Evenly spaced examples: MMLU is sorted by subject, and its first hundred are all abstract algebra.
    step = max(1, len(task.examples) // limit) if limit else 1
    exs: list[MCExample] = subset(task.examples[::step], limit)
    pool = task.fewshot or task.examples
    base_shots = [pick_shots(pool, ex, shots, seed) for ex in exs]
    cache: dict[tuple, tuple[float, float]] = {}

    def run(variant: str = "A.", fmt: str = "plain", shift: int = 0, pattern: str = "") -> tuple[float, float]:
        key = (variant, fmt, shift, pattern)
        if key not in cache:
            cur = [permute(ex, rotation(len(ex.choices), shift)) for ex in exs] if shift else exs
            picked = [_pattern_shots(pool, ex, pattern, seed) for ex in exs] if pattern else base_shots
            res = evaluate_mc(
                task, scorer, mode="letter", variant=variant, fmt=fmt, examples=cur, shot_examples=picked, seed=seed
            )
            top = Counter(r["pred"] for r in res.records).most_common(1)[0][1] / max(res.n, 1)
            cache[key] = (res.metrics["acc"], top)
        return cache[key]

    rows: list[RobustnessRow] = []

    def add(axis: str, name: str, result: tuple[float, float]) -> None:
        rows.append(RobustnessRow(axis, name, result[0], len(exs), 100 * result[1]))

    if "label_bias" in axes:
        for p in PATTERNS:
            add("label_bias", f"4-shot {p}", run(pattern=p))
    if "label_variant" in axes:
        for v in LABEL_VARIANTS:
            add("label_variant", v, run(variant=v))
    if "permutation" in axes:
        for s in range(4):
            add("permutation", "original order" if s == 0 else f"rotated by {s}", run(shift=s))
    if "format" in axes:
        for f in FORMATS:
            add("format", f, run(fmt=f))
    return rows


def _pattern_shots(pool: list[MCExample], ex: MCExample, pattern: str, seed: int) -> list[MCExample]:
    """len(pattern) shots whose gold answers sit at the pattern's letters (choices swapped to get there)."""
    shots = pick_shots(pool, ex, len(pattern), seed)
    return [move_gold(s, LETTERS.index(letter)) for s, letter in zip(shots, pattern)]


def table(rows: list[RobustnessRow], model: str = "") -> str:
    """The paper-style table: one line per condition, accuracy ± 95% CI, and the spread per axis."""
    lines = [
        f"Robustness{' of ' + model if model else ''} (letter-choice accuracy, %, ± 95% CI)",
        "",
        "| axis | condition | accuracy | most-predicted position % |",
        "|---|---|---|---|",
    ]
    for r in rows:
        lines.append(f"| {r.axis} | {r.condition} | {100 * r.score:.1f} ± {100 * r.ci:.1f} | {r.top_label_pct:.0f} |")
    lines += ["", "| axis | min | max | spread (max − min) |", "|---|---|---|---|"]
    for axis in dict.fromkeys(r.axis for r in rows):
        s = [r.score for r in rows if r.axis == axis]
        lines.append(f"| {axis} | {100 * min(s):.1f} | {100 * max(s):.1f} | {100 * (max(s) - min(s)):.1f} |")
    return "\n".join(lines)


def plot(rows: list[RobustnessRow], path: str | Path, title: str = "Robustness") -> Path:
    """Bars with 95% CI per condition, grouped by axis (PNG)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    axes_names = list(dict.fromkeys(r.axis for r in rows))
    fig, axs = plt.subplots(1, len(axes_names), figsize=(3.2 * len(axes_names), 3.6), sharey=True, squeeze=False)
    for ax, name in zip(axs[0], axes_names):
        sub = [r for r in rows if r.axis == name]
        ax.bar(range(len(sub)), [100 * r.score for r in sub], yerr=[100 * r.ci for r in sub], capsize=3)
        ax.set_xticks(range(len(sub)), [r.condition for r in sub], rotation=45, ha="right", fontsize=8)
        ax.set_title(name.replace("_", " "), fontsize=10)
        ax.axhline(25, color="grey", lw=0.8, ls="--")  # chance with four answers
    axs[0][0].set_ylabel("accuracy (%)")
    fig.suptitle(title, fontsize=11)
    fig.tight_layout()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path


def rows_to_json(rows: list[RobustnessRow]) -> list[dict[str, Any]]:
    return [asdict(r) | {"ci95": r.ci} for r in rows]
