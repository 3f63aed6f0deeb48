"""herd's Llama 3 tokenizer vs Meta's reference (`llama_models.llama3.tokenizer.Tokenizer`), id for id."""

from __future__ import annotations

import random

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from unit.tokenizer.tok_texts import MULTILINGUAL, golden_strings

from herd.tokenizer import MAX_ENCODE_CHARS, Tokenizer, guard_pieces, llama3_special_tokens

GOLDEN = golden_strings()


def test_enough_varied_strings():
    assert len(GOLDEN) >= 200
    assert len(MULTILINGUAL) >= 10
    assert sum(len(s) >= 100_000 for s in GOLDEN) >= 5
    assert any(len(s) > MAX_ENCODE_CHARS for s in GOLDEN)


def test_known_ids(llama3):
    # data-sources.md and llama-models' own tests
    assert llama3.encode("The Llama 3 Herd of Models") == [791, 445, 81101, 220, 18, 6385, 67, 315, 27972]
    assert llama3.encode("This is a test sentence.", bos=True, eos=True) == [
        128000, 2028, 374, 264, 1296, 11914, 13, 128001,
    ]  # fmt: skip
    assert llama3.decode([128000, 2028, 374, 264, 1296, 11914, 13, 128001]) == (
        "<|begin_of_text|>This is a test sentence.<|end_of_text|>"
    )


def test_golden_ids_equal_reference(llama3, reference):
    for i, text in enumerate(GOLDEN):
        ours = llama3.encode(text, bos=i % 2 == 0, eos=i % 3 == 0)
        ref = reference.encode(text, bos=i % 2 == 0, eos=i % 3 == 0)
        assert ours == ref, f"string {i} ({text[:40]!r}...) differs"
        if len(text) < 5_000:
            assert llama3.decode(ours) == reference.decode(ref)


def test_hf_export_of_meta_file_matches(llama3):
    # tokenizer.json for HF-format exports: same ids as tiktoken (no 25,000-char runs: HF does not cut them).
    hf = llama3.to_hf()
    for text in (t for t in GOLDEN if len(t) <= 25_000):
        assert hf.encode(text).ids == llama3.encode(text, allowed_special="all"), text[:40]
    assert hf.get_vocab_size() == 128_256


def test_batch_equals_single(llama3):
    batch = llama3.encode_batch(GOLDEN, bos=True, num_threads=2)
    assert batch == [llama3.encode(t, bos=True) for t in GOLDEN]


def test_special_text_is_ordinary_unless_allowed(llama3, reference):
    text = "<|start_header_id|>user<|end_header_id|>\n\nhi<|eot_id|>"
    plain = llama3.encode(text)
    assert not set(plain) & set(llama3.special_ids.values())
    allowed = llama3.encode(text, allowed_special="all")
    assert allowed == reference.encode(text, bos=False, eos=False, allowed_special="all")
    assert allowed[0] == 128006 and allowed[-1] == 128009
    only_eot = llama3.encode(text, allowed_special={"<|eot_id|>"})
    assert only_eot[-1] == 128009 and 128006 not in only_eot


def test_special_token_layout(llama3, reference):
    names = llama3_special_tokens()
    assert len(names) == 256 and llama3.vocab_size == 128_256
    expected = {
        "<|begin_of_text|>": 128000, "<|end_of_text|>": 128001, "<|reserved_special_token_0|>": 128002,
        "<|reserved_special_token_1|>": 128003, "<|finetune_right_pad_id|>": 128004, "<|step_id|>": 128005,
        "<|start_header_id|>": 128006, "<|end_header_id|>": 128007, "<|eom_id|>": 128008, "<|eot_id|>": 128009,
        "<|python_tag|>": 128010, "<|reserved_special_token_2|>": 128011, "<|reserved_special_token_246|>": 128255,
    }  # fmt: skip
    assert {k: llama3.special_ids[k] for k in expected} == expected
    assert llama3.stop_ids == {128001, 128008, 128009}
    # llama-models 0.3.0 ships the 3.2 layout (<|image|> at 128011); every named 3.1 token agrees with it.
    for name in names[:11]:
        assert reference.special_tokens[name] == llama3.special_ids[name]
    assert reference.special_tokens["<|image|>"] == 128011
    t32 = Tokenizer(llama3.ranks, llama3_special_tokens(layout="3.2"))
    assert t32.special_ids == reference.special_tokens


@settings(max_examples=60, deadline=None)
@given(st.text(max_size=300))
def test_arbitrary_text_matches_reference(llama3, reference, text):
    assert llama3.encode(text) == reference.encode(text, bos=False, eos=False)
    assert llama3.decode(llama3.encode(text)) == text


@settings(max_examples=300, deadline=None)
@given(
    st.text(alphabet=st.sampled_from("ab \n\t\u3000"), max_size=80),
    st.integers(1, 30),
    st.integers(1, 6),
)
def test_guard_cuts_like_reference(reference, text, max_chars, max_run):
    # Small limits make the 400,000 / 25,000 logic reachable by hypothesis.
    chunks = [text[i : i + max_chars] for i in range(0, len(text), max_chars)] or [""]
    expected = [p for c in chunks for p in reference._split_whitespaces_or_nonwhitespaces(c, max_run)]
    assert list(guard_pieces(text, max_chars, max_run)) == expected


@pytest.mark.parametrize("run", [24_999, 25_000, 25_001, 50_000, 50_001, 75_002])
def test_guard_boundaries(llama3, reference, run):
    rng = random.Random(run)
    word = "".join(rng.choice("abcXYZ") for _ in range(run))
    for text in (word, "x " + word + " y", "\t" * run + "z", "q" * 10 + " " * run):
        assert llama3.encode(text) == reference.encode(text, bos=False, eos=False)
