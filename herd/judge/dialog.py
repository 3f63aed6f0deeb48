"""Dialog rows as text: what the judge is shown and what pruning embeds and checks.

A row is `{"messages": [{"role": ..., "content": ...}, ...], ...}` (herd's SFT format).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any


def turns(row: Mapping[str, Any], role: str) -> list[str]:
    return [m["content"] for m in row["messages"] if m["role"] == role]


def render(row: Mapping[str, Any], max_chars: int = 0) -> str:
    """'User: …\\nAssistant: …'; with `max_chars`, the last turns that fit (the reply being judged)."""
    lines = [f"{m['role'].capitalize()}: {m['content']}" for m in row["messages"]]
    if not max_chars:
        return "\n".join(lines)
    out: list[str] = []
    budget = max_chars
    for line in reversed(lines):
        if out and len(line) > budget:
            break
        out.insert(0, line[:budget])
        budget -= len(out[0]) + 1
    return "\n".join(out)


_LIST_MARK = re.compile(r"^\s*(?:[-*•]|\d+[.)])\s*")


def parse_tags(text: str, limit: int = 10) -> list[str]:
    """Distinct tags from a judge's list ('- tag' or '1. tag' lines); tags without a word are noise."""
    tags: list[str] = []
    for part in re.split(r"\n|\s(?=\d+[.)]\s)", text):
        tag = _LIST_MARK.sub("", part).strip(" :;,.").lower()
        if re.search(r"[a-z]{3}", tag) and tag not in tags:
            tags.append(tag)
    return tags[:limit]
