"""The data mix [P §3.1.2] and the annealing subset [P §3.1.3].

- Each document goes to one mix bucket, in this order: `code` (code files), `multilingual` (not English),
  `code` (English with a code score over threshold), `math_reasoning` (math score over threshold), `general`.
- Over-represented knowledge topics are down-sampled (the paper names arts and entertainment): a document
  of topic T is kept with probability `downsample[T]`, decided by a stable hash of its id; the rest are
  dropped with reason `downsampled_<T>`.
- `mix_weights.json` gives, per bucket, the documents and tokens available and the sampling weight and
  epochs that reach the configured target shares (paper: 50% general, 25% math/reasoning, 17% code,
  8% multilingual).
- The annealing subset copies the top `anneal_fraction` by quality of the code, math and general (prose)
  buckets to `anneal/<bucket>/`: the high-quality data the annealing stage up-samples. Benchmark training
  sets are not part of the bundled corpus; decontamination against benchmarks is the eval stage's job.

Layout of the stage folder: `kept/<bucket>/<language>/*.jsonl.zst` (the mix), `anneal/<bucket>/*.jsonl.zst`
(the annealing subset), `mix_weights.json`, `dropped/downsample/`.
"""

from __future__ import annotations

import contextlib
import json
import math
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from datatrove.data import Document, DocumentsPipeline
from datatrove.pipeline.base import PipelineStep
from datatrove.pipeline.writers.disk_base import DiskWriter

from herd.data.config import MixConfig
from herd.data.curate_stage import CurationStage, StepConfig, stage_tail
from herd.data.documents import SHARD_SUFFIX, iter_documents, open_text
from herd.data.executor import Phase
from herd.data.filters import HerdFilter
from herd.data.outputs import DroppedWriter, KeptWriter, count_shards
from herd.data.quality import stable_fraction
from herd.data.readers import Tally

ANNEAL_BUCKETS = ("code", "math_reasoning", "general")


def mix_bucket(meta: dict[str, Any], code_threshold: float, math_threshold: float) -> str:
    """The mix bucket of a document from its language and scores."""
    scores = meta.get("scores") or {}
    lang = meta.get("language", "und")
    if lang == "code":
        return "code"
    if lang not in ("en", "und"):  # before the code score: a weak classifier must not eat the multilingual share
        return "multilingual"
    if scores.get("code", 0.0) >= code_threshold:
        return "code"
    if scores.get("math", 0.0) >= math_threshold:
        return "math_reasoning"
    return "general"


def quality_of(meta: dict[str, Any]) -> float:
    s = meta.get("scores") or {}
    return float(s.get("quality", s.get("quality_fasttext", 0.0)))


def anneal_rank(meta: dict[str, Any], doc_id: str, seed: int) -> tuple[float, float]:
    """What orders documents for the annealing subset: quality, then a stable hash of the id, so equal
    scores (all 0 without the quality stage) still split at exactly the configured share."""
    return quality_of(meta), stable_fraction(doc_id, seed)


def anneal_thresholds(folder: Path, cfg: MixConfig) -> dict[str, list[float]]:
    """Per bucket, the rank of its top `anneal_fraction`-th document (ceil of the share; driver pre-pass)."""
    ranks: dict[str, list[tuple[float, float]]] = defaultdict(list)
    for rec in iter_documents(folder):
        meta = {**rec["metadata"], "language": rec["language"]}
        b = mix_bucket(meta, cfg.code_threshold, cfg.math_threshold)
        if b in ANNEAL_BUCKETS:
            ranks[b].append(anneal_rank(meta, rec["id"], cfg.seed))
    out = {}
    for b, r in ranks.items():
        r.sort(reverse=True)
        out[b] = list(r[min(len(r), math.ceil(cfg.anneal_fraction * len(r))) - 1])
    return out


def mix_weights(partitions: dict[str, dict[str, int]], target: dict[str, float]) -> dict[str, Any]:
    """Sampling weight and epochs per bucket so that drawn tokens follow `target` (renormalized over buckets
    that have data). Tokens fall back to bytes / 4 where a document has no token count."""
    avail: dict[str, dict[str, int]] = defaultdict(lambda: {"docs": 0, "tokens": 0})
    for part, c in partitions.items():
        b = part.split("/")[0]
        avail[b]["docs"] += c["docs"]
        avail[b]["tokens"] += c.get("tokens") or c["bytes"] // 4
    present = {b: t for b, t in target.items() if avail.get(b, {}).get("tokens")}
    norm = sum(present.values()) or 1.0
    total = sum(a["tokens"] for a in avail.values())
    out: dict[str, Any] = {}
    for b in sorted(set(target) | set(avail)):
        a = avail.get(b, {"docs": 0, "tokens": 0})
        w = present.get(b, 0.0) / norm
        out[b] = {
            "docs": a["docs"],
            "tokens": a["tokens"],
            "available_share": round(a["tokens"] / max(1, total), 4),
            "target_share": target.get(b, 0.0),
            "weight": round(w, 4),
            # epochs over the bucket for one pass-worth (sum of all buckets) of drawn tokens
            "epochs": round(w * total / a["tokens"], 3) if a["tokens"] else 0.0,
        }
    missing = sorted(b for b in target if b not in present)
    return {"buckets": out, "total_tokens": total, "missing_buckets": missing}


class MixAssign(PipelineStep):
    """Sets `mix_bucket`; copies annealing-quality documents to `anneal/<bucket>/`."""

    type = "🏷 - TAGGER"
    name = "mix assign"

    def __init__(self, cfg: MixConfig, thresholds: dict[str, list[float]], anneal_writer: DiskWriter | None):
        super().__init__()
        self.code_threshold, self.math_threshold, self.seed = cfg.code_threshold, cfg.math_threshold, cfg.seed
        self.thresholds = {b: tuple(t) for b, t in thresholds.items()}
        self.anneal_writer = anneal_writer

    def run(self, data: DocumentsPipeline, rank: int = 0, world_size: int = 1) -> DocumentsPipeline:
        with self.anneal_writer if self.anneal_writer else contextlib.nullcontext() as writer:
            for doc in data:
                b = mix_bucket(doc.metadata, self.code_threshold, self.math_threshold)
                doc.metadata["mix_bucket"] = b
                thr = self.thresholds.get(b)
                if writer is not None and thr is not None and anneal_rank(doc.metadata, doc.id, self.seed) >= thr:
                    writer.write(doc, rank)
                    self.stat_update(f"anneal_{b}")
                yield doc


class TopicDownsample(HerdFilter):
    """Keeps a document of an over-represented topic with probability `downsample[topic]`."""

    name = "topic downsample"

    def __init__(self, downsample: dict[str, float], seed: int = 0, exclusion_writer: DiskWriter | None = None):
        super().__init__(exclusion_writer)
        self.downsample, self.seed = dict(downsample), seed

    def reject(self, doc: Document) -> str | None:
        topic = doc.metadata.get("topic")
        keep = self.downsample.get(topic) if topic else None
        if keep is None or stable_fraction(doc.id, self.seed) < keep:
            return None
        return f"downsampled_{topic}"


class MixWeightsWriter(PipelineStep):
    """Last phase (one task): counts the written mix and writes `mix_weights.json` beside it."""

    type = "📊 - STATS"
    name = "mix weights"

    def __init__(self, output: str | Path, target: dict[str, float]):
        super().__init__()
        self.output, self.target = str(output), dict(target)

    def run(self, data: DocumentsPipeline = None, rank: int = 0, world_size: int = 1) -> DocumentsPipeline:
        parts = count_shards(self.output)["partitions"]
        anneal = Path(self.output) / "anneal"
        report = mix_weights(parts, self.target)
        report["anneal"] = {
            p.name: sum(1 for f in sorted(p.glob(f"*{SHARD_SUFFIX}")) for _ in _lines(f))
            for p in sorted(anneal.glob("*"))
        }
        (Path(self.output) / "mix_weights.json").write_text(json.dumps(report, indent=2) + "\n")
        return
        yield


def _lines(path: Path) -> list[str]:
    with open_text(path) as f:
        return [line for line in f if line.strip()]


@dataclass
class MixSettings(StepConfig):
    mix: MixConfig


@dataclass
class Mix(CurationStage):
    """07: mix buckets and weights, topic down-sampling, the annealing subset (`anneal/`) [P §3.1.2, §3.1.3]."""

    name = "mix"
    config: MixSettings

    def phases(self, output: Path, work: Path) -> list[Phase]:
        m = self.config.mix
        thresholds = anneal_thresholds(self.source, m) if m.anneal_fraction > 0 else {}
        (work / "anneal_thresholds.json").parent.mkdir(parents=True, exist_ok=True)
        (work / "anneal_thresholds.json").write_text(json.dumps(thresholds, indent=2) + "\n")
        anneal = KeptWriter(output, "${mix_bucket}", subdir="anneal") if thresholds else None
        steps: list[Any] = [self.reader(), Tally("in"), MixAssign(m, thresholds, anneal)]
        if m.downsample:
            steps.append(TopicDownsample(m.downsample, m.seed, DroppedWriter(output, "downsample")))
        return [
            Phase("mix", [*steps, *stage_tail(output, "${mix_bucket}/${language}")], self.config.tasks),
            Phase("weights", [MixWeightsWriter(output, m.target)], 1),
        ]
