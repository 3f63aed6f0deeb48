"""Compression per source and language: characters and bytes per token [P §3.2].

The paper reports 3.17 chars/token for the Llama 2 tokenizer and 3.94 for Llama 3's on an English
sample; `compression_stats` gives the same measure for any herd tokenizer on any corpus.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

from herd.tokenizer.protocol import TokenizerLike


@dataclass(frozen=True)
class Document:
    """A text with the labels its compression is grouped by (herd.data reads them from files)."""

    text: str
    source: str
    language: str


@dataclass
class CompressionRow:
    source: str
    language: str
    docs: int = 0
    chars: int = 0
    bytes: int = 0
    tokens: int = 0

    def add(self, text: str, n_tokens: int) -> None:
        self.docs += 1
        self.chars += len(text)
        self.bytes += len(text.encode("utf-8", "surrogatepass"))
        self.tokens += n_tokens

    @property
    def chars_per_token(self) -> float:
        return self.chars / self.tokens if self.tokens else 0.0

    @property
    def bytes_per_token(self) -> float:
        return self.bytes / self.tokens if self.tokens else 0.0

    def to_dict(self) -> dict[str, float | int | str]:
        return {**asdict(self), "chars_per_token": self.chars_per_token, "bytes_per_token": self.bytes_per_token}


def compression_stats(tokenizer: TokenizerLike, docs: Iterable[Document], batch: int = 256) -> list[CompressionRow]:
    """One row per (source, language), sorted, then an "all" row."""
    rows: dict[tuple[str, str], CompressionRow] = {}
    total = CompressionRow("all", "all")
    for chunk in _batches(docs, batch):
        for doc, n in zip(chunk, _count_tokens(tokenizer, [d.text for d in chunk])):
            row = rows.setdefault((doc.source, doc.language), CompressionRow(doc.source, doc.language))
            for r in (row, total):
                r.add(doc.text, n)
    return [*(rows[k] for k in sorted(rows)), total]


def _count_tokens(tokenizer: TokenizerLike, texts: Sequence[str]) -> list[int]:
    batch = getattr(tokenizer, "encode_batch", None)
    encoded = batch(list(texts)) if batch else [tokenizer.encode(t) for t in texts]
    return [len(ids) for ids in encoded]


def _batches(docs: Iterable[Document], size: int) -> Iterable[list[Document]]:
    chunk: list[Document] = []
    for doc in docs:
        chunk.append(doc)
        if len(chunk) == size:
            yield chunk
            chunk = []
    if chunk:
        yield chunk


def format_table(named: dict[str, list[CompressionRow]]) -> str:
    """Plain-text table, one column pair per tokenizer: chars/token and bytes/token."""
    names = list(named)
    first = named[names[0]]
    labels = [(Path(n).name or n)[-14:] for n in names]  # a path's last part names it well enough
    head = f"{'source':<24} {'lang':<6} {'docs':>6} {'chars':>11}" + "".join(
        f" {label + ' c/t':>18} {'b/t':>6}" for label in labels
    )
    lines = [head, "-" * len(head)]
    for i, row in enumerate(first):
        cells = "".join(f" {named[n][i].chars_per_token:>18.3f} {named[n][i].bytes_per_token:>6.3f}" for n in names)
        lines.append(f"{row.source[:24]:<24} {row.language[:6]:<6} {row.docs:>6} {row.chars:>11}{cells}")
    return "\n".join(lines)
