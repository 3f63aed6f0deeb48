"""A deterministic, resumable loader that mixes sources and packs documents into sequences.

Each source is a list of token shards. Within a source, documents are visited in a per-epoch
permutation; rank r of W takes every W-th document of it, so ranks never share a document. For every
document the loader draws its source by the mix weights in force at the tokens seen so far (the paper's
mid-training mix changes and annealing up-sampling [P §3.1.3, §3.4]). Documents are concatenated into
sequences of T + 1 tokens; a document cut at a sequence end continues in the next sequence.
Every token carries its document's id, so attention can be masked per document [P §3.2], and labels
that would predict across a document boundary are ignored.

All randomness is derived from (seed, rank, counters), so `state_dict()` is a handful of integers and
resuming reproduces the exact stream.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import Tensor

from herd.data.shards import TokenShard

IGNORE_INDEX = -100
_DRAWS_PER_BLOCK = 4096


@dataclass(frozen=True)
class MixStage:
    after_tokens: int
    weights: Mapping[str, float]


@dataclass(frozen=True)
class MixSchedule:
    """Source sampling weights by tokens seen; weights are normalized, a zero weight pauses a source."""

    stages: Sequence[MixStage]

    def __post_init__(self) -> None:
        if not self.stages or self.stages[0].after_tokens != 0:
            raise ValueError("mix: the first stage must start at after_tokens = 0")
        for s in self.stages:
            if any(w < 0 for w in s.weights.values()) or sum(s.weights.values()) <= 0:
                raise ValueError(f"mix: weights at {s.after_tokens} tokens must be ≥ 0 with a positive sum")

    def at(self, tokens_seen: int) -> dict[str, float]:
        current = self.stages[0]
        for s in self.stages:
            if tokens_seen >= s.after_tokens:
                current = s
        total = sum(current.weights.values())
        return {k: v / total for k, v in current.weights.items()}

    @staticmethod
    def constant(weights: Mapping[str, float]) -> MixSchedule:
        return MixSchedule((MixStage(0, dict(weights)),))


@dataclass
class Batch:
    tokens: Tensor  # (B, T) inputs
    labels: Tensor  # (B, T) next tokens; IGNORE_INDEX across document boundaries
    doc_ids: Tensor  # (B, T) per-token document id within the row

    @property
    def n_labels(self) -> int:
        return int((self.labels != IGNORE_INDEX).sum())


class _Source:
    """One source's units across its shards, in a seeded per-epoch order, strided by rank.

    A unit is a whole document, or with `chunk` > 0 a piece of at most `chunk` tokens of one. Pieces are
    shuffled independently, so a step of a small run sees many documents instead of consecutive windows
    of one long one; each piece is its own document for the attention mask.
    """

    def __init__(self, shards: Sequence[Path], seed: int, rank: int, world: int, chunk: int = 0) -> None:
        self.shards = [TokenShard(p) for p in shards]
        for shard in self.shards:
            shard.check_ids()
        self.chunk = chunk
        lengths = [np.diff(np.asarray(s.offsets, dtype=np.int64)) for s in self.shards]
        pieces = [np.maximum(1, -(-n // chunk)) if chunk else np.ones_like(n) for n in lengths]
        self.unit_ends = [np.cumsum(p) for p in pieces]  # per shard: units up to and including each document
        counts = np.array([int(e[-1]) if len(e) else 0 for e in self.unit_ends], dtype=np.int64)
        if counts.sum() < world:
            raise ValueError(f"{shards[0].parent}: {counts.sum()} documents cannot feed {world} ranks")
        self.starts = np.concatenate([[0], np.cumsum(counts)])
        self.n_docs = int(counts.sum())
        self.seed, self.rank, self.world = seed, rank, world
        self.epoch, self.position = 0, rank  # position: index into the epoch's permutation
        self._order: np.ndarray | None = None

    def _permutation(self) -> np.ndarray:
        if self._order is None:
            self._order = np.random.default_rng([self.seed, self.epoch]).permutation(self.n_docs)
        return self._order

    def next_doc(self) -> tuple[int, int, int, int]:
        """(shard, document, start, end) of this rank's next unit; epochs wrap."""
        if self.position >= self.n_docs:
            self.epoch, self.position, self._order = self.epoch + 1, self.rank, None
        g = int(self._permutation()[self.position])
        self.position += self.world
        shard = int(np.searchsorted(self.starts, g, side="right") - 1)
        unit = g - int(self.starts[shard])
        doc = int(np.searchsorted(self.unit_ends[shard], unit, side="right"))
        n = len(self.tokens(shard, doc))
        if not self.chunk:
            return shard, doc, 0, n
        piece = unit - (int(self.unit_ends[shard][doc - 1]) if doc else 0)
        return shard, doc, piece * self.chunk, min(n, (piece + 1) * self.chunk)

    def tokens(self, shard: int, doc: int) -> np.ndarray:
        return self.shards[shard].doc(doc)


class TokenLoader:
    """`next_batch(batch_size, seq_len)` → Batch; state_dict()/load_state_dict() resume exactly."""

    def __init__(
        self,
        sources: Mapping[str, Sequence[Path]],
        mix: MixSchedule,
        seed: int = 0,
        rank: int = 0,
        world: int = 1,
        chunk_tokens: int = 0,
    ) -> None:
        unknown = {k for s in mix.stages for k in s.weights} - set(sources)
        if unknown:
            raise ValueError(f"mix names sources with no shards: {sorted(unknown)}; have {sorted(sources)}")
        self.names = sorted(sources)
        self.sources = {
            n: _Source(sources[n], seed + 1000 * i, rank, world, chunk_tokens) for i, n in enumerate(self.names)
        }
        self.mix, self.seed, self.rank, self.world = mix, seed, rank, world
        self.draws = 0  # documents drawn so far (indexes the source-choice random stream)
        self.tokens_seen = 0  # tokens emitted by this rank × world: an estimate of the global count
        self.current: tuple[str, int, int, int, int] | None = None  # (source, shard, doc, offset, end) being read
        self.source_tokens = dict.fromkeys(self.names, 0)
        self._block: tuple[int, np.ndarray] | None = None

    # -- randomness: a block of uniforms per 4,096 draws, keyed by (seed, rank, block index)
    def _uniform(self, i: int) -> float:
        b = i // _DRAWS_PER_BLOCK
        if self._block is None or self._block[0] != b:
            rng = np.random.default_rng([self.seed, self.rank, b, 7])
            self._block = (b, rng.random(_DRAWS_PER_BLOCK))
        return float(self._block[1][i % _DRAWS_PER_BLOCK])

    def _draw_source(self) -> str:
        weights = self.mix.at(self.tokens_seen)
        names = [n for n in self.names if weights.get(n, 0) > 0]
        cum = np.cumsum([weights[n] for n in names])
        u = self._uniform(self.draws) * cum[-1]
        self.draws += 1
        return names[min(int(np.searchsorted(cum, u, side="right")), len(names) - 1)]

    def _fill(self, n: int) -> tuple[np.ndarray, np.ndarray]:
        """The next n tokens of the stream and their (row-local) document ids."""
        toks, ids, have, doc_id = [], [], 0, 0
        while have < n:
            if self.current is None:
                name = self._draw_source()
                self.current = (name, *self.sources[name].next_doc())
            name, shard, doc, offset, stop = self.current
            piece = self.sources[name].tokens(shard, doc)[offset : min(stop, offset + n - have)]
            toks.append(np.asarray(piece, dtype=np.int64))
            ids.append(np.full(len(piece), doc_id, dtype=np.int64))
            have += len(piece)
            doc_id += 1
            self.source_tokens[name] += len(piece)
            end = offset + len(piece)
            self.current = None if end >= stop else (name, shard, doc, end, stop)
        return np.concatenate(toks), np.concatenate(ids)

    def next_batch(self, batch_size: int, seq_len: int) -> Batch:
        rows = [self._fill(seq_len + 1) for _ in range(batch_size)]
        seq = torch.from_numpy(np.stack([r[0] for r in rows]))  # (B, T+1)
        doc = torch.from_numpy(np.stack([r[1] for r in rows]))
        labels = seq[:, 1:].clone()
        labels[doc[:, 1:] != doc[:, :-1]] = IGNORE_INDEX  # never predict a document from the previous one
        self.tokens_seen += batch_size * seq_len * self.world
        return Batch(tokens=seq[:, :-1].contiguous(), labels=labels, doc_ids=doc[:, :-1].contiguous())

    def state_dict(self) -> dict:
        return {
            "draws": self.draws,
            "tokens_seen": self.tokens_seen,
            "current": list(self.current) if self.current else None,
            "sources": {n: {"epoch": s.epoch, "position": s.position} for n, s in self.sources.items()},
            "source_tokens": dict(self.source_tokens),
            "rank": self.rank,
            "world": self.world,
            "seed": self.seed,
        }

    def load_state_dict(self, state: Mapping) -> None:
        if (state["rank"], state["world"], state["seed"]) != (self.rank, self.world, self.seed):
            raise ValueError(
                f"loader state is for rank {state['rank']}/{state['world']} seed {state['seed']}, "
                f"this loader is rank {self.rank}/{self.world} seed {self.seed}"
            )
        self.draws, self.tokens_seen = int(state["draws"]), int(state["tokens_seen"])
        self.current = tuple(state["current"]) if state["current"] else None
        for name, s in state["sources"].items():
            src = self.sources[name]
            src.epoch, src.position, src._order = int(s["epoch"]), int(s["position"]), None
        self.source_tokens = {k: int(v) for k, v in state["source_tokens"].items()}


def split_sources(root: str | Path, split: str = "train") -> dict[str, list[Path]]:
    """Shards laid out by `herd tokenize`: root/<source>/<split>/*.bin → {source: shards}."""
    root = Path(root)
    found = {d.name: sorted((d / split).glob("*.bin")) for d in sorted(root.iterdir()) if (d / split).is_dir()}
    found = {k: v for k, v in found.items() if v}
    if not found:
        raise FileNotFoundError(f"{root}: no token shards under <source>/{split}/")
    return found
