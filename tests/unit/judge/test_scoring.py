"""The one-digit judge shared by curation and post-training pruning."""

import pytest
import torch

from herd.judge.scoring import digit_probs, expected_digit, rank_bins


def test_rank_bins_are_equal_sized_by_expected_score() -> None:
    assert rank_bins([0.9, 0.95, 0.91, 0.99], 2) == [0, 1, 0, 1]
    assert rank_bins([1.0, 1.1, 1.2, 1.3, 1.4, 1.5], 3) == [0, 0, 1, 1, 2, 2]
    assert rank_bins([0.9, 0.1, 0.5, 0.3, 0.7, 0.2], 3) == [2, 0, 1, 1, 2, 0]
    assert expected_digit([0.25, 0.25, 0.5]) == pytest.approx(1.25)


def test_digit_probs_read_the_next_token_over_the_digits() -> None:
    class Tok:
        def encode(self, s: str) -> list[int]:
            return [100, int(s)]  # a prefix token, then the digit's id

    class Chat:
        tokenizer = Tok()

        def encode_prompt(self, messages: list[dict]) -> list[int]:
            return [7, 8, 9]

    class Model(torch.nn.Module):
        def forward(self, tokens: torch.Tensor) -> torch.Tensor:
            logits = torch.full((1, tokens.shape[1], 16), -30.0)
            logits[0, -1, :3] = torch.tensor([0.0, 1.0, 2.0])
            return logits

    probs = digit_probs(Model(), Chat(), "Is this good?", 3)
    want = torch.softmax(torch.tensor([0.0, 1.0, 2.0]), 0)
    assert probs == pytest.approx(want.tolist(), abs=1e-6)
