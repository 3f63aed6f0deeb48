"""The one interface every herd tokenizer offers (tiktoken Llama 3, HF tokenizer.json, GGUF vocab)."""

from __future__ import annotations

from collections.abc import Sequence, Set
from typing import Literal, Protocol, runtime_checkable

AllowedSpecial = Literal["all"] | Set[str]


@runtime_checkable
class TokenizerLike(Protocol):
    """encode/decode plus the ids generation and chat formats need.

    `encode` reads special-token text (e.g. "<|eot_id|>") as ordinary text unless the caller passes
    `allowed_special="all"` or a set of names: text from users must never inject control tokens.
    """

    bos_id: int | None
    eos_id: int | None
    stop_ids: set[int]  # generation ends on any of these
    vocab_size: int  # ids are 0 .. vocab_size-1 (the model's embedding size must cover it)
    special_ids: dict[str, int]  # special token text -> id

    def encode(
        self, text: str, bos: bool = False, eos: bool = False, allowed_special: AllowedSpecial = frozenset()
    ) -> list[int]: ...

    def decode(self, ids: Sequence[int]) -> str: ...
