"""Post-training data formats: JSONL dialogs and JSONL preference rows, checked line by line.

Dialog row:      {"messages": [{"role": "user", "content": "..."}, {"role": "assistant", ...}], "source": "..."}
Preference row:  {"prompt": [messages ending with a user turn], "chosen": "...", "rejected": "...",
                  "edited": "..." (optional), "strength": "better", "source": "..."}

The ranking is edited > chosen > rejected [P §4.2.1]. Strength uses the paper's four levels; reward
modelling and DPO keep only "significantly_better" and "better" by default [P §4.2.1].
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from herd.core.io import atomic_write_text, iter_jsonl

ROLES = ("system", "user", "assistant", "ipython", "tool")
STRENGTHS = ("significantly_better", "better", "slightly_better", "marginally_better")
KEEP_STRENGTHS = ("significantly_better", "better")


class DataError(ValueError):
    """A bad row: the message names file:line and the field."""


@dataclass
class Dialog:
    messages: list[dict[str, str]]
    source: str = ""
    category: str = ""  # the SFT mix category [P §4.2.2, Table 7]; "" = from the source (herd.posttrain.mix)


@dataclass
class Preference:
    prompt: list[dict[str, str]]
    responses: list[str]  # best first: [edited,] chosen, rejected
    strength: str = "better"
    source: str = ""
    meta: dict[str, Any] = field(default_factory=dict)

    @property
    def chosen(self) -> str:
        return self.responses[-2]

    @property
    def rejected(self) -> str:
        return self.responses[-1]


def _rows(path: Path) -> Iterable[tuple[int, dict[str, Any]]]:
    return iter_jsonl(path, error=DataError)


def check_messages(messages: Any, where: str, key: str = "messages") -> list[dict[str, str]]:
    """A list of {role, content} with known roles and string content; raises DataError naming the field."""
    if not isinstance(messages, list) or not messages:
        raise DataError(f"{where}: field '{key}': expected a non-empty list of messages")
    for i, m in enumerate(messages):
        if not isinstance(m, Mapping):
            raise DataError(f"{where}: field '{key}[{i}]': expected an object with role and content")
        if m.get("role") not in ROLES:
            raise DataError(f"{where}: field '{key}[{i}].role': {m.get('role')!r} is not one of {', '.join(ROLES)}")
        if not isinstance(m.get("content"), str):
            raise DataError(f"{where}: field '{key}[{i}].content': expected a string")
    return [dict(m) for m in messages]


def parse_dialog(row: Mapping[str, Any], where: str) -> Dialog:
    messages = check_messages(row.get("messages"), where)
    if not any(m["role"] == "assistant" for m in messages):
        raise DataError(f"{where}: field 'messages': no assistant turn to train on")
    return Dialog(messages=messages, source=str(row.get("source", "")), category=str(row.get("category", "")))


def parse_preference(row: Mapping[str, Any], where: str) -> Preference:
    prompt = check_messages(row.get("prompt"), where, "prompt")
    if prompt[-1]["role"] != "user":
        raise DataError(f"{where}: field 'prompt': must end with a user turn, ends with {prompt[-1]['role']!r}")
    responses = []
    for key in ("edited", "chosen", "rejected"):
        value = row.get(key)
        if key == "edited" and value is None:
            continue
        if not isinstance(value, str) or not value.strip():
            raise DataError(f"{where}: field '{key}': expected a non-empty string")
        responses.append(value)
    if len(set(responses)) < len(responses):
        raise DataError(f"{where}: field 'rejected': identical to a better-ranked response")
    strength = row.get("strength", "better")
    if strength not in STRENGTHS:
        raise DataError(f"{where}: field 'strength': {strength!r} is not one of {', '.join(STRENGTHS)}")
    meta = {k: v for k, v in row.items() if k not in ("prompt", "edited", "chosen", "rejected", "strength", "source")}
    return Preference(prompt, responses, strength, str(row.get("source", "")), meta)


def read_dialogs(path: str | Path) -> list[Dialog]:
    path = Path(path)
    return [parse_dialog(row, f"{path}:{n}") for n, row in _rows(path)]


def read_preferences(path: str | Path, strengths: Sequence[str] | None = None) -> list[Preference]:
    """Rows of `path`, keeping only the given strength levels (None keeps all)."""
    path = Path(path)
    prefs = [parse_preference(row, f"{path}:{n}") for n, row in _rows(path)]
    return [p for p in prefs if strengths is None or p.strength in strengths]


def preference_row(p: Preference) -> dict[str, Any]:
    row: dict[str, Any] = {"prompt": p.prompt}
    if len(p.responses) == 3:
        row["edited"] = p.responses[0]
    row.update(chosen=p.chosen, rejected=p.rejected, strength=p.strength, source=p.source, **p.meta)
    return row


def write_jsonl(path: str | Path, rows: Iterable[Mapping[str, Any]]) -> Path:
    text = "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows)
    return atomic_write_text(Path(path), text)


def split_held_out(items: Sequence[Any], fraction: float, seed: int = 0) -> tuple[list[Any], list[Any]]:
    """(train, held_out): a seeded shuffle, so a rerun holds out the same rows."""
    import random

    order = list(range(len(items)))
    random.Random(seed).shuffle(order)
    n_held = max(1, round(len(items) * fraction)) if items and fraction > 0 else 0
    held = set(order[:n_held])
    return [x for i, x in enumerate(items) if i not in held], [x for i, x in enumerate(items) if i in held]
