"""What pretraining records for the run report: a bounded curve that keeps every stage boundary exact."""

from __future__ import annotations

import json
from pathlib import Path

from herd.train.metrics import boundaries, curve_record


def _record(step: int) -> dict:
    seq = 128 if step <= 600 else 256  # a sequence-length ramp step after step 600
    phase = "main" if step <= 900 else "anneal"
    return {"kind": "train", "step": step, "tokens": 1000 * step, "loss": 9.0 - step / 1000, "lr": 1e-3,
            "batch_tokens": 1000, "seq_len": seq, "phase": phase}  # fmt: skip


def test_curve_is_bounded_and_keeps_both_sides_of_each_boundary(tmp_path: Path) -> None:
    records = [_record(s) for s in range(1, 1001)] + [{"kind": "val", "step": 500, "tokens": 500_000, "loss": 8.6}]
    records.append(_record(1000) | {"loss": 8.5})  # a resumed run rewrites the step it redid: the last one counts
    (tmp_path / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in records))
    rec = curve_record(tmp_path / "metrics.jsonl", max_points=100)
    curve = rec["curve"]
    assert 100 <= len(curve["tokens"]) <= 105 and curve["tokens"] == sorted(curve["tokens"])
    assert {600_000, 601_000, 900_000, 901_000} <= set(curve["tokens"])  # the steps on both sides of each change
    assert curve["tokens"][-1] == 1_000_000 and curve["loss"][-1] == 8.5
    assert rec["held_out_curve"] == {"tokens": [500_000], "loss": [8.6]}
    assert rec["boundaries"] == [[600_000, "seq 256"], [900_000, "anneal starts"]]
    assert json.dumps(rec)  # it goes into MANIFEST.json


def test_boundaries_name_every_change() -> None:
    train = [_record(600), _record(601) | {"batch_tokens": 2000}]
    assert boundaries(train) == [(600_000, "seq 256, batch 2000")]


def test_no_metrics_records_an_empty_curve(tmp_path: Path) -> None:
    assert curve_record(tmp_path / "missing.jsonl")["curve"]["tokens"] == []
