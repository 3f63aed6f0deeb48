"""LMJudge: the prompts it asks, labels by rank or by the likeliest digit, for documents and dialogs."""

from __future__ import annotations

import torch

from herd.judge import LMJudge
from herd.judge.prompts import DOCUMENT_PROMPTS, QUALITY_PROMPT


class Tok:
    stop_ids = frozenset({0})

    def encode(self, s: str) -> list[int]:
        return [int(s)] if s.isdigit() else [len(s)]


class Chat:
    """Encodes a prompt to one id: the index of the prompt in `seen`."""

    tokenizer = Tok()

    def __init__(self) -> None:
        self.seen: list[str] = []

    def encode_prompt(self, messages: list[dict]) -> list[int]:
        self.seen.append(messages[-1]["content"])
        return [10 + len(self.seen) - 1]


class Model(torch.nn.Module):
    """Next-token logits over digits 0..2 from a fixed table, one row per prompt id."""

    def __init__(self, table: list[list[float]]) -> None:
        super().__init__()
        self.table = table

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        logits = torch.full((1, tokens.shape[1], 64), -30.0)
        logits[0, -1, :3] = torch.tensor(self.table[int(tokens[0, -1]) - 10])
        return logits


def test_document_labels_are_rank_bins_of_the_expected_digit() -> None:
    chat = Chat()
    # expected digits rise with the row: ranks 0..3 -> labels 0, 0, 1, 1 on a 2-point scale
    judge = LMJudge(Model([[3, 0, 0], [2, 1, 0], [1, 2, 0], [0, 3, 0]]), chat, chars=5)
    assert judge.label("code", ["abcdefgh", "b", "c", "d"], 2) == [0, 0, 1, 1]
    assert chat.seen[0] == DOCUMENT_PROMPTS["code"].format(text="abcde")  # the first `chars` characters


def test_dialog_quality_without_rank_labels_takes_the_likeliest_digit() -> None:
    chat = Chat()
    judge = LMJudge(Model([[0, 0, 5], [5, 0, 0], [0, 5, 0]]), chat, rank_labels=False)
    turns = [[{"role": "user", "content": f"q{i}"}, {"role": "assistant", "content": "a"}] for i in range(3)]
    rows = [{"messages": t} for t in turns]
    # general dialogs are asked first (3-point), then code (2-point)
    assert judge.quality(rows, [False, True, False]) == [2, 1, 0]
    assert chat.seen[0] == QUALITY_PROMPT.format(dialog="User: q0\nAssistant: a")
