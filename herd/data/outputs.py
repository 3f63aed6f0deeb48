"""Writers for kept and dropped shards, and the funnel counted back from what was written.

Kept shards: `kept/<partition>/<rank>.jsonl.zst` (the partition is e.g. the language) in the record format
of `herd.data.documents`. Dropped shards: `dropped/<step>/<rank>.jsonl.zst`, one record per dropped document
with its `reason`. The funnel is counted from these files, so it reports what is on disk, not what a step
believed it did.
"""

from __future__ import annotations

from collections import Counter
from pathlib import Path
from typing import Any

from datatrove.data import Document
from datatrove.pipeline.writers.jsonl import JsonlWriter

from herd.data.documents import SHARD_SUFFIX, open_text, to_record
from herd.data.readers import SOURCE_FILE, SOURCE_LINE, UTF8_REPLACED

KEPT, DROPPED = "kept", "dropped"


def _kept_adapter(self: Any, doc: Document) -> dict[str, Any]:
    return to_record(doc.id, doc.text, doc.metadata)


def _dropped_adapter(self: Any, doc: Document) -> dict[str, Any]:
    reason = doc.metadata.get("filter_reason") or self.default_reason
    meta = doc.metadata
    return {
        "id": doc.id,
        "reason": reason,
        "source": meta.get("source", ""),
        "language": meta.get("language", "und"),
        "url": meta.get("url"),
        "bytes": int(meta.get("bytes_in") or len(doc.text.encode("utf-8", "replace"))),
        # where it came from, so the funnel is counted per input file too
        **{k: meta[k] for k in (SOURCE_FILE, SOURCE_LINE, UTF8_REPLACED) if meta.get(k) is not None},
        "text": doc.text,
    }


class KeptWriter(JsonlWriter):
    """Kept documents as herd records, partitioned by a metadata field (`${language}` by default)."""

    name = "herd kept"

    def __init__(self, out_dir: str | Path, partition: str = "${language}", subdir: str = KEPT):
        super().__init__(
            str(Path(out_dir) / subdir),
            output_filename=f"{partition}/${{rank}}{SHARD_SUFFIX}",
            compression="zstd",
            adapter=_kept_adapter,
        )

    def write(self, document: Document, rank: int = 0, **kwargs: Any) -> None:
        # A partition value must be a safe folder name: a language code, a mix bucket.
        document.metadata.setdefault("language", "und")
        super().write(document, rank, **kwargs)


class DroppedWriter(JsonlWriter):
    """Dropped documents of one step, each with its reason (`default_reason` when the step gives none)."""

    name = "herd dropped"

    def __init__(self, out_dir: str | Path, step: str, default_reason: str = ""):
        super().__init__(
            str(Path(out_dir) / DROPPED),
            output_filename=f"{step}/${{rank}}{SHARD_SUFFIX}",
            compression="zstd",
            adapter=_dropped_adapter,
        )
        self.default_reason = default_reason or step


def count_shards(folder: str | Path) -> dict[str, Any]:
    """Documents, bytes and tokens in `kept/` (per partition) and in `dropped/` (per reason), and per input
    file (`files`: read = kept + dropped by reason, and the invalid UTF-8 bytes replaced in what was read)."""
    import orjson

    folder = Path(folder)
    kept_bytes = tokens = 0
    by_part: dict[str, Counter[str]] = {}
    files = FileTally()
    for path in sorted((folder / KEPT).rglob(f"*{SHARD_SUFFIX}")):
        part = path.relative_to(folder / KEPT).parent.as_posix()
        c = by_part.setdefault(part, Counter())
        with open_text(path) as f:
            for line in f:
                rec = orjson.loads(line)
                meta = rec.get("metadata", {})
                n = len(rec["text"].encode("utf-8", "replace"))
                c["docs"] += 1
                c["bytes"] += n
                c["tokens"] += int(meta.get("token_count") or 0)
                kept_bytes += n
                tokens += int(meta.get("token_count") or 0)
                files.add(meta.get(SOURCE_FILE), None, meta.get(UTF8_REPLACED))
    dropped: Counter[str] = Counter()
    dropped_bytes: Counter[str] = Counter()
    for path in sorted((folder / DROPPED).rglob(f"*{SHARD_SUFFIX}")):
        with open_text(path) as f:
            for line in f:
                rec = orjson.loads(line)
                dropped[rec["reason"]] += 1
                dropped_bytes[rec["reason"]] += int(rec.get("bytes") or 0)
                files.add(rec.get(SOURCE_FILE), rec["reason"], rec.get(UTF8_REPLACED))
    return {
        "kept": sum(c["docs"] for c in by_part.values()),
        "kept_bytes": kept_bytes,
        "kept_tokens": tokens,
        "partitions": {k: dict(v) for k, v in sorted(by_part.items())},
        "dropped": dict(sorted(dropped.items())),
        "dropped_bytes": dict(sorted(dropped_bytes.items())),
        "utf8_replaced": files.replaced,
        "files": files.table(),
    }


class FileTally:
    """Per input file: records read, kept, dropped by reason, UTF-8 bytes replaced."""

    def __init__(self) -> None:
        self.rows: dict[str, dict[str, Any]] = {}
        self.replaced = 0

    def add(self, file: str | None, reason: str | None, replaced: int | None) -> None:
        row = self.rows.setdefault(file or "(unknown)", {"read": 0, "kept": 0, "dropped": Counter()})
        row["read"] += 1
        if reason is None:
            row["kept"] += 1
        else:
            row["dropped"][reason] += 1
        if replaced:
            row["utf8_replaced"] = row.get("utf8_replaced", 0) + int(replaced)
            self.replaced += int(replaced)

    def table(self) -> dict[str, dict[str, Any]]:
        return {f: {**r, "dropped": dict(sorted(r["dropped"].items()))} for f, r in sorted(self.rows.items())}
