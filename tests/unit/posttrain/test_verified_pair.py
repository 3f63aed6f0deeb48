"""herd.posttrain.rejection.verified_pair: a checked right-vs-wrong pair for prompts with a known number."""

from __future__ import annotations

from herd.posttrain.rejection import verified_pair

PROMPT = [{"role": "user", "content": "What is 3 + 4?"}]


def test_right_over_wrong_by_the_last_number():
    pair = verified_pair({"prompt": PROMPT, "answer": 7}, ["3 + 4 = 8", "3 + 4 = 7, so 7", "It is 6."])
    assert pair is not None
    assert (pair.chosen, pair.rejected) == ("3 + 4 = 7, so 7", "3 + 4 = 8")
    assert pair.strength == "significantly_better" and pair.source == "rs-verified" and pair.prompt == PROMPT


def test_the_last_number_decides_not_any_number():
    # "7" appears, but the stated result (the last number) is 10: that sample is wrong.
    pair = verified_pair({"prompt": PROMPT, "answer": 7}, ["7 plus 3 is 10", "the sum is 7"])
    assert pair is not None and pair.chosen == "the sum is 7" and pair.rejected == "7 plus 3 is 10"


def test_negative_answers():
    pair = verified_pair({"prompt": PROMPT, "answer": -2}, ["it is 2", "it is -2"])
    assert pair is not None and pair.chosen == "it is -2"


def test_no_pair_without_both_sides_or_an_answer():
    assert verified_pair({"prompt": PROMPT}, ["7", "8"]) is None  # no known answer
    assert verified_pair({"prompt": PROMPT, "answer": 7}, ["7", "so 7"]) is None  # all right
    assert verified_pair({"prompt": PROMPT, "answer": 7}, ["8", "nine"]) is None  # none right
    # A blank sample is not a rejected response.
    assert verified_pair({"prompt": PROMPT, "answer": 7}, ["7", "   "]) is None


def test_a_number_free_reply_counts_as_wrong():
    pair = verified_pair({"prompt": PROMPT, "answer": 7}, ["I don't know", "7"])
    assert pair is not None and (pair.chosen, pair.rejected) == ("7", "I don't know")
