"""Contamination analysis [P §5.1.4]: which benchmark examples appear in the pretraining corpus, and how much
they lift the score.

1. Index: every 8-gram of every document in the token shards, hashed to 64 bits, streamed to 256 bucket
   files on disk by the hash's top byte, then each bucket sorted and de-duplicated. The buckets, concatenated
   in order, form one globally sorted array (`ngrams.u64`), memory-mapped for lookups. Memory stays bounded
   by the chunk size and one bucket, whatever the corpus size.
2. Coverage: an example (tokenized with the shards' tokenizer) is the fraction of its tokens that lie in
   at least one 8-gram found in the index.
3. Threshold: an example is contaminated when coverage ≥ T. T is chosen per benchmark to maximize the
   estimated gain, score(full set) − score(clean subset), among thresholds where the contaminated and clean
   subsets' scores differ significantly (two-proportion z-test, 95%).
"""

from __future__ import annotations

import contextlib
import json
import math
import shutil
import struct
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from herd.data.shards import TokenShard, list_shards

N = 8  # [P §5.1.4] 8-grams
MAGIC = b"HERDNGRM"
HEADER = struct.Struct("<8sIIQQ32x")  # magic, version, n, count, vocab_size
VERSION = 1
_P = np.uint64(0x9E3779B97F4A7C15)  # odd multiplier of the polynomial hash (the golden-ratio constant)
BUCKET_BITS = 8
CHUNK = 1 << 22  # tokens hashed at a time (~100 MB of temporaries)


def _mix(h: np.ndarray) -> np.ndarray:
    """splitmix64's finalizer: spreads the polynomial hash over all 64 bits (the top byte picks a bucket)."""
    h = h ^ (h >> np.uint64(30))
    h = h * np.uint64(0xBF58476D1CE4E5B9)
    h = h ^ (h >> np.uint64(27))
    h = h * np.uint64(0x94D049BB133111EB)
    return h ^ (h >> np.uint64(31))


def ngram_hashes(tokens: np.ndarray, n: int = N) -> np.ndarray:
    """64-bit hash of every window tokens[i:i+n], (len − n + 1,) uint64; empty when shorter than n."""
    t = np.asarray(tokens, dtype=np.uint64)
    m = len(t) - n + 1
    if m <= 0:
        return np.zeros(0, dtype=np.uint64)
    h = np.zeros(m, dtype=np.uint64)
    with np.errstate(over="ignore"):  # arithmetic modulo 2^64 is the point
        for j in range(n):
            h = h * _P + t[j : j + m] + np.uint64(1)
        return _mix(h)


# ------------------------------------------------------------------------------------------------ index


def _shard_hashes(shard: TokenShard, n: int) -> list[np.ndarray]:
    """Hashes of the shard's n-grams that stay inside one document, in chunks of about CHUNK tokens."""
    out = []
    offsets = np.asarray(shard.offsets, dtype=np.int64)
    for start in range(0, shard.n_tokens, CHUNK):
        stop = min(start + CHUNK + n - 1, shard.n_tokens)
        h = ngram_hashes(shard.tokens[start:stop], n)
        if not len(h):
            continue
        pos = np.arange(start, start + len(h))
        doc_end = offsets[np.searchsorted(offsets, pos, side="right")]  # end of the document holding pos
        keep = (pos + n <= doc_end) & (pos < start + CHUNK)  # inside one document; chunks overlap by n−1
        out.append(h[keep])
    return out


def build_index(shards: str | Path, out: str | Path, n: int = N) -> dict[str, int]:
    """Hash every n-gram of the shards under `shards` into `out/ngrams.u64` (+ header); return counts."""
    out = Path(out)
    tmp = out / ".buckets"
    tmp.mkdir(parents=True, exist_ok=True)
    total = tokens = vocab = 0
    with contextlib.ExitStack() as stack:
        files = [stack.enter_context(open(tmp / f"{b:03d}.u64", "wb")) for b in range(1 << BUCKET_BITS)]
        for path in list_shards(shards):
            shard = TokenShard(path)
            vocab = max(vocab, shard.vocab_size)
            tokens += shard.n_tokens
            for h in _shard_hashes(shard, n):
                total += len(h)
                bucket = (h >> np.uint64(64 - BUCKET_BITS)).astype(np.intp)
                order = np.argsort(bucket, kind="stable")
                bounds = np.searchsorted(bucket[order], np.arange((1 << BUCKET_BITS) + 1))
                for b in np.flatnonzero(np.diff(bounds)):
                    files[b].write(h[order[bounds[b] : bounds[b + 1]]].tobytes())
    unique = _merge_buckets(tmp, out / "ngrams.u64.tmp", n)
    (out / "ngrams.u64.tmp").replace(out / "ngrams.u64")
    shutil.rmtree(tmp)
    (out / "index.json").write_text(
        json.dumps({"n": n, "count": unique, "vocab_size": vocab, "tokens": tokens, "ngrams": total}) + "\n"
    )
    return {"tokens": tokens, "ngrams": total, "unique_ngrams": unique}


def _merge_buckets(tmp: Path, dest: Path, n: int) -> int:
    count = 0
    with open(dest, "wb") as f:
        f.write(b"\0" * HEADER.size)
        for b in range(1 << BUCKET_BITS):
            arr = np.unique(np.fromfile(tmp / f"{b:03d}.u64", dtype=np.uint64))  # sorted, one bucket in RAM
            f.write(arr.tobytes())
            count += len(arr)
        f.seek(0)
        f.write(HEADER.pack(MAGIC, VERSION, n, count, 0))  # the n it was built with, read back by NgramIndex
    return count


class NgramIndex:
    """A memory-mapped sorted array of n-gram hashes; `contains` is a vectorized binary search."""

    def __init__(self, folder: str | Path) -> None:
        path = Path(folder) / "ngrams.u64"
        if not path.is_file():
            raise FileNotFoundError(f"{path}: no n-gram index (build one with herd.eval.contamination.build_index)")
        with open(path, "rb") as f:
            magic, version, n, count, _ = HEADER.unpack(f.read(HEADER.size))
        if magic != MAGIC or version != VERSION:
            raise ValueError(f"{path}: not a herd n-gram index (magic {magic!r}, version {version})")
        if path.stat().st_size != HEADER.size + 8 * count:
            raise ValueError(f"{path}: truncated index ({path.stat().st_size} bytes for {count} hashes)")
        self.n, self.count = n, count
        self.hashes = np.memmap(path, dtype=np.uint64, mode="r", offset=HEADER.size, shape=(count,))

    def contains(self, h: np.ndarray) -> np.ndarray:
        if not self.count or not len(h):
            return np.zeros(len(h), dtype=bool)
        i = np.searchsorted(self.hashes, h)
        return self.hashes[np.minimum(i, self.count - 1)] == h

    def coverage(self, tokens: Sequence[int]) -> float:
        """Fraction of `tokens` inside at least one n-gram present in the index."""
        if len(tokens) < self.n:
            return 0.0
        found = self.contains(ngram_hashes(np.asarray(tokens), self.n))
        # Token i is covered when any window starting in [i−n+1, i] was found: a running window count.
        marks = np.zeros(len(tokens) + 1, dtype=np.int64)
        starts = np.flatnonzero(found)
        np.add.at(marks, starts, 1)
        np.add.at(marks, starts + self.n, -1)
        return float((np.cumsum(marks)[:-1] > 0).mean())


# ------------------------------------------------------------------------------------------------ threshold


@dataclass
class ContaminationRow:
    task: str
    n: int
    threshold: float  # the chosen T; when no T gave a significant gain, the reporting default
    contaminated_pct: float
    score_full: float
    score_clean: float
    gain: float
    z: float
    significant: bool


THRESHOLDS = tuple(round(t, 2) for t in np.arange(0.05, 1.0001, 0.05))


def choose_threshold(
    task: str,
    coverage: Sequence[float],
    correct: Sequence[float],
    thresholds: Sequence[float] = THRESHOLDS,
    min_clean: int = 10,
    report_at: float = 0.8,
) -> ContaminationRow:
    """The T maximizing score(full) − score(clean) among significant splits; without one, the split at
    `report_at` is reported with significant=False (the paper's "no estimate" cases)."""
    cov, ok = np.asarray(coverage, dtype=float), np.asarray(correct, dtype=float)
    full = float(ok.mean()) if len(ok) else float("nan")
    best: ContaminationRow | None = None
    for t in thresholds:
        row = _split(task, cov, ok, float(t), full)
        if row.significant and (cov < t).sum() >= min_clean and (best is None or row.gain > best.gain):
            best = row
    return best or _split(task, cov, ok, report_at, full)


def _split(task: str, cov: np.ndarray, ok: np.ndarray, t: float, full: float) -> ContaminationRow:
    dirty = cov >= t
    n_d, n_c = int(dirty.sum()), int((~dirty).sum())
    clean = float(ok[~dirty].mean()) if n_c else float("nan")
    z = _z(ok[dirty], ok[~dirty])
    return ContaminationRow(
        task=task,
        n=len(ok),
        threshold=t,
        contaminated_pct=100.0 * n_d / max(len(ok), 1),
        score_full=full,
        score_clean=clean,
        gain=full - clean if n_c else float("nan"),
        z=z,
        significant=n_d > 0 and n_c > 0 and z > 1.96,
    )


def _z(a: np.ndarray, b: np.ndarray) -> float:
    """Two-proportion z statistic, contaminated minus clean (0 when undefined)."""
    if not len(a) or not len(b):
        return 0.0
    p = (a.sum() + b.sum()) / (len(a) + len(b))
    se = math.sqrt(p * (1 - p) * (1 / len(a) + 1 / len(b)))
    return float((a.mean() - b.mean()) / se) if se > 0 else 0.0


def analyze(
    task: str,
    texts: Sequence[str],
    correct: Sequence[float],
    index: NgramIndex,
    encode: Callable[[str], Sequence[int]],
) -> tuple[ContaminationRow, list[float]]:
    """Coverage of each example text (tokenized by `encode`, the shards' tokenizer) and the chosen split."""
    coverage = [index.coverage(encode(t)) for t in texts]
    return choose_threshold(task, coverage, correct), coverage


def table(rows: Sequence[ContaminationRow]) -> str:
    """The paper-style Markdown table (% contaminated, estimated gain)."""
    lines = [
        "| benchmark | N | T | % contaminated | full | clean | est. gain |",
        "|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        t = f"{r.threshold:.2f}" + ("" if r.significant else "*")
        gain = f"{100 * r.gain:+.1f}" if r.significant else f"n/s ({100 * r.gain:+.1f})"
        clean = "–" if math.isnan(r.score_clean) else f"{100 * r.score_clean:.1f}"
        lines.append(
            f"| {r.task} | {r.n} | {t} | {r.contaminated_pct:.1f} | {100 * r.score_full:.1f} | {clean} | {gain} |"
        )
    lines.append("\n*: no threshold gave a significant gain; % contaminated shown at the default T.")
    return "\n".join(lines)


def rows_to_json(rows: Sequence[ContaminationRow]) -> list[dict]:
    return [asdict(r) for r in rows]
