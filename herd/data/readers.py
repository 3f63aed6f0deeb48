"""Readers: directories of HTML, WARC, JSONL/Parquet documents and plain text, as datatrove Documents.

datatrove's own readers skip records they cannot parse or that have no text (with a log warning). Curation
must lose nothing, so `HerdReader` turns every unreadable record into a Document marked with a
`read_error` reason; the first filter of a stage drops it into `dropped/` where it is counted.
"""

from __future__ import annotations

import gzip
import re
import zlib
from collections.abc import Callable, Iterator
from pathlib import PurePosixPath
from typing import Any

from datatrove.data import Document, DocumentsPipeline
from datatrove.io import DataFolderLike
from datatrove.pipeline.base import PipelineStep
from datatrove.pipeline.readers.base import BaseDiskReader

from herd.data.documents import from_record

READ_ERROR = "read_error"  # metadata key: why a record could not be read (the drop reason)
HTML_SUFFIXES = (".html", ".htm", ".xhtml")
WARC_SUFFIXES = (".warc", ".warc.gz")
JSONL_SUFFIXES = (".jsonl", ".jsonl.gz", ".jsonl.zst", ".ndjson", ".json.gz")
CODE_SUFFIXES = {".py": "python", ".c": "c", ".h": "c", ".js": "javascript", ".rs": "rust", ".go": "go", ".sh": "shell"}
TEXT_SUFFIXES = (".txt", ".md", ".rst", ".text", "")
SNIFF_BYTES = 8192
_CHARSET = re.compile(rb"""charset\s*=\s*["']?([A-Za-z0-9_.:-]+)""", re.I)


def looks_binary(head: bytes) -> bool:
    """NUL bytes or mostly control characters in the first block: not text."""
    if not head:
        return False
    if b"\x00" in head:
        return True
    control = sum(1 for b in head if b < 32 and b not in (9, 10, 12, 13, 27, 8))
    return control / len(head) > 0.3


def decode_text(data: bytes, max_invalid: float, charset: str | None = None) -> tuple[str, str | None]:
    """(text, None) or ("", reason): strict UTF-8 (or the declared charset), else replacement if rare."""
    if charset and charset.lower().replace("_", "-") not in ("utf-8", "utf8"):
        try:
            return data.decode(charset), None
        except (LookupError, UnicodeDecodeError):
            pass
    try:
        return data.decode("utf-8"), None
    except UnicodeDecodeError:
        text = data.decode("utf-8", errors="replace")
        bad = text.count("\ufffd")
        if bad > max_invalid * max(1, len(text)):
            return "", "invalid_utf8"
        return text, None


class HerdReader(BaseDiskReader):
    """Every file under `data_folder`: HTML, WARC, JSONL(.gz/.zst), Parquet, code and plain text.

    Herd's own shards (records with `metadata`) read back losslessly, so later stages use it too.
    `source` defaults to the first folder under `data_folder` (or the file stem at the top level).
    """

    name = "herd reader"
    _requires_dependencies = ("orjson",)

    def __init__(
        self,
        data_folder: DataFolderLike,
        max_doc_bytes: int = 10_000_000,
        max_invalid_utf8: float = 0.01,
        glob_pattern: str | None = None,
        skip_dropped: bool = True,
    ):
        super().__init__(data_folder, glob_pattern=glob_pattern, recursive=True)
        self.max_doc_bytes = max_doc_bytes
        self.max_invalid_utf8 = max_invalid_utf8
        self.skip_dropped = skip_dropped

    def run(self, data: DocumentsPipeline = None, rank: int = 0, world_size: int = 1) -> DocumentsPipeline:
        files = [
            f for f in self.data_folder.list_files(recursive=True, glob_pattern=self.glob_pattern) if self._wanted(f)
        ]
        for path in sorted(files)[rank::world_size]:
            self.stat_update("input_files")
            for doc in self.read_file(path):
                self.update_doc_stats(doc)
                yield doc

    def _wanted(self, path: str) -> bool:
        parts = PurePosixPath(path).parts
        if any(p.startswith(".") for p in parts):
            return False  # hidden files and folders (atomic-write temporaries among them)
        if parts[-1] in ("MANIFEST.json", "LICENSES.json", "LICENSES.md", "mix_weights.json"):
            return False
        return not (self.skip_dropped and "dropped" in parts[:-1])

    # ------------------------------------------------------------ dispatch

    def read_file(self, filepath: str) -> Iterator[Document]:
        name = filepath.lower()
        source = self._source(filepath)
        size = self.data_folder.size(filepath)
        try:
            if name.endswith(WARC_SUFFIXES):
                yield from self._read_warc(filepath, source)
            elif name.endswith(JSONL_SUFFIXES):
                yield from self._read_jsonl(filepath, source)
            elif name.endswith(".parquet"):
                yield from self._read_parquet(filepath, source)
            elif size > self.max_doc_bytes:
                yield _error_doc(filepath, source, "too_large", size)
            else:
                yield self._read_single(filepath, source, size)
        except (EOFError, zlib.error, gzip.BadGzipFile, OSError, ValueError) as e:
            # A truncated or corrupt archive: what was read before the break is kept; the rest is one drop.
            yield _error_doc(f"{filepath}#truncated", source, "truncated_archive", size, str(e)[:200])

    def _source(self, filepath: str) -> str:
        parts = PurePosixPath(filepath).parts
        if len(parts) > 1:
            return parts[0]
        return PurePosixPath(parts[0]).name.split(".")[0]

    def _read_single(self, filepath: str, source: str, size: int) -> Document:
        with self.data_folder.open(filepath, "rb") as f:
            data = f.read()
        if looks_binary(data[:SNIFF_BYTES]):
            return _error_doc(filepath, source, "binary_file", size)
        name = filepath.lower()
        # HTML meta tags and mail headers declare their charset; it is tried first, UTF-8 after it
        m = _CHARSET.search(data[:4096])
        charset = m.group(1).decode("ascii", "replace") if m else None
        text, err = decode_text(data, self.max_invalid_utf8, charset)
        if err:
            return _error_doc(filepath, source, err, size)
        meta: dict[str, Any] = {"source": source, "bytes_in": size}
        suffix = PurePosixPath(name).suffix
        if name.endswith(HTML_SUFFIXES):
            meta["raw_format"] = "html"
        elif suffix in CODE_SUFFIXES:
            meta.update(raw_format="code", language="code", code_language=CODE_SUFFIXES[suffix])
        else:
            meta["raw_format"] = "text"
        return Document(text=text, id=f"{filepath}", metadata=meta)

    # ------------------------------------------------------------ record files

    def _read_jsonl(self, filepath: str, source: str) -> Iterator[Document]:
        import orjson

        with self.data_folder.open(filepath, "rb") as raw:
            for lineno, line in enumerate(_lines(raw, filepath), 1):
                if not line.strip():
                    continue
                doc_id = f"{filepath}#{lineno}"
                if len(line) > self.max_doc_bytes:
                    yield _error_doc(doc_id, source, "too_large", len(line))
                    continue
                try:
                    row = orjson.loads(line)
                except orjson.JSONDecodeError:
                    yield _error_doc(doc_id, source, "malformed_json", len(line), line[:200].decode("utf-8", "replace"))
                    continue
                yield self._from_row(row, doc_id, source, len(line))

    def _read_parquet(self, filepath: str, source: str) -> Iterator[Document]:
        import pyarrow.parquet as pq

        with self.data_folder.open(filepath, "rb") as f:
            for b, batch in enumerate(pq.ParquetFile(f).iter_batches(batch_size=1024)):
                for i, row in enumerate(batch.to_pylist()):
                    yield self._from_row(row, f"{filepath}#{b * 1024 + i}", source, 0)

    def _from_row(self, row: Any, doc_id: str, source: str, n_bytes: int) -> Document:
        if not isinstance(row, dict):
            return _error_doc(doc_id, source, "malformed_record", n_bytes)
        if "metadata" in row and isinstance(row.get("metadata"), dict) and "text" in row:  # a herd shard
            rid, text, meta = from_record(row)
            if not isinstance(text, str):
                return _error_doc(doc_id, source, "malformed_record", n_bytes)
            meta["bytes_in"] = n_bytes or len(text.encode("utf-8", "replace"))
            return Document(text=text, id=rid or doc_id, metadata=meta)
        html = row.get("html")
        text = html if isinstance(html, str) else row.get("text", row.get("content"))
        if not isinstance(text, str):
            return _error_doc(doc_id, source, "missing_text_field", n_bytes)
        meta = {"source": row.get("source") or source, "bytes_in": n_bytes or len(text.encode("utf-8", "replace"))}
        meta["raw_format"] = "html" if isinstance(html, str) or row.get("format") == "html" else "text"
        for key in ("url", "timestamp", "date", "language", "title"):
            if row.get(key) is not None:
                meta["timestamp" if key == "date" else key] = row[key]
        return Document(text=text, id=str(row.get("id") or doc_id), metadata=meta)

    def _read_warc(self, filepath: str, source: str) -> Iterator[Document]:
        from warcio.archiveiterator import ArchiveIterator

        with self.data_folder.open(filepath, "rb") as raw:
            for i, record in enumerate(ArchiveIterator(raw)):
                if record.rec_type not in ("response", "resource"):
                    continue  # request, metadata and warcinfo records are not documents
                url = record.rec_headers.get_header("WARC-Target-URI")
                doc_id = record.rec_headers.get_header("WARC-Record-ID") or f"{filepath}#{i}"
                data = record.content_stream().read()
                ctype = (record.http_headers.get_header("Content-Type") if record.http_headers else None) or ""
                if "html" not in ctype.lower() and not data.lstrip()[:15].lower().startswith((b"<!doctype", b"<html")):
                    yield _error_doc(doc_id, source, "non_html_record", len(data), url=url)
                    continue
                if len(data) > self.max_doc_bytes:
                    yield _error_doc(doc_id, source, "too_large", len(data), url=url)
                    continue
                m = _CHARSET.search(ctype.encode() + b" " + data[:4096])
                text, err = decode_text(data, self.max_invalid_utf8, m.group(1).decode() if m else None)
                if err:
                    yield _error_doc(doc_id, source, err, len(data), url=url)
                    continue
                meta = {"source": source, "url": url, "raw_format": "html", "bytes_in": len(data)}
                meta["timestamp"] = record.rec_headers.get_header("WARC-Date")
                yield Document(text=text, id=doc_id, metadata=meta)


def _lines(raw: Any, filepath: str) -> Iterator[bytes]:
    """Lines of a plain, .gz or .zst byte stream (decompressed as it is read)."""
    if filepath.endswith(".zst"):
        import zstandard

        yield from _decompressed_lines(raw, zstandard.ZstdDecompressor().decompressobj, "zstd frame")
    elif filepath.endswith(".gz"):
        yield from _decompressed_lines(raw, lambda: zlib.decompressobj(16 + zlib.MAX_WBITS), "gzip stream")
    else:
        yield from raw


def _decompressed_lines(raw: Any, decompressor: Callable[[], Any], what: str) -> Iterator[bytes]:
    """Lines of a compressed stream as they decompress, so a truncated file still gives its complete lines
    first and then raises EOFError (its end marker is missing); several frames or members follow on."""
    d = decompressor()
    buf, started = b"", False
    while chunk := raw.read(1 << 16):
        started = True
        while chunk:
            buf += d.decompress(chunk)
            chunk = b""
            if d.eof and d.unused_data:  # the next frame (zstd) or member (gzip) starts here
                chunk = d.unused_data
                d = decompressor()
        *lines, buf = buf.split(b"\n")
        for line in lines:
            yield line + b"\n"
    if buf:
        yield buf
    if started and not d.eof:  # an empty file holds no records; a stream cut short lost some
        raise EOFError(f"{what} ended before its end marker (truncated file)")


def _error_doc(
    doc_id: str, source: str, reason: str, n_bytes: int, snippet: str = "", url: str | None = None
) -> Document:
    meta: dict[str, Any] = {"source": source, READ_ERROR: reason, "bytes_in": int(n_bytes)}
    if url:
        meta["url"] = url
    return Document(text=snippet, id=doc_id, metadata=meta)


class Tally(PipelineStep):
    """Counts documents and bytes passing this point (datatrove stats `docs` and `bytes`)."""

    type = "📊 - TALLY"

    def __init__(self, label: str):
        self.name = label  # before the base __init__, which names the stats after it
        super().__init__()

    def run(self, data: DocumentsPipeline, rank: int = 0, world_size: int = 1) -> DocumentsPipeline:
        for doc in data:
            self.stat_update("docs")
            self.stat_update(
                "bytes", value=int(doc.metadata.get("bytes_in") or len(doc.text.encode("utf-8", "replace")))
            )
            yield doc
