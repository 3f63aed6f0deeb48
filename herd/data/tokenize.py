"""`herd tokenize`: documents → token shards per source and split, in parallel over files, with a manifest.

Output layout (read by herd.data.loader.split_sources):
    out/<source>/train/<file>-<chunk>.bin
    out/<source>/val/<file>-<chunk>.bin      held-out documents, chosen by a hash of their text
    out/MANIFEST.json                        documents in = kept (train + val) + dropped (empty)
"""

from __future__ import annotations

import hashlib
from collections import Counter
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

from herd.core.logging import get_logger, progress
from herd.core.manifest import Manifest
from herd.core.stage import run_fn
from herd.data.shards import write_shard
from herd.tokenizer import load_tokenizer
from herd.tokenizer.corpus import iter_documents, iter_files

log = get_logger(__name__)


@dataclass
class TokenizeConfig:
    tokenizer: str = "llama3"  # a name ("llama3") or a ranks file / folder herd can load
    sources: dict[str, list[str]] = field(default_factory=dict)  # source name → files or folders
    out: str = "runs/tokens"
    text_key: str = "text"
    val_fraction: float = 0.01  # share of documents held out (by text hash, so stable across reruns)
    bos: bool = True
    eos: bool = True
    docs_per_shard: int = 50_000
    workers: int = 2


def is_val(text: str, fraction: float) -> bool:
    """Deterministic held-out choice: the same document is held out on every run and machine."""
    h = int.from_bytes(hashlib.blake2b(text.encode("utf-8", "surrogatepass"), digest_size=8).digest(), "little")
    return h / 2**64 < fraction


def _tokenize_file(task: tuple[str, int, str, str, TokenizeConfig]) -> Counter:
    source, index, path, out, cfg = task
    tok = load_tokenizer(cfg.tokenizer)
    counts: Counter = Counter()
    buffers: dict[str, list[list[int]]] = {"train": [], "val": []}
    chunks = Counter()

    def flush(split: str) -> None:
        if buffers[split]:
            dest = Path(out) / source / split / f"{index:05d}-{chunks[split]:04d}.bin"
            dest.parent.mkdir(parents=True, exist_ok=True)
            n_tokens, _ = write_shard(dest, buffers[split], tok.vocab_size)
            counts[f"tokens_{split}"] += n_tokens
            chunks[split] += 1
            buffers[split] = []

    for doc in iter_documents([path], text_key=cfg.text_key):
        counts["in"] += 1
        if not doc.text.strip():
            counts["dropped_empty"] += 1
            continue
        split = "val" if is_val(doc.text, cfg.val_fraction) else "train"
        ids = tok.encode(doc.text, bos=cfg.bos, eos=cfg.eos)
        buffers[split].append(ids)
        counts[f"docs_{split}"] += 1
        # Compression is measured here, where the text and its ids are both at hand; BOS/EOS are not text.
        counts["chars"] += len(doc.text)
        counts["bytes"] += len(doc.text.encode("utf-8", "replace"))
        counts["text_tokens"] += len(ids) - cfg.bos - cfg.eos
        if len(buffers[split]) >= cfg.docs_per_shard:
            flush(split)
    flush("train")
    flush("val")
    return counts


def tokenize(cfg: TokenizeConfig) -> Manifest:
    if not cfg.sources:
        raise ValueError("tokenize: no sources configured (sources.<name> = [paths])")
    inputs = [p for paths in cfg.sources.values() for p in paths]

    def stage(tmp: Path) -> dict:
        tasks = [
            (source, i, str(f), str(tmp), cfg)
            for source, paths in sorted(cfg.sources.items())
            for i, f in enumerate(iter_files(paths))
        ]
        totals: dict[str, Counter] = {}
        with progress() as bar, ProcessPoolExecutor(max(1, cfg.workers)) as pool:
            job = bar.add_task("tokenize", total=len(tasks))
            for task, counts in zip(tasks, pool.map(_tokenize_file, tasks)):
                totals.setdefault(task[0], Counter()).update(counts)
                bar.advance(job)
        return _funnel(totals)

    return run_fn("tokenize", inputs, cfg, cfg.out, stage, version=2)  # 2: records compression


def _funnel(per_source: dict[str, Counter]) -> dict:
    total = sum(per_source.values(), Counter())
    return {
        "in": total["in"],
        "kept": total["docs_train"] + total["docs_val"],
        "dropped": {"empty": total["dropped_empty"]},
        "tokens": {"train": total["tokens_train"], "val": total["tokens_val"]},
        "compression": compression(total),
        "sources": {
            name: {"docs": c["docs_train"] + c["docs_val"], "tokens": c["tokens_train"] + c["tokens_val"]}
            | compression(c)
            for name, c in sorted(per_source.items())
        },
    }


def compression(c: Counter) -> dict[str, float]:
    """Characters and UTF-8 bytes of text per token, over every document (BOS/EOS excluded); the paper
    reports 3.94 chars/token for Llama 3's tokenizer on English [P §3.2]."""
    n = c["text_tokens"]
    return {"chars_per_token": round(c["chars"] / n, 3), "bytes_per_token": round(c["bytes"] / n, 3)} if n else {}
