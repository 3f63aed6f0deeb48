"""A byte-level toy tokenizer and tiny random herd model, for fast exact tests of the scorer and harness."""

from __future__ import annotations

from collections.abc import Sequence

from helpers import tiny_config

from herd.eval.scorer import HerdScorer
from herd.model import build_model


class ByteTokenizer:
    """ids 0..255 are bytes; 256 is BOS, 257 EOS (the tiny model's vocabulary has 300)."""

    bos_id, eos_id = 256, 257
    stop_ids = frozenset({257})
    vocab_size = 300

    def encode(self, text: str, bos: bool = False, eos: bool = False) -> list[int]:
        return [self.bos_id] * bos + list(text.encode("utf-8")) + [self.eos_id] * eos

    def decode(self, ids: Sequence[int]) -> str:
        return bytes(i for i in ids if i < 256).decode("utf-8", "replace")


def toy_scorer(batch_tokens: int = 4096, seed: int = 0) -> HerdScorer:
    model = build_model(tiny_config(), seed=seed).eval()
    return HerdScorer(model, ByteTokenizer(), add_bos=True, batch_tokens=batch_tokens)
