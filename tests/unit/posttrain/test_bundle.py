"""The bundled post-training data holds each dialog, preference and prompt once; repeats go to dropped/."""

import json

import pytest

from herd.posttrain.bundle import BundleConfig, _first_of_each, arithmetic


def test_repeats_keep_their_first_copy() -> None:
    rows = [{"a": 1}, {"a": 2}, {"a": 1}, {"a": 1}]
    kept, dropped = _first_of_each(rows)
    assert kept == [{"a": 1}, {"a": 2}] and dropped == [{"a": 1}, {"a": 1}]


def test_arithmetic_problems_are_distinct() -> None:
    import random

    dialogs, _, _ = arithmetic(BundleConfig(n_arithmetic=400, max_operand=12), random.Random(0))
    questions = [d["messages"][0]["content"] for d in dialogs]
    assert len(questions) == len(set(questions)) == 400
    with pytest.raises(ValueError, match="only 27 distinct problems"):
        arithmetic(BundleConfig(n_arithmetic=28, max_operand=2), random.Random(0))


def test_bundle_has_no_repeats_and_loses_none(tmp_path) -> None:
    pytest.importorskip("chatterbot_corpus")
    from herd.posttrain.bundle import build_bundle

    out = tmp_path / "bundle"
    build_bundle(BundleConfig(out=str(out), n_arithmetic=50, vocab_size=600))
    counts = json.loads((out / "MANIFEST.json").read_text())["counts"]
    for name, key in (("sft", "dialogs"), ("prefs", "preferences"), ("prompts", "prompts")):
        kept = (out / f"{name}.jsonl").read_text().splitlines()
        dropped = (out / "dropped" / f"{name}-repeats.jsonl").read_text().splitlines()
        assert len(kept) == len(set(kept)) == counts[key] and set(dropped) <= set(kept)
        assert len(dropped) == counts["repeats_dropped"][name]
    assert counts["repeats_dropped"]["sft"] > 0  # chatterbot-corpus does repeat conversations
