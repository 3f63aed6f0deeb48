"""Scripted models for the tool loop: a `generate(messages) -> message` that replays fixed replies."""

from __future__ import annotations

from pathlib import Path

import pytest

SLICE = Path(__file__).resolve().parents[2] / "data" / "corpus-slice" / "sotu"


class Scripted:
    """Replies in order; records the dialogs it was shown."""

    def __init__(self, replies: list[dict]) -> None:
        self.replies, self.seen = list(replies), []

    def __call__(self, messages: list[dict], on_token=None) -> dict:
        self.seen.append([dict(m) for m in messages])
        return dict(self.replies.pop(0))


@pytest.fixture(scope="session")
def sotu_slice() -> Path:
    return SLICE


@pytest.fixture
def scripted() -> type[Scripted]:
    return Scripted
