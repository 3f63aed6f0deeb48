"""Benchmark signals for the two-stage downstream forecast [P §3.2.1].

The paper predicts accuracy from the normalized negative log-likelihood of the correct answer. Here it is
the NLL of the correct continuation divided by the answer's length in characters (delimiter excluded),
the same normalization as lm-eval's acc_norm, so it compares across tokenizers; scored zero-shot cloze
with herd.eval's harness.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any


def normalized_nll(records: list[dict[str, Any]], choices: list[list[str]]) -> float:
    """Mean over examples of -log P(correct answer) / len(answer in characters)."""
    if not records:
        raise ValueError("no scored examples")
    per = [-r["lls"][r["gold"]] / max(len(ch[r["gold"]]), 1) for r, ch in zip(records, choices)]
    return float(sum(per) / len(per))


def score_task(model_dir: Path, task: str, path: str = "", limit: int = 0, device: str = "cpu") -> dict[str, Any]:
    """Score a saved herd model (a folder with weights and tokenizer.model) on one multiple-choice task."""
    from herd.eval.harness import evaluate_mc, subset
    from herd.eval.scorer import load_scorer
    from herd.eval.tasks import load_task

    t = load_task(task, path=path or None)
    if t.kind != "mc":
        raise ValueError(f"benchmark {t.name}: need a multiple-choice task, got kind {t.kind!r}")
    examples = subset(t.examples, limit or None)
    scorer = load_scorer(model_dir, device=device)
    result = evaluate_mc(t, scorer, shots=0, mode="cloze", examples=examples)
    n_choices = sum(len(ex.choices) for ex in examples) / len(examples)
    return {
        "benchmark": t.name,
        "benchmark_n": result.n,
        "nll_norm": normalized_nll(result.records, [ex.choices for ex in examples]),
        "accuracy": result.metrics["acc"],
        "accuracy_norm": result.metrics.get("acc_norm"),
        "chance": 1.0 / n_choices,
    }
