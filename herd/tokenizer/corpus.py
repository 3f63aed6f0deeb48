"""Read training and stats text: plain files, JSONL (optionally .gz/.zst) and Parquet, file or folder.

Curated shards carry `text`, `source` and `language` fields; a plain text file is one document whose
source is the file name.
"""

from __future__ import annotations

import gzip
import io
import json
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import IO

TEXT_SUFFIXES = {".txt", ".md", ".rst", ".py", ".html", ".htm", ".json", ".csv", ".tex", ".c", ".h", ".js"}
JSONL_SUFFIXES = (".jsonl", ".jsonl.gz", ".jsonl.zst", ".ndjson")


@dataclass(frozen=True)
class Document:
    text: str
    source: str
    language: str


def iter_documents(
    paths: Iterable[str | Path], text_key: str = "text", language: str = "und", max_chars: int = 0
) -> Iterator[Document]:
    """Documents from files or folders (searched recursively), stopping after `max_chars` if set."""
    seen = 0
    for file in iter_files(paths):
        for doc in _read(file, text_key, language):
            yield doc
            seen += len(doc.text)
            if max_chars and seen >= max_chars:
                return


def iter_files(paths: Iterable[str | Path]) -> Iterator[Path]:
    for p in map(Path, paths):
        if p.is_dir():
            yield from sorted(f for f in p.rglob("*") if f.is_file() and _readable(f))
        elif p.is_file():
            yield p
        else:
            raise FileNotFoundError(f"no such file or folder: {p}")


def _readable(f: Path) -> bool:
    name = f.name.lower()
    return f.suffix.lower() in TEXT_SUFFIXES or name.endswith(JSONL_SUFFIXES) or name.endswith(".parquet")


def _read(file: Path, text_key: str, language: str) -> Iterator[Document]:
    name = file.name.lower()
    if name.endswith(JSONL_SUFFIXES):
        yield from _read_jsonl(file, text_key, language)
    elif name.endswith(".parquet"):
        yield from _read_parquet(file, text_key, language)
    else:
        yield Document(file.read_text(encoding="utf-8", errors="replace"), file.stem, language)


def _open_text(file: Path) -> IO[str]:
    if file.name.endswith(".gz"):
        return gzip.open(file, "rt", encoding="utf-8")
    if file.name.endswith(".zst"):
        import zstandard  # optional: only curated .zst shards need it

        return io.TextIOWrapper(zstandard.ZstdDecompressor().stream_reader(open(file, "rb")), encoding="utf-8")
    return open(file, encoding="utf-8")


def _read_jsonl(file: Path, text_key: str, language: str) -> Iterator[Document]:
    with _open_text(file) as f:
        for lineno, line in enumerate(f, 1):
            if not line.strip():
                continue
            try:
                row = json.loads(line)
                text = row[text_key]
            except (json.JSONDecodeError, KeyError, TypeError):
                raise ValueError(f"{file}:{lineno}: not a JSON object with a {text_key!r} field") from None
            yield _document(row, text, file, language)


def _read_parquet(file: Path, text_key: str, language: str) -> Iterator[Document]:
    import pyarrow.parquet as pq

    for batch in pq.ParquetFile(file).iter_batches():
        for row in batch.to_pylist():
            if text_key not in row:
                raise ValueError(f"{file}: no {text_key!r} column")
            yield _document(row, row[text_key], file, language)


def _document(row: dict, text: str, file: Path, language: str) -> Document:
    lang = row.get("language") or row.get("lang") or language
    return Document(str(text), str(row.get("source") or file.stem), str(lang))
