"""The curated document format and the one reader of documents: curation output, raw text, JSONL, Parquet.

A kept shard is JSONL compressed with zstd (`*.jsonl.zst`), one record per line:

    {"id": "...", "text": "...", "source": "sotu", "language": "en", "url": "https://..." | null,
     "metadata": {"scores": {"quality": 0.8, "code": 0.1, "math": 0.0}, "topic": "...", "token_count": 812, ...}}

`iter_documents(paths)` yields these records (as dicts); every stage that reads documents (tokenizer
training, tokenize, curation's own passes) reads through it. Given a curation stage folder (one with
`kept/`) it reads exactly the kept documents, optionally one partition (`part="general"`); given files or
plain folders it reads raw text, JSONL (.gz/.zst) and Parquet. It never reads MANIFEST.json, `dropped/`
or hidden files, and never takes a stage's `anneal/` copies for documents of its own.
"""

from __future__ import annotations

import gzip
import io
import os
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import IO, Any

from herd.core.io import MANIFEST_NAME, iter_jsonl

# Document fields kept at the top level of a record; everything else lives in `metadata`.
TOP_FIELDS = ("source", "language", "url")
# Pipeline-only metadata: how a document was read; meaningless once it is curated.
_TRANSIENT = ("bytes_in", "file_path", "filter_reason", "read_error", "raw_format")
SHARD_SUFFIX = ".jsonl.zst"
KEPT_DIR, DROPPED_DIR = "kept", "dropped"
# Raw text read as one document per file when found in a folder (a named file is read whatever its
# suffix). Not .json: in a stage folder that is a report (mix_weights.json), never a document.
_TEXT_SUFFIXES = {".txt", ".md", ".rst", ".py", ".html", ".htm", ".csv", ".tex", ".c", ".h", ".js"}
_JSONL_SUFFIXES = (".jsonl", ".jsonl.gz", ".jsonl.zst", ".ndjson")
_PARQUET_SUFFIX = ".parquet"


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


def is_stage_folder(folder: str | Path) -> bool:
    """A curation stage folder: its documents are `kept/`; `dropped/`, `anneal/` and reports are not."""
    return (Path(folder) / KEPT_DIR).is_dir()


def stage_parts(folder: str | Path) -> list[str]:
    """The partitions (mix buckets, languages) of a curation stage folder that hold documents, sorted."""
    kept = Path(folder) / KEPT_DIR
    return [d.name for d in sorted(kept.iterdir()) if d.is_dir() and document_files([d])]


def document_files(paths: str | Path | Iterable[str | Path], part: str = "") -> list[Path]:
    """The files whose documents `iter_documents` reads, in reading order.

    A named file is read whatever its suffix. A curation stage folder stands for its kept documents
    (`kept/`, or `kept/<part>`), also when found inside another folder; any other folder for the text,
    JSONL(.gz/.zst) and Parquet files under it (or under `<part>`), searched recursively and sorted,
    never MANIFEST.json, `dropped/` or hidden files.
    """
    out: list[Path] = []
    for path in [paths] if isinstance(paths, str | Path) else paths:
        path = Path(path)
        if path.is_file():
            out.append(path)
            continue
        root = path / KEPT_DIR if is_stage_folder(path) else path
        root = root / part if part else root
        if not root.is_dir():
            raise FileNotFoundError(f"no such file or folder: {root}")
        out += _files_under(root)
    return out


def _files_under(root: Path) -> list[Path]:
    found = []
    for folder, dirs, files in os.walk(root):
        if is_stage_folder(folder):  # a stage folder inside: its kept documents, not its anneal/ copies
            dirs[:], files = [KEPT_DIR], []
        dirs[:] = [d for d in dirs if not d.startswith(".") and d != DROPPED_DIR]
        found += [Path(folder, f) for f in files if _is_document_name(f) and Path(folder, f).is_file()]
    return sorted(found)  # as paths, part by part: the order every earlier reader used


def _is_document_name(name: str) -> bool:
    if name.startswith(".") or name == MANIFEST_NAME:
        return False
    name = name.lower()
    return name.endswith((*_JSONL_SUFFIXES, _PARQUET_SUFFIX)) or Path(name).suffix in _TEXT_SUFFIXES


def iter_documents(
    paths: str | Path | Iterable[str | Path],
    part: str = "",
    text_key: str = "text",
    language: str = "und",
    max_chars: int = 0,
) -> Iterator[dict[str, Any]]:
    """Records ({id, text, source, language, url, metadata}) from `document_files(paths, part)`, in order.

    `text_key` names the text field of JSONL/Parquet rows; `language` is the language of rows and plain
    files that carry none; `max_chars` (0: all) stops after the document that reaches that many characters.
    """
    seen = 0
    for path in document_files(paths, part):
        for record in _read_file(path, text_key, language):
            yield record
            seen += len(record["text"])
            if max_chars and seen >= max_chars:
                return


def iter_texts(
    paths: str | Path | Iterable[str | Path], part: str = "", text_key: str = "text", max_chars: int = 0
) -> Iterator[str]:
    """The text of each document `iter_documents` reads (what tokenizer training consumes)."""
    return (r["text"] for r in iter_documents(paths, part, text_key, max_chars=max_chars))


def _read_file(path: Path, text_key: str, language: str) -> Iterator[dict[str, Any]]:
    name = path.name.lower()
    if name.endswith(_PARQUET_SUFFIX):
        import pyarrow.parquet as pq

        for batch in pq.ParquetFile(path).iter_batches():
            for i, row in enumerate(batch.to_pylist()):
                if text_key not in row:
                    raise ValueError(f"{path}: no {text_key!r} column")
                yield _normalize(row, f"{path.stem}/{i}", text_key, language)
    elif name.endswith(_JSONL_SUFFIXES):
        for lineno, row in iter_jsonl(path, opener=open_text):
            if not isinstance(row.get(text_key), str):
                raise ValueError(f"{path}:{lineno}: field {text_key!r} missing or not a string")
            yield _normalize(row, f"{path.name}/{lineno}", text_key, language)
    else:  # one plain-text document per file
        text = path.read_text(encoding="utf-8", errors="replace")
        # A plain file's folder names its source (corpus/sotu/1961.txt is from "sotu").
        yield {"id": path.name, "text": text, "source": path.parent.name, "language": language, "url": None,
               "metadata": {}}  # fmt: skip


def _normalize(row: dict[str, Any], default_id: str, text_key: str, language: str) -> dict[str, Any]:
    return {
        "id": str(row.get("id") or default_id),
        "text": row.get(text_key) or "",
        "source": row.get("source") or "",
        "language": row.get("language") or row.get("lang") or language,
        "url": row.get("url"),
        "metadata": row.get("metadata") or {},
    }
