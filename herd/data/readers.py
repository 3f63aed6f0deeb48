"""Readers: directories of HTML, WARC, JSONL/Parquet documents and plain text, as datatrove Documents.

datatrove's own readers skip records they cannot parse or that have no text (with a log warning). Curation
must lose nothing, so `HerdReader` turns every unreadable record into a Document marked with a
`read_error` reason; the first filter of a stage drops it into `dropped/` where it is counted. A file it
does not read at all is listed by `HerdReader.inventory` with a reason, and is never opened.
"""

from __future__ import annotations

import contextlib
import gzip
import os
import re
import zlib
from collections.abc import Callable, Iterator, Sequence
from pathlib import PurePosixPath
from typing import Any

from datatrove.data import Document, DocumentsPipeline
from datatrove.io import DataFolderLike
from datatrove.pipeline.base import PipelineStep
from datatrove.pipeline.readers.base import BaseDiskReader

from herd.data.documents import from_record

READ_ERROR = "read_error"  # metadata key: why a record could not be read (the drop reason)
# Where a record came from: its file (relative to the folder read) and line (JSONL), row (Parquet) or record
# (WARC), 1-based; kept with the document so a curated record can be traced back and counted per file.
SOURCE_FILE, SOURCE_LINE = "source_file", "source_line"
UTF8_REPLACED = "utf8_replaced"  # metadata key: undecodable bytes replaced by U+FFFD (rare enough to keep)
# Bookkeeping a herd stage or the bundled corpus writes beside documents: never documents themselves.
BOOKKEEPING = ("MANIFEST.json", "LICENSES.json", "LICENSES.md", "mix_weights.json")
HTML_SUFFIXES = (".html", ".htm", ".xhtml")
WARC_SUFFIXES = (".warc", ".warc.gz")
JSONL_SUFFIXES = (".jsonl", ".jsonl.gz", ".jsonl.zst", ".ndjson", ".json.gz")
CODE_SUFFIXES = {".py": "python", ".c": "c", ".h": "c", ".js": "javascript", ".rs": "rust", ".go": "go", ".sh": "shell"}
TEXT_SUFFIXES = (".txt", ".md", ".rst", ".text", "")
COMPRESSED_SUFFIXES = (".gz", ".zst")  # a compressed text, code or HTML file (after the record formats)
SNIFF_BYTES = 8192
READ_BYTES = 1 << 16  # plain files are read in blocks this size: a record over max_doc_bytes is never whole
# Compressed input is fed in smaller pieces: one piece of highly compressible input inflates ~1000x (gzip).
INFLATE_BYTES = 1 << 12
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
    text, err, _ = decode_counted(data, max_invalid, charset)
    return text, err


def decode_counted(data: bytes, max_invalid: float, charset: str | None = None) -> tuple[str, str | None, int]:
    """`decode_text` plus how many undecodable bytes became U+FFFD (counted, so a repair is never silent)."""
    if charset and charset.lower().replace("_", "-") not in ("utf-8", "utf8"):
        try:
            return data.decode(charset), None, 0
        except (LookupError, UnicodeDecodeError):
            pass
    try:
        return data.decode("utf-8"), None, 0
    except UnicodeDecodeError:
        text = data.decode("utf-8", errors="replace")
        bad = text.count("\ufffd") - data.count("\ufffd".encode())  # a U+FFFD in the input is not a repair
        if bad > max_invalid * max(1, len(text)):
            return "", "invalid_utf8", bad
        return text, None, bad


def skip_reason(path: str, info: dict[str, Any], skip_dropped: bool = True, resolves: bool = True) -> str | None:
    """Why a file under the input folder is not read (None: it is read). `info` is fsspec's entry for it;
    `resolves` is False for a symlink whose target is gone."""
    if info.get("type") != "file":  # opening a FIFO or a device blocks or never ends: never opened
        return "broken_symlink" if info.get("islink") and not resolves else "not_a_regular_file"
    parts = PurePosixPath(path).parts
    if any(p.startswith(".") for p in parts):
        return "hidden"  # hidden files and folders (atomic-write temporaries among them)
    if parts[-1] in BOOKKEEPING:
        return "bookkeeping"
    if skip_dropped and "dropped" in parts[:-1]:
        return "dropped_folder"  # a stage's dropped records: reading them back would undo the drop
    return None


class HerdReader(BaseDiskReader):
    """Every file under `data_folder`: HTML, WARC, JSONL(.gz/.zst), Parquet, code and plain text (.gz/.zst too).

    Herd's own shards (records with `metadata`) read back losslessly, so later stages use it too.
    `source` defaults to the first folder under `data_folder` (or the file stem at the top level). `files`
    (paths relative to `data_folder`) reads just those instead of listing the folder. What is not read is
    listed by `inventory()` with a reason; every record read names its file and line (SOURCE_FILE/LINE).
    """

    name = "herd reader"
    _requires_dependencies = ("orjson",)

    def __init__(
        self,
        data_folder: DataFolderLike,
        max_doc_bytes: int = 10_000_000,
        max_invalid_utf8: float = 0.01,
        files: Sequence[str] | None = None,
        skip_dropped: bool = True,
    ):
        super().__init__(data_folder, recursive=True)
        self.max_doc_bytes = max_doc_bytes
        self.max_invalid_utf8 = max_invalid_utf8
        self.files = list(files) if files is not None else None
        self.skip_dropped = skip_dropped

    def run(self, data: DocumentsPipeline = None, rank: int = 0, world_size: int = 1) -> DocumentsPipeline:
        files, _ = self.inventory()
        for path in files[rank::world_size]:
            self.stat_update("input_files")
            for doc in self.read_file(path):
                self.update_doc_stats(doc)
                yield doc

    def inventory(self) -> tuple[list[str], list[dict[str, str]]]:
        """(files to read, sorted; [{path, reason}] of the files not read): together, every input file."""
        if self.files is None:
            entries = self.data_folder.find("", withdirs=False, detail=True)
        else:
            entries = {f: self.data_folder.info(f) for f in self.files}
        read, skipped = [], []
        for path in sorted(entries):
            info = entries[path]
            resolves = not info.get("islink") or os.path.exists(self.data_folder.resolve_paths(path))
            reason = skip_reason(path, info, self.skip_dropped, resolves)
            if reason:
                skipped.append({"path": path, "reason": reason})
            else:
                read.append(path)
        return read, skipped

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
            elif name.endswith(COMPRESSED_SUFFIXES):
                yield self._read_compressed(filepath, source)
            elif size > self.max_doc_bytes:
                yield _error_doc(filepath, source, "too_large", size, origin=_origin(filepath))
            else:
                yield self._read_single(filepath, source, size)
        except EOFError as e:
            # A truncated archive: what was read before the cut is kept; the rest is one drop.
            yield _error_doc(
                f"{filepath}#truncated", source, "truncated_archive", size, str(e)[:200], origin=_origin(filepath)
            )
        except (zlib.error, gzip.BadGzipFile, OSError, ValueError, *_archive_errors()) as e:
            # Not a truncation: bytes that do not decompress or parse as the format its name says (or, for
            # a plain file, an OS error reading it); what was read before it is kept, the rest is one drop.
            reason = "corrupt_archive" if name.endswith((*COMPRESSED_SUFFIXES, ".warc")) else "unreadable_file"
            yield _error_doc(f"{filepath}#corrupt", source, reason, size, str(e)[:200], origin=_origin(filepath))

    def _source(self, filepath: str) -> str:
        parts = PurePosixPath(filepath).parts
        if len(parts) > 1:
            return parts[0]
        return PurePosixPath(parts[0]).name.split(".")[0]

    def _read_single(self, filepath: str, source: str, size: int) -> Document:
        with self.data_folder.open(filepath, "rb") as f:
            data = f.read()
        return self._document(data, filepath, filepath.lower(), source, size)

    def _read_compressed(self, filepath: str, source: str) -> Document:
        """A .gz/.zst text, code or HTML file: one document, decompressed up to `max_doc_bytes` (never more)."""
        with self.data_folder.open(filepath, "rb") as raw:
            data, n = _bounded_read(_chunks(raw, filepath), self.max_doc_bytes)
        if data is None:
            return _error_doc(filepath, source, "too_large", n, origin=_origin(filepath))
        return self._document(data, filepath, filepath.lower().rsplit(".", 1)[0], source, n)

    def _document(self, data: bytes, filepath: str, name: str, source: str, size: int) -> Document:
        """One whole-file document from its bytes; `name` (lower case, compression suffix gone) sets its kind."""
        origin = _origin(filepath)
        if looks_binary(data[:SNIFF_BYTES]):
            return _error_doc(filepath, source, "binary_file", size, origin=origin)
        # HTML meta tags and mail headers declare their charset; it is tried first, UTF-8 after it
        m = _CHARSET.search(data[:4096])
        charset = m.group(1).decode("ascii", "replace") if m else None
        text, err, replaced = decode_counted(data, self.max_invalid_utf8, charset)
        if err:
            return _error_doc(filepath, source, err, size, origin=origin)
        meta: dict[str, Any] = {"source": source, "bytes_in": size, **origin, **_replaced(replaced)}
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
        with self.data_folder.open(filepath, "rb") as raw:
            for lineno, (line, n) in enumerate(_bounded_lines(_chunks(raw, filepath), self.max_doc_bytes), 1):
                doc_id, origin = f"{filepath}#{lineno}", _origin(filepath, lineno)
                if line is None:  # over the limit: counted while skipped, never held whole
                    yield _error_doc(doc_id, source, "too_large", n, origin=origin)
                    continue
                if not line.strip():
                    continue
                row, reason, replaced = self._parse_line(line)
                if reason:
                    yield _error_doc(doc_id, source, reason, n, line[:200].decode("utf-8", "replace"), origin=origin)
                    continue
                doc = self._from_row(row, doc_id, source, n, origin)
                doc.metadata.update(_replaced(replaced))
                yield doc

    def _parse_line(self, line: bytes) -> tuple[Any, str | None, int]:
        """(row, None, replaced) or (None, reason, 0); a line with rare undecodable bytes is repaired, not lost."""
        import orjson

        try:
            return orjson.loads(line), None, 0
        except orjson.JSONDecodeError:
            pass
        try:
            line.decode("utf-8")
            return None, "malformed_json", 0
        except UnicodeDecodeError:
            text, err, replaced = decode_counted(line, self.max_invalid_utf8)
        if err:
            return None, err, 0
        try:
            return orjson.loads(text), None, replaced
        except orjson.JSONDecodeError:
            return None, "malformed_json", 0

    def _read_parquet(self, filepath: str, source: str) -> Iterator[Document]:
        import pyarrow as pa
        import pyarrow.parquet as pq

        row = 0
        try:
            with self.data_folder.open(filepath, "rb") as f:
                for batch in pq.ParquetFile(f).iter_batches(batch_size=1024):
                    for record in batch.to_pylist():
                        row += 1
                        origin = _origin(filepath, row)
                        yield self._from_row(record, f"{filepath}#{row - 1}", source, 0, origin)
        except (pa.ArrowException, OSError, ValueError) as e:
            # The rows before the damage are kept; the rest of the file is one drop.
            size = self.data_folder.size(filepath)
            yield _error_doc(
                f"{filepath}#corrupt", source, "corrupt_parquet", size, str(e)[:200], origin=_origin(filepath)
            )

    def _from_row(self, row: Any, doc_id: str, source: str, n_bytes: int, origin: dict[str, Any]) -> Document:
        if not isinstance(row, dict):
            return _error_doc(doc_id, source, "malformed_record", n_bytes, origin=origin)
        if "metadata" in row and isinstance(row.get("metadata"), dict) and "text" in row:  # a herd shard
            rid, text, meta = from_record(row)
            if not isinstance(text, str):
                return _error_doc(doc_id, source, "malformed_record", n_bytes, origin=origin)
            meta["bytes_in"] = n_bytes or len(text.encode("utf-8", "replace"))
            for key, value in origin.items():  # a curated record keeps the raw file it came from
                meta.setdefault(key, value)
            return Document(text=text, id=rid or doc_id, metadata=meta)
        html = row.get("html")
        text = html if isinstance(html, str) else row.get("text", row.get("content"))
        if not isinstance(text, str):
            return _error_doc(doc_id, source, "missing_text_field", n_bytes, origin=origin)
        meta = {"source": row.get("source") or source, "bytes_in": n_bytes or len(text.encode("utf-8", "replace"))}
        meta["raw_format"] = "html" if isinstance(html, str) or row.get("format") == "html" else "text"
        for key in ("url", "timestamp", "date", "language", "title"):
            if row.get(key) is not None:
                meta["timestamp" if key == "date" else key] = row[key]
        meta.update(origin)
        return Document(text=text, id=str(row.get("id") or doc_id), metadata=meta)

    def _read_warc(self, filepath: str, source: str) -> Iterator[Document]:
        from warcio.archiveiterator import ArchiveIterator

        with self.data_folder.open(filepath, "rb") as raw:
            for i, record in enumerate(ArchiveIterator(raw)):
                if record.rec_type not in ("response", "resource"):
                    continue  # request, metadata and warcinfo records are not documents
                url = record.rec_headers.get_header("WARC-Target-URI")
                doc_id = record.rec_headers.get_header("WARC-Record-ID") or f"{filepath}#{i}"
                origin = _origin(filepath, i + 1)
                data, n = _bounded_read(_blocks(record.content_stream()), self.max_doc_bytes)
                if data is None:
                    yield _error_doc(doc_id, source, "too_large", n, url=url, origin=origin)
                    continue
                ctype = (record.http_headers.get_header("Content-Type") if record.http_headers else None) or ""
                if "html" not in ctype.lower() and not data.lstrip()[:15].lower().startswith((b"<!doctype", b"<html")):
                    yield _error_doc(doc_id, source, "non_html_record", n, url=url, origin=origin)
                    continue
                m = _CHARSET.search(ctype.encode() + b" " + data[:4096])
                text, err, replaced = decode_counted(data, self.max_invalid_utf8, m.group(1).decode() if m else None)
                if err:
                    yield _error_doc(doc_id, source, err, n, url=url, origin=origin)
                    continue
                meta = {"source": source, "url": url, "raw_format": "html", "bytes_in": n, **origin}
                meta["timestamp"] = record.rec_headers.get_header("WARC-Date")
                yield Document(text=text, id=doc_id, metadata={**meta, **_replaced(replaced)})


def _archive_errors() -> tuple[type[Exception], ...]:
    """Errors the optional decoders raise on bytes that are not their format."""
    errors: list[type[Exception]] = []
    with contextlib.suppress(ImportError):
        import zstandard

        errors.append(zstandard.ZstdError)
    with contextlib.suppress(ImportError):
        from warcio.exceptions import ArchiveLoadFailed

        errors.append(ArchiveLoadFailed)
    return tuple(errors)


def _origin(filepath: str, line: int | None = None) -> dict[str, Any]:
    return {SOURCE_FILE: filepath} if line is None else {SOURCE_FILE: filepath, SOURCE_LINE: line}


def _replaced(n: int) -> dict[str, int]:
    return {UTF8_REPLACED: n} if n else {}


def _blocks(stream: Any) -> Iterator[bytes]:
    while block := stream.read(READ_BYTES):
        yield block


def _chunks(raw: Any, filepath: str) -> Iterator[bytes]:
    """Byte blocks of a plain, .gz or .zst stream, decompressed as it is read (each block bounded)."""
    name = filepath.lower()
    if name.endswith(".zst"):
        import zstandard

        yield from _decompressed(raw, zstandard.ZstdDecompressor().decompressobj, "zstd frame")
    elif name.endswith(".gz"):
        yield from _decompressed(raw, lambda: zlib.decompressobj(16 + zlib.MAX_WBITS), "gzip stream")
    else:
        yield from _blocks(raw)


def _decompressed(raw: Any, decompressor: Callable[[], Any], what: str) -> Iterator[bytes]:
    """Decompressed blocks as they come, so a truncated file still gives what precedes the cut and then
    raises EOFError (its end marker is missing); several frames (zstd) or members (gzip) follow on."""
    d = decompressor()
    started = False
    while chunk := raw.read(INFLATE_BYTES):
        started = True
        while chunk:
            if out := d.decompress(chunk):
                yield out
            chunk = b""
            if d.eof and d.unused_data:  # the next frame (zstd) or member (gzip) starts here
                chunk = d.unused_data
                d = decompressor()
    if started and not d.eof:  # an empty file holds no records; a stream cut short lost some
        raise EOFError(f"{what} ended before its end marker (truncated file)")


def _bounded_lines(blocks: Iterator[bytes], limit: int) -> Iterator[tuple[bytes | None, int]]:
    """(line, its size) per line of a block stream; a line over `limit` bytes comes as (None, size): only
    its length is counted, so memory stays within one block plus `limit` whatever the line's length.
    A stream cut short (EOFError) still gives its partial last line first (a record, dropped when parsed)."""
    held: list[bytes] = []
    n = 0
    try:
        for block in blocks:
            start = 0
            while start < len(block):
                end = block.find(b"\n", start)
                stop = len(block) if end < 0 else end + 1
                n += stop - start
                if n <= limit:
                    held.append(block[start:stop])
                else:
                    held.clear()
                start = stop
                if end >= 0:
                    yield (b"".join(held) if n <= limit else None), n
                    held, n = [], 0
    except EOFError:
        if n:
            yield (b"".join(held) if n <= limit else None), n
        raise
    if n:
        yield (b"".join(held) if n <= limit else None), n


def _bounded_read(blocks: Iterator[bytes], limit: int) -> tuple[bytes | None, int]:
    """(all bytes, size), or (None, size) when they exceed `limit`: the rest is counted, not held."""
    held: list[bytes] = []
    n = 0
    for block in blocks:
        n += len(block)
        if n <= limit:
            held.append(block)
        else:
            held.clear()
    return (b"".join(held) if n <= limit else None), n


def _error_doc(
    doc_id: str,
    source: str,
    reason: str,
    n_bytes: int,
    snippet: str = "",
    url: str | None = None,
    origin: dict[str, Any] | None = None,
) -> Document:
    meta: dict[str, Any] = {"source": source, READ_ERROR: reason, "bytes_in": int(n_bytes), **(origin or {})}
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
