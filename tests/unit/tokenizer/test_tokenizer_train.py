"""Training in Meta's format (tiktoken == HF ids), extension keeping every id, and the train stage."""

from __future__ import annotations

import json

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from unit.tokenizer.tok_texts import (
    CODE,
    EMOJI,
    ENGLISH,
    MULTILINGUAL,
    MULTILINGUAL_EXTRA,
    digit_runs,
    english_corpus,
    random_unicode,
    translations,
    whitespace_runs,
)

from herd.tokenizer import Tokenizer, compression_stats, extend_ranks, load_tokenizer, train_bpe
from herd.tokenizer.ranks import spell, unspell
from herd.tokenizer.stats import Document
from herd.tokenizer.train import hf_to_ranks, train_hf


def _held_out() -> list[str]:
    # Modules after the training slice, plus every kind of edge text (no run long enough to be cut).
    held = english_corpus(200_000, skip=60) + random_unicode(20, seed=7)
    for lang in ("de", "ru", "ja", "ar"):
        held += list(translations(lang, 5_000))[:10]
    return held + ENGLISH + CODE + EMOJI + digit_runs() + whitespace_runs() + list(MULTILINGUAL_EXTRA)


def test_trained_layout(trained):
    assert trained.vocab_size == 4096 and trained.n_ranks == 4096 - 256
    assert [trained.ranks[bytes([b])] for b in range(256)] == list(range(256))
    assert trained.special_ids["<|begin_of_text|>"] == 3840 and trained.eot_id == 3849


def test_tiktoken_and_hf_give_identical_ids(english_texts):
    texts = [*english_texts, *MULTILINGUAL.values()]
    hf = train_hf(texts, n_ranks=3840)
    ranks = hf_to_ranks(hf)
    tok = Tokenizer(ranks)
    exported = tok.to_hf()
    # HF's trainer numbers the 256 byte symbols in its own order; map them to herd's ids (= byte values).
    hf_id_to_rank = {i: ranks[unspell(t)] for t, i in hf.get_vocab().items()}
    held = _held_out()
    assert len(held) > 100
    for text in held:
        ids = tok.encode(text)
        assert ids == exported.encode(text).ids, text[:60]
        assert ids == [hf_id_to_rank[i] for i in hf.encode(text).ids], text[:60]
        assert tok.decode(ids) == text


@settings(max_examples=150, deadline=None)
@given(st.text(max_size=200))
def test_round_trip_arbitrary_unicode(trained, text):
    assert trained.decode(trained.encode(text)) == text


@settings(max_examples=50, deadline=None)
@given(st.text(max_size=200))
def test_exported_hf_matches_tiktoken_on_arbitrary_text(trained_hf, trained, text):
    assert trained_hf.encode(text).ids == trained.encode(text)


@pytest.fixture(scope="module")
def trained_hf(trained):
    return trained.to_hf()


def test_vocab_size_too_small():
    with pytest.raises(ValueError, match="leaves no room"):
        train_bpe(["abc"], vocab_size=400)


def test_spelling_round_trip():
    every_byte = bytes(range(256))
    assert unspell(spell(every_byte)) == every_byte


# ---------------------------------------------------------------- extension


def _russian() -> tuple[list[str], list[str]]:
    texts = list(translations("ru", 300_000))
    if len(texts) < 100:  # machines without Russian gettext catalogs: fall back to the text in tok_texts
        texts = [MULTILINGUAL["ru"], MULTILINGUAL["uk"]] * 50
        return texts, texts
    cut = len(texts) * 4 // 5
    return texts[:cut], texts[cut:]


def _chars_per_token(tok: Tokenizer, texts: list[str]) -> float:
    return compression_stats(tok, [Document(t, "x", "ru") for t in texts])[-1].chars_per_token


def test_extension_keeps_ids_and_improves_compression(trained):
    train, held = _russian()
    extended = Tokenizer(extend_ranks(trained.ranks, train, n_merges=1024), name="extended")
    assert extended.n_ranks == trained.n_ranks + 1024
    assert all(extended.ranks[tok] == rank for tok, rank in trained.ranks.items())
    # specials follow the ranks (Llama 3 layout), so they move up by the number of new tokens
    assert extended.bos_id == trained.bos_id + 1024
    before, after = _chars_per_token(trained, held), _chars_per_token(extended, held)
    print(f"\nextension +1024 merges on Russian: held-out chars/token {before:.3f} -> {after:.3f}")
    assert after > before * 1.3
    # English barely moves: the new merges are Cyrillic
    en = english_corpus(100_000, skip=60)
    en_before, en_after = _chars_per_token(trained, en), _chars_per_token(extended, en)
    print(f"English chars/token {en_before:.3f} -> {en_after:.3f}")
    assert abs(en_after - en_before) < 0.02 * en_before
    hf = extended.to_hf()
    for text in held[:300]:
        ids = extended.encode(text)
        assert extended.decode(ids) == text and hf.encode(text).ids == ids


def test_extension_counts_match_tiktoken():
    # The pair counts extension works on are exactly what tiktoken produces with the new ranks.
    base = {bytes([b]): b for b in range(256)}
    texts = ["aaab aaab aab ab", "abab baba", "ßßß ßß"] * 5
    ranks = extend_ranks(base, texts, n_merges=8)
    tok = Tokenizer(ranks)
    assert tok.n_ranks == 256 + 8
    assert tok.encode("aaab") != Tokenizer(base).encode("aaab")
    for text in texts:
        assert tok.decode(tok.encode(text)) == text


# ---------------------------------------------------------------- the stage and CLI


def test_train_stage_writes_loads_and_skips(tmp_path, capsys):
    from herd.cli.main import main

    corpus = tmp_path / "corpus"
    corpus.mkdir()
    for i, text in enumerate(english_corpus(120_000)):
        (corpus / f"doc{i}.txt").write_text(text)
    with (corpus / "multi.jsonl").open("w") as f:
        for lang, text in MULTILINGUAL.items():
            f.write(json.dumps({"text": text, "language": lang, "source": "handwritten"}) + "\n")
    out = tmp_path / "tok"
    args = ["tokenizer", "train", f"inputs=['{corpus}']", f"out='{out}'", "vocab_size=1024"]
    assert main(args) == 0
    counts = json.loads(capsys.readouterr().out)
    assert counts["vocab_size"] == 1024 and counts["chars_per_token"] > 2
    manifest = json.loads((out / "MANIFEST.json").read_text())
    assert manifest["stage"] == "tokenizer" and {"tokenizer.model", "tokenizer.json"} <= set(manifest["outputs"])
    tok = load_tokenizer(out)
    assert isinstance(tok, Tokenizer) and tok.vocab_size == 1024
    hf = load_tokenizer(out / "tokenizer.json")
    assert hf.encode(MULTILINGUAL["de"]) == tok.encode(MULTILINGUAL["de"])
    mtime = (out / "tokenizer.model").stat().st_mtime_ns
    assert main(args) == 0  # matching manifest: skipped
    assert (out / "tokenizer.model").stat().st_mtime_ns == mtime

    ext = tmp_path / "ext"
    assert main(["tokenizer", "train", f"inputs=['{corpus / 'multi.jsonl'}']", f"out='{ext}'",
                 f"base='{out}'", "extra_merges=50", "min_frequency=1"]) == 0  # fmt: skip
    extended = load_tokenizer(ext)
    assert extended.n_ranks == tok.n_ranks + 50
    assert all(extended.ranks[t] == r for t, r in tok.ranks.items())
