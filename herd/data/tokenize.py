"""`herd tokenize`: documents → token shards per source and split, in parallel over files, with a manifest.

Documents are read by herd.data.documents (a curation stage folder: its kept documents only).
Output layout (read by herd.data.loader.split_sources):
    out/<source>/train/<file>-<chunk>.bin
    out/<source>/val/<file>-<chunk>.bin      held-out documents, chosen by a hash of their text
    out/tokenizer.model                      the tokenizer the ids come from (tokenizer.json for HF/GGUF)
    out/MANIFEST.json                        documents in = kept (train + val) + dropped (empty)
"""

from __future__ import annotations

import hashlib
import shutil
from collections import Counter
from collections.abc import Mapping, Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

from herd.core.logging import get_logger, progress
from herd.core.manifest import Manifest
from herd.core.stage import Stage, run_stage
from herd.data.documents import document_files, iter_documents
from herd.data.shards import write_shard
from herd.tokenizer import Tokenizer, load_tokenizer, tokenizer_file

log = get_logger(__name__)


@dataclass
class TokenizeConfig:
    tokenizer: str = "llama3"  # a name ("llama3") or a ranks file / folder herd can load
    # source name → files or folders (a curation stage folder: its kept documents)
    sources: dict[str, list[str]] = field(default_factory=dict)
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

    for doc in iter_documents(path, text_key=cfg.text_key):
        text = doc["text"]
        counts["in"] += 1
        if not text.strip():
            counts["dropped_empty"] += 1
            continue
        split = "val" if is_val(text, cfg.val_fraction) else "train"
        ids = tok.encode(text, bos=cfg.bos, eos=cfg.eos)
        buffers[split].append(ids)
        # Compression is measured here, where the text and its ids are both at hand; BOS/EOS are not text.
        counts["chars"] += len(text)
        counts["bytes"] += len(text.encode("utf-8", "replace"))
        counts["text_tokens"] += len(ids) - cfg.bos - cfg.eos
        counts[f"docs_{split}"] += 1
        if len(buffers[split]) >= cfg.docs_per_shard:
            flush(split)
    flush("train")
    flush("val")
    return counts


class TokenizeStage(Stage):
    """Documents of each source → token shards + the tokenizer they were made with (`tokenizer.model`)."""

    name: ClassVar[str] = "tokenize"
    version: ClassVar[int] = 3  # 2: writes the tokenizer it used beside the shards; 3: records compression

    def __init__(self, config: TokenizeConfig) -> None:
        if not config.sources:
            raise ValueError("tokenize: no sources configured (sources.<name> = [paths])")
        self.config = config

    @property
    def out(self) -> Path:
        return Path(self.config.out)

    def inputs(self) -> Sequence[Path]:
        tok = Path(self.config.tokenizer)
        # A tokenizer stage's folder is an input with its lineage; a name stands for its packaged file.
        tok = tok if tok.is_dir() else tokenizer_file(self.config.tokenizer)
        return [*(Path(p) for paths in self.config.sources.values() for p in paths), tok]

    def run(self, workdir: Path) -> Mapping[str, Any]:
        cfg = self.config
        tasks = [
            (source, i, str(f), str(workdir), cfg)
            for source, paths in sorted(cfg.sources.items())
            for i, f in enumerate(document_files(paths))
        ]
        totals: dict[str, Counter] = {}
        with progress() as bar, ProcessPoolExecutor(max(1, cfg.workers)) as pool:
            job = bar.add_task("tokenize", total=len(tasks))
            for task, counts in zip(tasks, pool.map(_tokenize_file, tasks)):
                totals.setdefault(task[0], Counter()).update(counts)
                bar.advance(job)
        write_tokenizer(cfg.tokenizer, workdir)
        return _funnel(totals)


def write_tokenizer(name_or_path: str, folder: Path) -> Path:
    """The tokenizer `name_or_path` resolves to, into `folder`: a ranks file is copied as it is to
    `tokenizer.model` (also Meta's, for "llama3"); an HF or GGUF vocabulary is saved as tokenizer.json."""
    tok = load_tokenizer(name_or_path)
    if isinstance(tok, Tokenizer):
        return Path(shutil.copyfile(tokenizer_file(name_or_path), folder / "tokenizer.model"))
    return tok.save(folder) / "tokenizer.json"


def tokenize(cfg: TokenizeConfig) -> Manifest:
    """`run_stage(TokenizeStage(cfg))`: skipped when its folder matches inputs, config and code version."""
    return run_stage(TokenizeStage(cfg))


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
