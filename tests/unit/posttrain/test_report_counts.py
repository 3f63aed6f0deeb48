"""What post-training records in its manifest for the run report: the per-round table, wall times, its plot."""

from __future__ import annotations

import json

from herd.posttrain.plots import metrics_table
from herd.posttrain.rounds import report_counts


def test_report_counts_carry_the_round_table_and_declare_the_plot() -> None:
    rounds = [
        {"round": r, "rm": {"held_out": {"accuracy": 0.5 + r / 10}}, "wall_s": {"rm": 1.0, "sft": 2.0}} for r in (1, 2)
    ]
    summary = {"rounds": rounds, "final_model": "/x/round-2/dpo", "wall_s": 9.5, "metrics": metrics_table(rounds)}
    c = report_counts(summary)
    assert c["rounds"] == 2 and c["final_model"] == "/x/round-2/dpo" and c["wall_s"] == 9.5
    assert [r["rm_accuracy"] for r in c["metrics"]] == [0.6, 0.7]
    assert c["round_wall_s"] == [{"round": 1, "rm": 1.0, "sft": 2.0}, {"round": 2, "rm": 1.0, "sft": 2.0}]
    assert c["report"] == {"figures": {"metrics.png": "Held-out metrics by round"}}
    assert json.dumps(c)
