"""Heuristic filters on literal inputs, with their exact drop reasons."""

from __future__ import annotations

import numpy as np
import pytest

pytest.importorskip("datatrove")

from datatrove.data import Document

from herd.data.filters import (
    DirtyWordsFilter,
    DupNgramFilter,
    ReadErrorFilter,
    TokenKLFilter,
    TokenStats,
    UrlBlocklistFilter,
    dup_ngram_coverage,
    dup_ngram_coverages,
    kl_divergence,
)
from herd.data.pii import mask_pii


def doc(text: str, **meta: object) -> Document:
    return Document(text=text, id="d", metadata={"language": "en", **meta})


def test_dup_ngram_coverage_counts_repeated_occurrences_only() -> None:
    tokens = [
        "a",
        "b",
        "c",
        "d",
        "e",
        "a",
        "b",
        "c",
        "d",
        "e",
        "f",
    ]  # the second "a b c d e" repeats: 5 of 11 characters
    assert dup_ngram_coverage(tokens, 5) == pytest.approx(5 / 11)
    assert dup_ngram_coverage(["a", "b", "c", "d", "e", "f", "g"], 5) == 0.0
    assert dup_ngram_coverage([], 5) == 0.0


def test_dup_ngram_filter_drops_logs_keeps_prose() -> None:
    f = DupNgramFilter()
    log = "\n".join(["ERROR connection refused at worker node retrying"] * 20)
    prose = "The quick brown fox jumps over the lazy dog while the cat sleeps by the warm fire tonight."
    assert f.reject(doc(log)) == "dup_ngram_coverage"
    assert f.reject(doc(prose)) is None
    assert f.reject(doc(log, language="code")) is None  # code is exempt


def test_dirty_words_threshold() -> None:
    f = DirtyWordsFilter({"en": frozenset({"badword", "very bad"})}, max_ratio=0.05, min_hits=3)
    assert f.reject(doc("badword badword badword clean text here")) == "dirty_words"
    assert f.reject(doc("badword badword clean text here")) is None  # under min_hits
    assert f.reject(doc("very bad very bad very bad words here")) == "dirty_words"  # phrases count
    assert f.reject(doc("badword " * 3 + "x " * 200)) is None  # under the ratio
    assert f.reject(doc("badword badword badword", language="de")) is None  # no list for German


def test_url_blocklist_matches_parent_domains() -> None:
    f = UrlBlocklistFilter({"bad.example"})
    assert f.reject(doc("x", url="https://www.bad.example/page")) == "url_blocklist"
    assert f.reject(doc("x", url="http://sub.bad.example:8080/")) == "url_blocklist"
    assert f.reject(doc("x", url="https://good.example/bad.example")) is None
    assert f.reject(doc("x")) is None


def test_read_errors_and_empty() -> None:
    f = ReadErrorFilter()
    assert f.reject(doc("", read_error="malformed_json")) == "malformed_json"
    assert f.reject(doc("   \n ")) == "empty"
    assert f.reject(doc("fine")) is None


def test_kl_divergence_by_hand() -> None:
    log_q = np.log(np.array([0.5, 0.25, 0.25]))
    # p = (1/2, 1/2, 0): 0.5*log(0.5/0.5) + 0.5*log(0.5/0.25) = 0.5*log 2
    assert kl_divergence(np.array([0, 1]), log_q) == pytest.approx(0.5 * np.log(2))
    assert kl_divergence(np.array([0, 0, 1, 2]), log_q) == pytest.approx(0.0)


def test_pii_masking_counts() -> None:
    text, counts = mask_pii("mail a.b@example.com, call +1 (555) 123-4567, host 8.8.8.8, local 127.0.0.1, year 2024")
    assert text == "mail <EMAIL>, call <PHONE>, host <IP>, local 127.0.0.1, year 2024"
    assert counts == {"email": 1, "phone": 1, "ip": 1}


def _coverage_by_definition(tokens: list[str], n: int) -> float:
    total = sum(len(t) for t in tokens)
    seen: set[tuple[str, ...]] = set()
    covered = [False] * len(tokens)
    for i in range(len(tokens) - n + 1):
        gram = tuple(tokens[i : i + n])
        if gram in seen:
            covered[i : i + n] = [True] * n
        seen.add(gram)
    return sum(len(t) for t, c in zip(tokens, covered) if c) / total if total else 0.0


def test_dup_ngram_coverages_match_definition() -> None:
    rng = np.random.default_rng(0)
    for size in (0, 4, 12, 60, 400):
        for vocab in (2, 5, 50):
            tokens = [f"w{i}" * (1 + i % 3) for i in rng.integers(0, vocab, size)]
            cover = dup_ngram_coverages(tokens, range(5, 11))
            assert cover == {n: pytest.approx(_coverage_by_definition(tokens, n)) for n in range(5, 11)}


class _CountingTokenizer:
    vocab_size = 64

    def __init__(self) -> None:
        self.calls = 0

    def encode(self, text: str) -> list[int]:
        self.calls += 1
        return [ord(c) % self.vocab_size for c in text]


def test_kl_filter_reuses_pass_one_token_ids(tmp_path, monkeypatch) -> None:
    import herd.data.filters as filters

    tok = _CountingTokenizer()
    monkeypatch.setattr(filters, "_tokenizer", lambda name: tok)
    texts = ["the cat sat on the mat " * 5, "zzzz qqqq " * 8, "a short one"]
    list(TokenStats(tmp_path).run(iter([doc(t) for t in texts])))
    assert tok.calls == len(texts)
    f = TokenKLFilter(tmp_path, max_kl=0.5, min_tokens=20)
    kept = list(f.run(iter([doc(t) for t in [*texts, "unseen text, tokenized here " * 3]])))
    assert tok.calls == len(texts) + 1  # only the document pass 1 never saw
    counts = [d.metadata["token_count"] for d in kept]
    assert all(c == len(d.text) for c, d in zip(counts, kept))


def test_pii_hints_never_skip_a_match(monkeypatch) -> None:
    import re

    import herd.data.pii as pii

    samples = [
        "ip 10.0.0.1 and 8.8.4.4, v1.2.3.4x, 255.255.255.0 and 1.22.333.4",
        "call 555 123 4567 or (020) 7946-0018 or +44 20 7946 0018, 555.1234.567",
        "nothing here 1.2.3 12 345 1234 5678",
        "x@y.co a.b+c@mail.example.org 1.2.3.4@host.com",
    ]
    hinted = [mask_pii(text) for text in samples]
    monkeypatch.setattr(pii, "IPV4_HINT", re.compile(""))  # matches everywhere: every pass runs
    monkeypatch.setattr(pii, "PHONE_HINT", re.compile(""))
    assert hinted == [mask_pii(text) for text in samples]
