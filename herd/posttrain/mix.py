"""The SFT mix by category [P §4.2.2, Table 7]: each dialog's category, the realised shares, and
resampling toward a target mix.

The paper tunes the mix "across a range of axes" and reports the shares it ended with (Table 7); herd takes
those shares as the default target. Resampling keeps the number of training dialogs and draws each
category's share of it from that category's dialogs: without repetition when it has enough, otherwise
every dialog once plus repeats (at most `max_repeat` copies of one dialog, so a category with a handful of
dialogs cannot dominate by repetition; the shortfall is reported). Categories absent from the data are
left out and the remaining shares renormalised: a run without long-context data does not starve the rest.
"""

from __future__ import annotations

import random
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, TypeVar

# Share of SFT examples per category, percent [P §4.2.2, Table 7]. The paper's "reasoning and tools" row
# covers math reasoning and tool use; "exam-like" covers task-style QA such as natural instructions.
TABLE7_SHARES = {
    "general": 52.66,
    "code": 14.89,
    "multilingual": 3.01,
    "exam": 8.14,
    "reasoning_tools": 21.19,
    "long_context": 0.11,
}

# The bundle's sources (herd.posttrain.bundle) by Table 7 category.
SOURCE_CATEGORY = {
    "chatterbot": "general",
    "hhh": "general",
    "arithmetic": "reasoning_tools",
    "code": "code",
    "natural_instructions": "exam",
}

T = TypeVar("T")


@dataclass
class MixConfig:
    target: dict[str, float] = field(default_factory=lambda: dict(TABLE7_SHARES))  # percent or any weights
    resample: bool = True  # False: train on the data as gathered and only report its shares
    max_repeat: int = 4  # at most this many copies of one dialog when a category is short
    seed: int = 0


def category_of(row: Mapping[str, Any]) -> str:
    """A dialog's category: its own "category" field, else its (prompt's) source's, else "general"."""
    if row.get("category"):
        return str(row["category"])
    return SOURCE_CATEGORY.get(str(row.get("source", "")), "general")


def shares(categories: Sequence[str]) -> dict[str, float]:
    """Percent of items per category."""
    counts = Counter(categories)
    return {c: round(100 * n / len(categories), 2) for c, n in sorted(counts.items())} if categories else {}


def resample(items: Sequence[T], categories: Sequence[str], cfg: MixConfig) -> tuple[list[T], dict[str, Any]]:
    """`items` redrawn toward `cfg.target` (same total); returns them and a report of target vs realised."""
    by_cat: dict[str, list[T]] = {}
    for item, cat in zip(items, categories, strict=True):
        by_cat.setdefault(cat, []).append(item)
    report: dict[str, Any] = {"target": dict(cfg.target), "before": shares(list(categories))}
    unknown = sorted(set(by_cat) - set(cfg.target))
    if not cfg.resample or not items:
        return list(items), {**report, "realised": report["before"], "resampled": False}
    present = {c: w for c, w in cfg.target.items() if c in by_cat and w > 0}
    total_w = sum(present.values())
    if unknown or not present:
        raise ValueError(f"sft mix: categories {unknown or sorted(by_cat)} have no target share; set mix.target")
    rng = random.Random(cfg.seed)
    out: list[T] = []
    short: dict[str, int] = {}
    for cat, w in present.items():
        want, pool = round(len(items) * w / total_w), by_cat[cat]
        got = _draw(pool, min(want, len(pool) * cfg.max_repeat), rng)
        if len(got) < want:
            short[cat] = want - len(got)
        out += got
    rng.shuffle(out)
    realised = _realised(out, items, categories)
    return out, {**report, "realised": realised, "resampled": True, "dialogs": len(out), "short": short}


def _draw(pool: Sequence[T], n: int, rng: random.Random) -> list[T]:
    """n items: a shuffled pass over the pool, repeated (each pass reshuffled) until n are drawn."""
    out: list[T] = []
    while len(out) < n:
        order = list(pool)
        rng.shuffle(order)
        out += order[: n - len(out)]
    return out


def _realised(out: Sequence[T], items: Sequence[T], categories: Sequence[str]) -> dict[str, float]:
    cat_of = {id(item): cat for item, cat in zip(items, categories)}
    return shares([cat_of[id(item)] for item in out])
