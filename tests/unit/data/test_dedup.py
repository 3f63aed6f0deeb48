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


def _ccnet_reference(line: str) -> str:
    """ccNet's normalization character by character (the definition the fast paths must equal)."""
    import re
    import unicodedata

    line = unicodedata.normalize("NFD", line.strip().lower())
    line = "".join(c for c in line if unicodedata.category(c) != "Mn")
    return re.sub(r"[\W_]+", " ", re.sub(r"\d", "0", line)).strip()


LINES = [
    "  Hello_World, 123 -- ok\t\x0b\x1c ",
    "Café crème brûlée ١٢٣ ५६",
    "ﬁ ligature ½ Ⅻ ΑΣ",
    "\u0301x straße İstanbul",
    "a\ud800b",
    "",
    "   ",
    "日本語のテキスト 2024年",
]


@pytest.mark.parametrize("line", LINES)
def test_line_normalization_fast_paths_match_definition(line: str) -> None:
    assert normalize_line(line) == _ccnet_reference(line)


def test_line_hashes_ascii_and_unicode_documents_agree_with_per_line() -> None:
    from herd.data.dedup import hash64

    for text in ("Plain ASCII\n\nline 2, Line 2!\r\n x", "\n".join(LINES)):
        expected = [hash64(n) if (n := _ccnet_reference(line)) else 0 for line in text.split("\n")]
        assert line_hashes(text) == expected
