"""De-duplication units: URL normalization and recency, line normalization, MinHash tokenizer."""

from __future__ import annotations

import pytest

pytest.importorskip("datatrove")

from herd.data.dedup import (
    MultilingualWordTokenizer,
    bucket_of,
    line_hashes,
    normalize_line,
    normalize_url,
    timestamp_of,
)


def test_normalize_url() -> None:
    assert normalize_url("https://WWW.Example.com:443/a/index.html#top") == "//example.com/a"
    assert normalize_url("http://example.com/a/") == normalize_url("https://example.com/a")
    assert normalize_url("https://example.com/a?x=1") != normalize_url("https://example.com/a?x=2")


def test_timestamps() -> None:
    assert timestamp_of("2023-11-01T00:00:00Z") > timestamp_of("2022-09-27T00:00:00Z") > 0
    assert timestamp_of(None) == 0 and timestamp_of("garbage") == 0 and timestamp_of(12) == 12


def test_ccnet_line_normalization() -> None:
    assert normalize_line("  Café, 2024!  ") == normalize_line("cafe 1999")
    assert line_hashes("a\n\nb")[1] == 0  # blank lines are never de-duplicated


def test_buckets_split_by_size_and_language() -> None:
    assert bucket_of("x", "en", 10, 30_000_000) == "en/0"
    buckets = {bucket_of(f"doc{i}", "en", 100, 10) for i in range(200)}
    assert len(buckets) == 10 and all(b.startswith("en/") for b in buckets)


def test_multilingual_tokenizer() -> None:
    tok = MultilingualWordTokenizer()
    assert tok.word_tokenize("Hello, world 42") == ["Hello", "world", "42"]
    assert tok.word_tokenize("中文字") == ["中", "文", "字"]
