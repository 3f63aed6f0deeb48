"""`herd tokenizer train`: documents → tokenizer.model (+ tokenizer.json) + MANIFEST.json [P §3.2].

The stage reads documents with herd.data.documents (a curation stage folder: its kept documents only)
and hands their texts to herd.tokenizer, which trains from texts and never reads files itself.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

from herd.core.manifest import Manifest
from herd.core.stage import Stage, run_stage
from herd.data.documents import iter_texts
from herd.tokenizer import train_tokenizer


@dataclass
class TokenizerTrainConfig:
    """`herd tokenizer train`: files in -> tokenizer.model (+ tokenizer.json) + MANIFEST.json."""

    inputs: list[str] = field(default_factory=list)  # curation stage folders, text/JSONL/Parquet files or folders
    out: str = "runs/tokenizer"
    vocab_size: int = 8192  # all ids, the model's vocab_size: ranks + 256 specials (Llama 3: 128,256)
    min_frequency: int = 2
    text_key: str = "text"
    max_chars: int = 0  # read at most this many characters (0: all)
    base: str = ""  # extension: "llama3" or a ranks file/folder to extend instead of training anew
    extra_merges: int = 0  # extension: tokens to add on top of `base` (paper: 28K on 100K)


class TokenizerStage(Stage):
    """Train (or extend) a byte-level BPE on the documents of `config.inputs`."""

    name: ClassVar[str] = "tokenizer"
    version: ClassVar[int] = 1

    def __init__(self, config: TokenizerTrainConfig) -> None:
        if not config.inputs:
            raise ValueError("tokenizer train: no inputs (set inputs=['corpus/'] in the config or as an override)")
        if config.base and config.extra_merges <= 0:
            raise ValueError("tokenizer train: extending a base tokenizer needs extra_merges > 0")
        self.config = config

    @property
    def out(self) -> Path:
        return Path(self.config.out)

    def inputs(self) -> Sequence[Path]:
        base = self.config.base
        return [Path(p) for p in [*self.config.inputs, *([base] if base and base != "llama3" else [])]]

    def run(self, workdir: Path) -> Mapping[str, Any]:
        cfg = self.config
        texts = list(iter_texts(cfg.inputs, text_key=cfg.text_key, max_chars=cfg.max_chars))
        tok = train_tokenizer(texts, cfg.vocab_size, cfg.min_frequency, cfg.base, cfg.extra_merges)
        tok.save(workdir / "tokenizer.model")
        tok.to_hf().save(str(workdir / "tokenizer.json"))
        chars = sum(map(len, texts))
        tokens = sum(map(len, tok.encode_batch(texts)))
        return {"docs": len(texts), "chars": chars, "n_ranks": tok.n_ranks, "vocab_size": tok.vocab_size,
                "chars_per_token": round(chars / max(tokens, 1), 4)}  # fmt: skip


def train_stage(cfg: TokenizerTrainConfig) -> Manifest:
    """`run_stage(TokenizerStage(cfg))`: skipped when its folder matches inputs, config and code version."""
    return run_stage(TokenizerStage(cfg))
