"""Frozen LM embeddings of words in context, the input of the TN and prosody models [P §8 speech generation].

The paper feeds both speech-generation models layer-16 embeddings of Llama 3 8B (the middle of 32 layers);
we take the same relative depth of whatever herd LM is loaded (layer 15 of SmolLM2-135M's 30) [D].

Words are encoded one by one (" " + word) and the ids concatenated, so the ids of a prefix of words never
depend on the words after it; with a causal LM the state at a word's last sub-token then sees exactly the
words up to it. That makes streaming exact: the features of word i with lookahead k are final as soon as
word i + k has arrived.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
from torch import Tensor

from herd.model import Transformer
from herd.model.layers import AttentionKernel, rope_cos_sin


def paper_layer(n_layers: int) -> int:
    """The paper's relative depth: layer 16 of Llama 3 8B's 32 [P §8] → round(n_layers / 2)."""
    return max(1, round(n_layers * 16 / 32))


def word_ids(tok: Any, words: Sequence[str]) -> tuple[list[int], list[int]]:
    """Token ids of the words (each encoded as " " + word, a BOS first if the tokenizer has one) and, per word,
    the index of its last sub-token."""
    bos = getattr(tok, "bos_id", None)
    ids: list[int] = [bos] if bos is not None else []
    ends: list[int] = []
    for w in words:
        ids.extend(tok.encode(" " + w, bos=False, eos=False) or [])
        ends.append(len(ids) - 1)
    return ids, ends


@torch.no_grad()
def hidden_at(model: Transformer, ids: Tensor, layer: int) -> Tensor:
    """(B, T) ids → (B, T, dim) residual stream after `layer` blocks, causal (right padding is harmless)."""
    h = model.tok_embeddings(ids)
    cos, sin = rope_cos_sin(model.inv_freq, torch.arange(ids.shape[1]))
    attention = AttentionKernel()
    for i in range(layer):
        h = model.layers[str(i)](h, cos, sin, attention)
    return h


@torch.no_grad()
def word_states(
    model: Transformer, tok: Any, sentences: Sequence[Sequence[str]], layer: int, batch_size: int = 16
) -> list[Tensor]:
    """Per sentence, (n_words, dim) float32 states at each word's last sub-token after `layer` blocks."""
    encoded = [word_ids(tok, s) for s in sentences]
    out: list[Tensor | None] = [None] * len(sentences)
    order = sorted(range(len(sentences)), key=lambda i: len(encoded[i][0]))  # similar lengths share a batch
    for b in range(0, len(order), batch_size):
        idx = order[b : b + batch_size]
        width = max(len(encoded[i][0]) for i in idx)
        ids = torch.zeros(len(idx), width, dtype=torch.long)
        for r, i in enumerate(idx):
            ids[r, : len(encoded[i][0])] = torch.tensor(encoded[i][0])
        h = hidden_at(model, ids, layer).float()  # (B, T, dim)
        for r, i in enumerate(idx):
            out[i] = h[r, encoded[i][1]].clone()  # (n_words, dim)
    return [t for t in out if t is not None]


def load_frozen_lm(name: str) -> tuple[Transformer, Any]:
    """A herd LM (bundled name such as "smollm2", a model folder, or a preset) and its tokenizer, frozen."""
    from herd.model import load_model
    from herd.tokenizer import load_tokenizer

    model = load_model(name).eval().requires_grad_(False)
    return model, load_tokenizer(name)
