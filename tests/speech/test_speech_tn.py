"""Text normalization [P §8 speech generation]: the verbalizer against num2words, planted readings, the TN
exact-match metric on hand-worked numbers, determinism, and streaming (a prefix's output never changes)."""

from __future__ import annotations

import random

import pytest
import torch

from herd.speech import tn
from herd.speech.verbalize import candidates, cardinal, ordinal, split_words, verbalize, year


def _n2w(text: str) -> str:
    """num2words' British style → ours: no "and", commas or hyphens."""
    return " ".join(text.replace(",", "").replace("-", " ").replace(" and ", " ").split())


def test_number_words_match_num2words():
    num2words = pytest.importorskip("num2words").num2words
    rng = random.Random(0)
    numbers = [*range(0, 1001), *(rng.randrange(10**k) for k in range(4, 13) for _ in range(40)), 10**6, 10**9 + 1]
    for n in numbers:
        assert cardinal(n) == _n2w(num2words(n)), n
        assert ordinal(n) == _n2w(num2words(n, to="ordinal")), n
    for y in range(1000, 2100):
        assert year(y) == _n2w(num2words(y, to="year")), y


@pytest.mark.parametrize(
    ("word", "reading", "spoken"),
    [
        ("$3.50", "money", "three dollars fifty cents"),
        ("$1", "money", "one dollar"),
        ("$0.75", "money", "seventy five cents"),
        ("£2.01", "money", "two pounds one penny"),
        ("3/4", "date", "march fourth"),
        ("3/4", "fraction", "three quarters"),
        ("1/2", "fraction", "one half"),
        ("12/25/2020", "date", "december twenty fifth twenty twenty"),
        ("1984", "year", "nineteen eighty four"),
        ("1984", "cardinal", "one thousand nine hundred eighty four"),
        ("2.5%", "percent", "two point five percent"),
        ("21st", "ordinal", "twenty first"),
        ("7:05", "time", "seven oh five"),
        ("9:00", "time", "nine o'clock"),
        ("5kg", "measure", "five kilograms"),
        ("3.14", "decimal", "three point one four"),
        ("1,234", "cardinal", "one thousand two hundred thirty four"),
        ("St.", "street", "street"),
        ("St.", "saint", "saint"),
        ("Dr.", "doctor", "doctor"),
        ("e.g.", "abbreviation", "for example"),
    ],
)
def test_planted_verbalizations(word, reading, spoken):
    assert reading in candidates(word)
    assert verbalize(word, reading) == spoken


def test_candidates_mark_exactly_the_ambiguous_tokens():
    assert candidates("3/4") == ("date", "fraction")
    assert candidates("3/40") == ("fraction",)  # no day 40: only a fraction
    assert candidates("1984") == ("year", "cardinal")
    assert candidates("984") == ("cardinal",)
    assert candidates("kg", "5") == ("unit",) and verbalize("kg", "unit", "1") == "kilogram"
    assert candidates("am", "I") == ("plain",) and candidates("am", "10:30") == ("ampm",)
    words = [core for _, core in split_words('He said: "Meet on Main St. at 10:30 a.m., then ($5)."')]
    assert words == ["He", "said", "Meet", "on", "Main", "St.", "at", "10:30", "a.m.", "then", "$5"]


def test_spoken_sentence_and_bad_labels():
    ex = tn.make_example("It costs $3.50 on 3/4, add 3/4 cup.", {4: "date", 6: "fraction"})
    assert ex.spoken == "it costs three dollars fifty cents on march fourth add three quarters cup"
    with pytest.raises(ValueError, match=r"word 4 '3/4' is ambiguous"):
        tn.make_example("It costs $3.50 on 3/4, add 3/4 cup.", {6: "fraction"})
    with pytest.raises(ValueError, match="'year' is not a reading of '3/4'"):
        tn.make_example("on 3/4", {1: "year"})


def test_metrics_on_hand_worked_numbers():
    lo, hi = tn.wilson_ci(8, 10)  # p = 0.8, z = 1.96: (0.8 + 0.19207) / 1.38415 ± 0.31362 / 1.38415
    assert lo == pytest.approx(0.49016, abs=1e-4) and hi == pytest.approx(0.94332, abs=1e-4)
    m = tn.exact_match(["a b", "c", "d"], ["a b", "x", "d"])
    assert m["em"] == pytest.approx(2 / 3) and m["n"] == 3
    d = tn.paired_diff_ci([True, True, False, True], [False, True, False, False])
    assert d["diff"] == pytest.approx(0.5) and d["ci_low"] <= 0.5 <= d["ci_high"]
    with pytest.raises(ValueError, match="2 hypotheses for 1 references"):
        tn.exact_match(["a", "b"], ["a"])


def test_data_is_deterministic_and_held_out_by_template():
    a = tn.generate_examples(40, "train", 3, ["Hello there."])
    b = tn.generate_examples(40, "train", 3, ["Hello there."])
    assert [e.text for e in a] == [e.text for e in b]
    test = tn.generate_examples(40, "test", 3, [])
    assert not {e.template for e in a} & {e.template for e in test}
    assert {lab for e in test for lab in e.labels.values()} == set(tn.TEMPLATES)  # every reading is tested
    for e in a + test:  # the slot's surface form alone never gives the reading away
        assert all(len(candidates(e.words[i], e.words[i - 1] if i else None)) == 2 for i in e.labels)


def test_data_does_not_depend_on_the_hash_seed():
    """The same seed gives the same sentences in another process with another PYTHONHASHSEED (string sets
    iterate in a per-process order; a set once decided the filling order here)."""
    import os
    import subprocess
    import sys

    code = "from herd.speech import tn; print([e.text for e in tn.generate_examples(24, 'train', 5, ['Hi.'])])"
    outs = {
        subprocess.run(
            [sys.executable, "-c", code], capture_output=True, text=True, check=True,
            env=os.environ | {"PYTHONHASHSEED": h},
        ).stdout
        for h in ("1", "2", "3")
    }  # fmt: skip
    assert len(outs) == 1


def test_classifier_is_deterministic_and_masked():
    g = torch.Generator().manual_seed(0)
    x, y = torch.randn(32, 6, generator=g), torch.randint(0, len(tn.CLASSES), (32,), generator=g)
    allowed = torch.zeros(32, len(tn.CLASSES), dtype=torch.bool)
    allowed[torch.arange(32), y] = True
    allowed[:, 0] = True
    a, b = tn.fit_classifier(x, allowed, y, seed=1, steps=20), tn.fit_classifier(x, allowed, y, seed=1, steps=20)
    assert torch.equal(a.linear.weight, b.linear.weight)
    pred = a(x, allowed).argmax(-1)
    assert bool(allowed[torch.arange(32), pred].all())  # never a reading the token cannot have


@pytest.fixture(scope="module")
def trained(smollm2_gguf):
    from herd.speech.lmfeat import load_frozen_lm, paper_layer, word_states

    model, tok = load_frozen_lm("smollm2")
    layer = paper_layer(model.cfg.n_layers)
    train = tn.generate_examples(96, "train", 0, [])
    fs = tn.build_features(train, word_states(model, tok, [e.words for e in train], layer), lookahead=1)
    clf = tn.fit_classifier(fs.x, fs.allowed, fs.y, seed=0)
    return model, tok, layer, clf


def test_planted_readings_in_context(trained):
    model, tok, layer, clf = trained
    for text, spoken in [
        ("Add 3/4 cup of sugar.", "add three quarters cup of sugar"),
        ("The meeting is on 3/4 at 10:30.", "the meeting is on march fourth at ten thirty"),
        ("The bridge was built in 1984.", "the bridge was built in nineteen eighty four"),
        ("The stadium holds 1984 people.", "the stadium holds one thousand nine hundred eighty four people"),
        ("Turn left onto Oak St. after the bank.", "turn left onto oak street after the bank"),
        ("Ask Dr. Kim about the results.", "ask doctor kim about the results"),
    ]:
        norm = tn.StreamingNormalizer(model, tok, clf, layer, lookahead=1)
        assert " ".join(tn.iter_spoken(norm, [text])) == spoken


def test_streaming_prefix_output_never_changes(trained):
    """Word by word, what has been emitted is final: it equals the prefix of the offline output, and a word
    is spoken only once `lookahead` more words have arrived."""
    model, tok, layer, clf = trained
    text = "On 3/4 we met Dr. Chen at 12 Ocean Dr. and ate 1/2 of the 1850 pies baked since 1850."
    offline = tn.StreamingNormalizer(model, tok, clf, layer, lookahead=1)
    full = list(tn.iter_spoken(offline, [text]))
    norm = tn.StreamingNormalizer(model, tok, clf, layer, lookahead=1)
    got: list[str] = []
    for k, word in enumerate(text.split()):
        got += norm.push(word)
        assert norm.emitted == max(k, 0)  # word k waits for word k + 1
        assert got == full[: len(got)]
    got += norm.finish()
    assert got == full


def test_bundled_sentences_are_labelled_and_held_out_of_training():
    pytest.importorskip("chatterbot_corpus")
    bundled = tn.bundled_ambiguous()
    assert len(bundled) == 26 and all(len(e.labels) == 1 for e in bundled)
    by_text = {e.text: e for e in bundled}
    assert by_text["Dr. Smith will see you now."].spoken == "doctor smith will see you now"
    assert "nineteen ninety eight disney film" in next(e.spoken for e in bundled if "1998 Disney" in e.text)
    assert "lohan's" in next(e.spoken for e in bundled if "1998 Disney" in e.text)  # a curly apostrophe kept
    assert not set(by_text) & set(tn.bundled_contexts(max_words=100))  # never training context
