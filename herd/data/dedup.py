"""De-duplication [P §3.1.1]: URL level (keep the most recent), global document MinHash, ccNet-style lines.

All three are two-pass: a signature pass writes small per-task files into a work folder, a single task
decides, and a filter pass (reading the same shards in the same order, so the i-th document of a task is
the same document) drops or edits documents. MinHash is datatrove's own four steps; this module only
supplies the word tokenizer and the drop reason. Document order within a task is the reader's, which is
deterministic, so reruns give identical output.
"""

from __future__ import annotations

import hashlib
import re
import unicodedata
from collections import Counter
from datetime import datetime
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import numpy as np
from datatrove.data import Document, DocumentsPipeline
from datatrove.pipeline.base import PipelineStep
from datatrove.pipeline.writers.disk_base import DiskWriter
from datatrove.utils.word_tokenizers import WordTokenizer

from herd.data.filters import HerdFilter

# [P §3.1.1] ccNet-style line de-duplication: lines seen more than 6 times in a bucket of 30M documents.
LINE_MAX_COUNT = 6
LINE_BUCKET_DOCS = 30_000_000


def _atomic_save(path: Path, **arrays: np.ndarray) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}")
    with open(tmp, "wb") as f:
        np.savez(f, **arrays)
    tmp.rename(path)  # a killed task leaves no half-written signature file


def hash64(text: str) -> int:
    """Stable signed 64-bit hash (first 8 bytes of sha1): the same on every machine and run."""
    return int.from_bytes(hashlib.sha1(text.encode("utf-8", "surrogatepass")).digest()[:8], "little", signed=True)


# ---------------------------------------------------------------- URL de-duplication


def normalize_url(url: str) -> str:
    """Scheme-less, lower-cased host without www/port, no fragment, no trailing slash or index page."""
    parts = urlsplit(url.strip())
    host = (parts.hostname or "").lower().removeprefix("www.")
    path = re.sub(r"/(index|default)\.(html?|php|aspx?)$", "/", parts.path or "/").rstrip("/")
    return urlunsplit(("", host, path, parts.query, ""))


def timestamp_of(value: Any) -> int:
    """Seconds since the epoch from an ISO date, a number, or nothing (0: oldest)."""
    if value is None or value == "":
        return 0
    if isinstance(value, int | float):
        return int(value)
    try:
        return int(datetime.fromisoformat(str(value).replace("Z", "+00:00")).timestamp())
    except ValueError:
        return 0


class UrlSignature(PipelineStep):
    """URL pass 1: (url hash, timestamp, index) for every document with a URL, one file per task."""

    type = "🫂 - DEDUP"
    name = "url signature"

    def __init__(self, work_dir: str | Path):
        super().__init__()
        self.work_dir = str(work_dir)

    def run(self, data: DocumentsPipeline, rank: int = 0, world_size: int = 1) -> DocumentsPipeline:
        rows: list[tuple[int, int, int]] = []
        for i, doc in enumerate(data):
            url = doc.metadata.get("url")
            if url:
                rows.append((hash64(normalize_url(str(url))), timestamp_of(doc.metadata.get("timestamp")), i))
            yield doc
        arr = np.array(rows, dtype=np.int64).reshape(-1, 3)
        _atomic_save(Path(self.work_dir) / "sigs" / f"{rank:05d}.npz", sigs=arr)


class UrlFindDuplicates(PipelineStep):
    """URL pass 2 (one task): per URL keep the most recent version (ties: first in task, index order)."""

    type = "🫂 - DEDUP"
    name = "url find duplicates"

    def __init__(self, work_dir: str | Path, world_size: int):
        super().__init__()
        self.work_dir, self.n_tasks = str(work_dir), world_size

    def run(self, data: DocumentsPipeline = None, rank: int = 0, world_size: int = 1) -> DocumentsPipeline:
        best: dict[int, tuple[int, int, int]] = {}  # url -> (-timestamp, task, index): smallest wins
        entries = []
        for task in range(self.n_tasks):
            with np.load(Path(self.work_dir) / "sigs" / f"{task:05d}.npz") as z:
                for url, ts, idx in z["sigs"].tolist():
                    key = (-ts, task, idx)
                    entries.append((url, key))
                    if url not in best or key < best[url]:
                        best[url] = key
        remove: dict[int, list[int]] = {t: [] for t in range(self.n_tasks)}
        for url, key in entries:
            if key != best[url]:
                remove[key[1]].append(key[2])
        for task, idxs in remove.items():
            self.stat_update("to_remove", value=len(idxs))
            _atomic_save(Path(self.work_dir) / "remove" / f"{task:05d}.npz", idx=np.array(sorted(idxs), dtype=np.int64))
        return
        yield  # a generator, like every step


class UrlDedupFilter(HerdFilter):
    """URL pass 3: drops the older copies found in pass 2 (`url_duplicate`)."""

    name = "url dedup"

    def __init__(self, work_dir: str | Path, exclusion_writer: DiskWriter | None = None):
        super().__init__(exclusion_writer)
        self.work_dir = str(work_dir)
        self._remove: set[int] = set()
        self._index = 0

    def run(self, data: DocumentsPipeline, rank: int = 0, world_size: int = 1) -> DocumentsPipeline:
        with np.load(Path(self.work_dir) / "remove" / f"{rank:05d}.npz") as z:
            self._remove = set(z["idx"].tolist())
        self._index = 0
        yield from super().run(data, rank, world_size)

    def reject(self, doc: Document) -> str | None:
        i, self._index = self._index, self._index + 1
        return "url_duplicate" if i in self._remove else None


# ---------------------------------------------------------------- MinHash (datatrove) word tokenizer


class MultilingualWordTokenizer(WordTokenizer):
    """Words for MinHash shingles in any script: \\w+ runs, with CJK/kana characters as single words.

    datatrove's default English tokenizer needs NLTK data downloaded at run time; this needs nothing.
    """

    _WORD = re.compile(r"[\u3040-\u30ff\u3400-\u4dbf\u4e00-\u9fff\uac00-\ud7af]|\w+", re.UNICODE)
    _SENT = re.compile(r"(?<=[.!?。！？])\s+|\n+")

    def __init__(self) -> None:
        super().__init__("xx")

    def word_tokenize(self, text: str) -> list[str]:
        return self._WORD.findall(text)

    def sent_tokenize(self, text: str) -> list[str]:
        return [s for s in self._SENT.split(text) if s.strip()]

    def span_tokenize(self, text: str) -> list[tuple[int, int]]:
        return [m.span() for m in self._WORD.finditer(text)]


# ---------------------------------------------------------------- ccNet-style line de-duplication


class _NonspacingMarks(dict):
    """`str.translate` table deleting nonspacing marks (category Mn), filled per code point on first sight."""

    def __missing__(self, cp: int) -> int | None:
        self[cp] = out = None if unicodedata.category(chr(cp)) == "Mn" else cp
        return out


_MARKS = _NonspacingMarks()
_DIGIT = re.compile(r"\d")
_NON_WORD = re.compile(r"[\W_]+")


def _ascii_table() -> bytes:
    """ccNet's normalization of ASCII bytes in one `bytes.translate`: letters lower-cased, digits to 0,
    newlines kept, everything else a space (the spaces then collapse with split/join)."""
    out = []
    for c in range(256):
        if 65 <= c <= 90:
            out.append(c + 32)
        elif 48 <= c <= 57:
            out.append(48)
        elif 97 <= c <= 122 or c == 10:
            out.append(c)
        else:
            out.append(32)
    return bytes(out)


_ASCII_NORM = _ascii_table()


def _normalized(line: str) -> bytes:
    """`normalize_line` as UTF-8 bytes (what `hash64` hashes): ASCII lines skip the Unicode work."""
    if line.isascii():
        return b" ".join(line.encode("ascii").translate(_ASCII_NORM).split())
    line = unicodedata.normalize("NFD", line.strip().lower()).translate(_MARKS)
    return _NON_WORD.sub(" ", _DIGIT.sub("0", line)).strip().encode("utf-8", "surrogatepass")


def normalize_line(line: str) -> str:
    """ccNet's normalization: lower case, accents removed, digits to 0, punctuation and spacing dropped."""
    return _normalized(line).decode("utf-8", "surrogatepass")


def _hash_bytes(data: bytes) -> int:
    return int.from_bytes(hashlib.sha1(data).digest()[:8], "little", signed=True)  # as `hash64`


def line_hashes(text: str) -> list[int]:
    """Hash per line (0 for blank lines, which are never de-duplicated)."""
    if text.isascii():  # most documents: the whole text through one translate table, then per-line splits
        rows: Any = (b" ".join(line.split()) for line in text.encode("ascii").translate(_ASCII_NORM).split(b"\n"))
    else:
        rows = (_normalized(line) for line in text.split("\n"))
    return [_hash_bytes(r) if r else 0 for r in rows]


def bucket_of(doc_id: str, language: str, n_docs: int, bucket_docs: int) -> str:
    """Bucket of a document: a stable hash of its id into ceil(n_docs / bucket_docs) buckets per language."""
    n_buckets = max(1, -(-n_docs // bucket_docs))
    return f"{language}/{hash64(doc_id) % n_buckets}"


class LineSignature(PipelineStep):
    """Line pass 1: each document's (language, id hash, line hashes), one file per task."""

    type = "🫂 - DEDUP"
    name = "line signature"

    def __init__(self, work_dir: str | Path):
        super().__init__()
        self.work_dir = str(work_dir)

    def run(self, data: DocumentsPipeline, rank: int = 0, world_size: int = 1) -> DocumentsPipeline:
        langs: list[str] = []
        ids: list[str] = []
        offsets = [0]
        hashes: list[int] = []
        for doc in data:
            langs.append(str(doc.metadata.get("language", "und")))
            ids.append(doc.id)
            hs = [h for h in line_hashes(doc.text) if h]
            hashes.extend(hs)
            offsets.append(len(hashes))
            yield doc
        _atomic_save(
            Path(self.work_dir) / "sigs" / f"{rank:05d}.npz",
            langs=np.array(langs, dtype=object).astype(str),
            ids=np.array(ids, dtype=object).astype(str),
            offsets=np.array(offsets, dtype=np.int64),
            hashes=np.array(hashes, dtype=np.int64),
        )


class LineFindFrequent(PipelineStep):
    """Line pass 2 (one task): line hashes seen more than `max_count` times in their bucket."""

    type = "🫂 - DEDUP"
    name = "line find frequent"

    def __init__(self, work_dir: str | Path, world_size: int, max_count: int, bucket_docs: int):
        super().__init__()
        self.work_dir, self.n_tasks = str(work_dir), world_size
        self.max_count, self.bucket_docs = max_count, bucket_docs

    def run(self, data: DocumentsPipeline = None, rank: int = 0, world_size: int = 1) -> DocumentsPipeline:
        loaded = []
        n_per_lang: Counter[str] = Counter()
        for task in range(self.n_tasks):
            z = np.load(Path(self.work_dir) / "sigs" / f"{task:05d}.npz", allow_pickle=False)
            loaded.append(z)
            n_per_lang.update(z["langs"].tolist())
        counts: dict[str, Counter[int]] = {}
        for z in loaded:
            offsets, hashes = z["offsets"], z["hashes"]
            for j, (lang, doc_id) in enumerate(zip(z["langs"].tolist(), z["ids"].tolist())):
                bucket = bucket_of(doc_id, lang, n_per_lang[lang], self.bucket_docs)
                counts.setdefault(bucket, Counter()).update(hashes[offsets[j] : offsets[j + 1]].tolist())
        buckets, frequent = [], []
        for bucket, c in sorted(counts.items()):
            hot = [h for h, n in c.items() if n > self.max_count]
            buckets.extend([bucket] * len(hot))
            frequent.extend(hot)
            self.stat_update("frequent_lines", value=len(hot))
        _atomic_save(
            Path(self.work_dir) / "frequent.npz",
            buckets=np.array(buckets, dtype=str),
            hashes=np.array(frequent, dtype=np.int64),
            n_per_lang=np.array([f"{k}\t{v}" for k, v in sorted(n_per_lang.items())], dtype=str),
        )
        return
        yield


class LineDedupFilter(HerdFilter):
    """Line pass 3: removes frequent lines from each document; a document left empty is dropped."""

    name = "line dedup"

    def __init__(self, work_dir: str | Path, bucket_docs: int, exclusion_writer: DiskWriter | None = None):
        super().__init__(exclusion_writer)
        self.work_dir, self.bucket_docs = str(work_dir), bucket_docs
        self._frequent: dict[str, set[int]] | None = None
        self._n_per_lang: dict[str, int] = {}

    def _load(self) -> dict[str, set[int]]:
        with np.load(Path(self.work_dir) / "frequent.npz") as z:
            out: dict[str, set[int]] = {}
            for bucket, h in zip(z["buckets"].tolist(), z["hashes"].tolist()):
                out.setdefault(bucket, set()).add(h)
            self._n_per_lang = {k: int(v) for k, v in (s.split("\t") for s in z["n_per_lang"].tolist())}
        return out

    def reject(self, doc: Document) -> str | None:
        if self._frequent is None:
            self._frequent = self._load()
        lang = str(doc.metadata.get("language", "und"))
        hot = self._frequent.get(bucket_of(doc.id, lang, self._n_per_lang.get(lang, 1), self.bucket_docs))
        if not hot:
            return None
        lines = doc.text.split("\n")
        kept = [line for line, h in zip(lines, line_hashes(doc.text)) if not h or h not in hot]
        removed = len(lines) - len(kept)
        if removed:
            self.stat_update("lines_removed", value=removed)
            doc.metadata["lines_removed"] = removed
            doc.text = "\n".join(kept).strip("\n")
        return "line_dedup_emptied" if not doc.text.strip() else None
