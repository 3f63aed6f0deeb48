"""Benchmarks inside the pretraining loop: logged beside the loss at eval steps, and the final score is the
score `herd eval`'s harness gives the exported model."""

from __future__ import annotations

import json

from herd.core.stage import run_stage
from herd.eval.harness import evaluate
from herd.eval.scorer import HerdScorer
from herd.eval.tasks import load_jsonl_task
from herd.model import load_model
from herd.tokenizer import load_tokenizer
from herd.train.metrics import read_metrics
from herd.train.stage import PretrainStage
from tests.unit.train.test_trainer import config


def test_benchmarks_logged_beside_the_loss(token_dir, tmp_path):
    task = tmp_path / "capitals.jsonl"
    rows = [
        {"query": f"Question: {q}\nAnswer:", "choices": choices, "gold": gold}
        for q, choices, gold in [
            ("What is 2 + 2?", [" 4", " 5", " 22"], 0),
            ("Which is a colour?", [" table", " green"], 1),
            ("The sun rises in the", [" east", " west"], 0),
            ("Water freezes at", [" 100 degrees", " 0 degrees"], 1),
            ("A week has", [" seven days", " ten days", " two days"], 0),
        ]
    ]
    task.write_text("".join(json.dumps(r) + "\n" for r in rows))
    run = tmp_path / "run"
    extra = ["schedule.max_steps=8", "eval.every=4", f'eval.benchmarks=["{task}"]', "eval.benchmark_limit=4"]
    counts = run_stage(PretrainStage(config(token_dir, run, *extra))).counts
    bench = [r for r in read_metrics(run / "metrics.jsonl") if r.get("kind") == "bench"]
    assert [r["step"] for r in bench] == [4, 8] and all(0.0 <= r["capitals"] <= 1.0 for r in bench)
    final = load_model(run / "final").eval()
    scorer = HerdScorer(final, load_tokenizer(token_dir.parent / "tok.model"))
    want = evaluate(load_jsonl_task(task), scorer, limit=4).score
    assert counts["benchmarks_last"] == {"capitals": want} == {"capitals": bench[-1]["capitals"]}
