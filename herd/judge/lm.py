"""A chat model as judge, shared by curation and post-training: labels from the probabilities it gives
each answer digit, intention tags from a short generation."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import torch

from herd.judge.dialog import parse_tags, render, turns
from herd.judge.prompts import (
    CODE_QUALITY_PROMPT,
    DIFFICULTY_PROMPT,
    DOCUMENT_PROMPTS,
    INTENT_PROMPT,
    INTENT_SHOTS,
    JUDGE_CHARS,
    QUALITY_PROMPT,
)
from herd.judge.scoring import digit_probs, expected_digit, rank_bins
from herd.model import generate, load_model
from herd.tokenizer import load_tokenizer
from herd.tokenizer.chat import ChatFormatLike, load_chat_format

Row = Mapping[str, Any]  # a dialog row: {"messages": [...], ...}


class LMJudge:
    """One chat model asking one-digit questions about documents (curation's `DocumentJudge`) and dialogs
    (post-training's pruning `Judge`).

    A small judge answers almost every prompt with the same digit; with `rank_labels` (the default) labels
    are equal-sized bins of its expected digit instead of the most likely digit.
    """

    def __init__(
        self,
        model: torch.nn.Module,
        chat: ChatFormatLike,
        chars: int = JUDGE_CHARS,
        rank_labels: bool = True,
        intent_max_new_tokens: int = 32,
        max_intentions: int = 10,
        batch_size: int = 8,
    ) -> None:
        self.model, self.chat, self.tok = model.eval(), chat, chat.tokenizer
        self.chars, self.rank_labels = chars, rank_labels
        self.intent_max_new_tokens, self.max_intentions, self.batch_size = (
            intent_max_new_tokens,
            max_intentions,
            batch_size,
        )

    # ------------------------------------------------------------ documents (curation [P §3.1.1])

    def label(self, kind: str, texts: Sequence[str], n_labels: int) -> list[int]:
        """Labels 0..n_labels-1 for the start of each text, asked with DOCUMENT_PROMPTS[kind]."""
        if kind not in DOCUMENT_PROMPTS:
            raise ValueError(f"judge: no document prompt {kind!r}; kinds are {', '.join(DOCUMENT_PROMPTS)}")
        return self.scale([DOCUMENT_PROMPTS[kind].format(text=t[: self.chars]) for t in texts], n_labels)

    # ------------------------------------------------------------ dialogs (post-training [P §4.2.3])

    def quality(self, rows: Sequence[Row], code: Sequence[bool]) -> list[int]:
        """3-point quality for general dialogs, 2-point for code (`code[i]`)."""
        labels = [0] * len(rows)
        for is_code, template, n in ((False, QUALITY_PROMPT, 3), (True, CODE_QUALITY_PROMPT, 2)):
            idx = [i for i, c in enumerate(code) if bool(c) == is_code]
            for i, label in zip(idx, self._dialogs([rows[i] for i in idx], template, n)):
                labels[i] = label
        return labels

    def difficulty(self, rows: Sequence[Row]) -> list[int]:
        return self._dialogs(rows, DIFFICULTY_PROMPT, 3)

    def intentions(self, rows: Sequence[Row]) -> list[list[str]]:
        """Instag-style intention tags of each dialog's user turns."""
        prefix = self.tok.encode("- ")  # start the list: the judge continues it
        out: list[list[str]] = []
        for i in range(0, len(rows), self.batch_size):
            prompts = [self._intent_prompt(r) + prefix for r in rows[i : i + self.batch_size]]
            gen = generate(self.model, prompts, self.intent_max_new_tokens, stop_ids=sorted(self.tok.stop_ids))
            out += [parse_tags("- " + self.tok.decode(g), self.max_intentions) for g in gen]
        return out

    # ------------------------------------------------------------ scoring

    def scale(self, prompts: Sequence[str], n: int) -> list[int]:
        """Labels 0..n-1: by rank of the expected digit (rank_labels) or the most likely digit."""
        probs = [digit_probs(self.model, self.chat, p, n) for p in prompts]
        if self.rank_labels:
            return rank_bins([expected_digit(p) for p in probs], n)
        return [max(range(n), key=p.__getitem__) for p in probs]  # the first of equal maxima

    def _dialogs(self, rows: Sequence[Row], template: str, n: int) -> list[int]:
        return self.scale([template.format(dialog=render(r, self.chars)) for r in rows], n)

    def _intent_prompt(self, row: Row) -> list[int]:
        msgs = []
        for request, tags in INTENT_SHOTS:
            msgs += [{"role": "user", "content": INTENT_PROMPT.format(request=request)}]
            msgs += [{"role": "assistant", "content": tags}]
        request = "\n".join(turns(row, "user"))[: self.chars]
        return self.chat.encode_prompt([*msgs, {"role": "user", "content": INTENT_PROMPT.format(request=request)}])


def load_judge(name: str | Path, **settings: Any) -> LMJudge:
    """The judge model `name` (a bundled name such as "smollm2", a herd/HF folder or a .gguf) with its own
    tokenizer and chat format; `settings` are LMJudge's."""
    return LMJudge(load_model(name), load_chat_format(load_tokenizer(name)), **settings)
