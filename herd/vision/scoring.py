"""Held-out question sampling, baselines and accuracy summaries with 95% intervals, shared by the image
recipe (`herd.vision.train`) and video QA (`herd.vision.video_qa`)."""

from __future__ import annotations

import math
import random
from typing import Any


def heldout_questions(rows: list[dict[str, Any]], limit: int, seed: int) -> list[tuple[str, str, str, str]]:
    """(image id, kind, question, answer), a seeded sample of at most `limit`."""
    qs = [(r["id"], r["kind"], q["question"], q["answer"]) for r in rows for q in r["qa"]]
    random.Random(seed).shuffle(qs)
    return qs[:limit]


def majority_baseline(train_rows: list[dict[str, Any]], questions) -> list[int]:
    """The most frequent training answer per question (an oracle of the answer prior, blind to the image)."""
    from collections import Counter

    by_q: dict[str, Counter] = {}
    for r in train_rows:
        for q in r["qa"]:
            by_q.setdefault(q["question"], Counter())[q["answer"]] += 1
    return [int(by_q.get(q, Counter({"": 1})).most_common(1)[0][0] == a) for _, _, q, a in questions]


def summarize(hits: list[int], questions) -> dict[str, Any]:
    from herd.eval.stats import ci95

    res: dict[str, Any] = {}
    for kind in [*sorted({k for _, k, _, _ in questions}), "all"]:
        h = [x for x, (_, k, _, _) in zip(hits, questions, strict=True) if kind in ("all", k)]
        acc = sum(h) / len(h)
        res[kind] = {"acc": acc, "ci95": ci95(acc, len(h)), "n": len(h)}
    return res


def paired_gain(a: list[int], b: list[int]) -> dict[str, float]:
    """Mean of a − b per question with a 95% normal-approximation interval (paired)."""
    d = [x - y for x, y in zip(a, b, strict=True)]
    m = sum(d) / len(d)
    sd = math.sqrt(sum((x - m) ** 2 for x in d) / max(1, len(d) - 1))
    return {"gain": m, "ci95": 1.96 * sd / math.sqrt(len(d)), "n": len(d)}
