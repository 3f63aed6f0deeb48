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
    """Documents, bytes and tokens in `kept/` (per partition) and in `dropped/` (per reason)."""
    import orjson

    folder = Path(folder)
    kept: Counter[str] = Counter()
    kept_bytes = tokens = 0
    by_part: dict[str, Counter[str]] = {}
    for path in sorted((folder / KEPT).rglob(f"*{SHARD_SUFFIX}")):
        part = path.relative_to(folder / KEPT).parent.as_posix()
        c = by_part.setdefault(part, Counter())
        with open_text(path) as f:
            for line in f:
                rec = orjson.loads(line)
                n = len(rec["text"].encode("utf-8", "replace"))
                c["docs"] += 1
                c["bytes"] += n
                c["tokens"] += int(rec.get("metadata", {}).get("token_count") or 0)
                kept_bytes += n
                tokens += int(rec.get("metadata", {}).get("token_count") or 0)
    kept["docs"] = sum(c["docs"] for c in by_part.values())
    dropped: Counter[str] = Counter()
    dropped_bytes: Counter[str] = Counter()
    for path in sorted((folder / DROPPED).rglob(f"*{SHARD_SUFFIX}")):
        with open_text(path) as f:
            for line in f:
                rec = orjson.loads(line)
                dropped[rec["reason"]] += 1
                dropped_bytes[rec["reason"]] += int(rec.get("bytes") or 0)
    return {
        "kept": kept["docs"],
        "kept_bytes": kept_bytes,
        "kept_tokens": tokens,
        "partitions": {k: dict(v) for k, v in sorted(by_part.items())},
        "dropped": dict(sorted(dropped.items())),
        "dropped_bytes": dict(sorted(dropped_bytes.items())),
    }
