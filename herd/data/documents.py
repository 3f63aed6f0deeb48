"""The curated document format and its reader: what the pretraining stage reads.

A kept shard is JSONL compressed with zstd (`*.jsonl.zst`), one record per line:

    {"id": "...", "text": "...", "source": "sotu", "language": "en", "url": "https://..." | null,
     "metadata": {"scores": {"quality": 0.8, "code": 0.1, "math": 0.0}, "topic": "...", "token_count": 812, ...}}

`iter_documents(folder)` yields these records (as dicts) from kept shards, plain `.jsonl`/`.jsonl.gz`,
Parquet and plain `.txt` files. Dropped shards (any `dropped/` folder) are never read by it.
"""

from __future__ import annotations

import gzip
import io
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import IO, Any

from herd.core.io import iter_jsonl

# Document fields kept at the top level of a record; everything else lives in `metadata`.
TOP_FIELDS = ("source", "language", "url")
# Pipeline-only metadata: how a document was read; meaningless once it is curated.
_TRANSIENT = ("bytes_in", "file_path", "filter_reason", "read_error", "raw_format")
SHARD_SUFFIX = ".jsonl.zst"
_TEXT_SUFFIXES = (".txt", ".md", ".rst")
_JSONL_SUFFIXES = (".jsonl", ".jsonl.gz", ".jsonl.zst", ".ndjson")


def to_record(doc_id: str, text: str, metadata: dict[str, Any]) -> dict[str, Any]:
    """A kept record: id, text, source, language, url on top; scores and the rest under metadata."""
    rest = {k: v for k, v in metadata.items() if k not in TOP_FIELDS and k not in _TRANSIENT}
    return {
        "id": doc_id,
        "text": text,
        "source": metadata.get("source", ""),
        "language": metadata.get("language", "und"),
        "url": metadata.get("url"),
        "metadata": rest,
    }


def from_record(record: dict[str, Any]) -> tuple[str, str, dict[str, Any]]:
    """(id, text, metadata) from a kept record (the inverse of `to_record`)."""
    metadata = dict(record.get("metadata") or {})
    for key in TOP_FIELDS:
        if record.get(key) is not None:
            metadata[key] = record[key]
    return str(record.get("id", "")), record.get("text") or "", metadata


def open_text(path: Path) -> IO[str]:
    """Text handle for a plain, .gz or .zst file."""
    if path.name.endswith(".zst"):
        import zstandard

        raw = zstandard.ZstdDecompressor().stream_reader(open(path, "rb"), closefd=True)  # noqa: SIM115 (returned)
        return io.TextIOWrapper(raw, encoding="utf-8")
    if path.name.endswith(".gz"):
        return gzip.open(path, "rt", encoding="utf-8")
    return open(path, encoding="utf-8")


def shard_files(folder: str | Path, include_dropped: bool = False) -> list[Path]:
    """Readable document files under `folder`, sorted; `dropped/` folders are skipped unless asked for."""
    folder = Path(folder)
    if folder.is_file():
        return [folder]
    if (folder / "kept").is_dir():  # a curation stage folder: its kept shards are the documents
        folder = folder / "kept"
    if not folder.is_dir():
        raise FileNotFoundError(f"no such file or folder: {folder}")
    out = []
    for f in sorted(folder.rglob("*")):
        rel = f.relative_to(folder).parts
        if not f.is_file() or any(p.startswith(".") for p in rel):
            continue
        if not include_dropped and "dropped" in rel[:-1]:
            continue
        name = f.name.lower()
        if name.endswith(_JSONL_SUFFIXES) or name.endswith(".parquet") or name.endswith(_TEXT_SUFFIXES):
            out.append(f)
    return out


def iter_documents(folder: str | Path | Iterable[str | Path]) -> Iterator[dict[str, Any]]:
    """Records ({id, text, source, language, url, metadata}) from kept shards and plain files, in file order."""
    folders = [folder] if isinstance(folder, str | Path) else list(folder)
    for root in folders:
        for path in shard_files(root):
            yield from _read_file(path)


def _read_file(path: Path) -> Iterator[dict[str, Any]]:
    name = path.name.lower()
    if name.endswith(".parquet"):
        import pyarrow.parquet as pq

        for batch in pq.ParquetFile(path).iter_batches():
            for i, row in enumerate(batch.to_pylist()):
                yield _normalize(row, f"{path.stem}/{i}")
    elif name.endswith(_JSONL_SUFFIXES):
        for lineno, row in iter_jsonl(path, opener=open_text):
            if not isinstance(row.get("text"), str):
                raise ValueError(f"{path}:{lineno}: field 'text' missing or not a string")
            yield _normalize(row, f"{path.name}/{lineno}")
    else:
        text = path.read_text(encoding="utf-8", errors="replace")
        yield {
            "id": path.name,
            "text": text,
            "source": path.parent.name,
            "language": "und",
            "url": None,
            "metadata": {},
        }


def _normalize(row: dict[str, Any], default_id: str) -> dict[str, Any]:
    return {
        "id": str(row.get("id") or default_id),
        "text": row.get("text") or "",
        "source": row.get("source") or "",
        "language": row.get("language") or "und",
        "url": row.get("url"),
        "metadata": row.get("metadata") or {},
    }
