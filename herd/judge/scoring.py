"""Digit-probability scoring: curation's model-based quality classifiers [P §3.1.1] and post-training's
quality and difficulty scores [P §4.2.3] both ask a chat model a question and read the probability it
gives each answer digit.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

from herd.tokenizer.chat import ChatFormatLike


@torch.no_grad()
def digit_probs(model: torch.nn.Module, chat: ChatFormatLike, prompt: str, n: int) -> list[float]:
    """P(next token = '0' … str(n-1)) after `prompt` as a user turn, renormalized over the n digits."""
    tok = chat.tokenizer
    digits = [tok.encode(str(i))[-1] for i in range(n)]
    ids = chat.encode_prompt([{"role": "user", "content": prompt}])
    with torch.autocast("cpu", dtype=torch.bfloat16):  # ~2x on CPUs with bf16 units
        logits = model(torch.tensor([ids]))[0, -1].float()
    return torch.softmax(logits[digits], dim=0).tolist()


def expected_digit(probs: Sequence[float]) -> float:
    return float(sum(i * p for i, p in enumerate(probs)))


def rank_bins(expected: Sequence[float], n_labels: int) -> list[int]:
    """Labels 0..n_labels-1 in equal-sized bins of the expected score (ties broken by position).

    A small judge answers almost every prompt with the same digit; its *relative* preference still
    orders the sample, so labels come from rank, not from the most likely digit."""
    order = sorted(range(len(expected)), key=lambda i: (expected[i], i))
    labels = [0] * len(expected)
    for rank, i in enumerate(order):
        labels[i] = min(n_labels - 1, rank * n_labels // max(1, len(expected)))
    return labels
