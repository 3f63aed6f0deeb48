"""Trained guards on the bundled sets: a Llama-Guard-shaped safe/S1–S14 classifier and Prompt Guard.

Both are linear heads on MiniLM embeddings (herd.safety.embed), evaluated on HELD-OUT TOPICS: the third
adversarial topic of every category, the second borderline topic, every fifth helpful prompt and all
Spanish prompts never appear in training, so the scores measure generalisation to unseen requests and
languages, not recall of seen wordings.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from herd.safety.embed import LinearHead, embed
from herd.safety.llama_guard import GuardVerdict, guard_turns
from herd.safety.metrics import is_refusal, majority_baseline, per_class_prf, tpr_at_fpr
from herd.safety.prompts import last_user_text

SAFE = "safe"


def guard_label(row: Mapping[str, Any]) -> str:
    """'safe', or the hazard code of an adversarial prompt."""
    return row["category"] if row["set"] == "adversarial" else SAFE


def is_held_out(row: Mapping[str, Any]) -> bool:
    group, lang = row["group"], row.get("language", "en")
    return lang == "es" or group.endswith(("-t2", "-b1")) or (group.startswith("h") and int(group[1:]) % 5 == 0)


def split(rows: Sequence[Mapping[str, Any]]) -> tuple[list, list]:
    train = [r for r in rows if not is_held_out(r)]
    return train, [r for r in rows if is_held_out(r)]


@dataclass
class EmbeddingGuard:
    """safe / S1..S14 from the last user message; an Agent message is judged by proxy (see classify)."""

    head: LinearHead
    threshold: float = 0.5

    @classmethod
    def train(cls, rows: Sequence[Mapping[str, Any]], threshold: float = 0.5) -> EmbeddingGuard:
        x = embed([last_user_text(r) for r in rows])
        return cls(LinearHead.fit(x, [guard_label(r) for r in rows]), threshold)

    def p_unsafe_and_category(self, texts: Sequence[str]) -> list[tuple[float, str]]:
        probs = self.head.proba(embed(texts))
        safe = self.head.classes.index(SAFE)
        out = []
        for p in probs:
            hazard = max((i for i in range(len(p)) if i != safe), key=lambda i: p[i])
            out.append((float(1.0 - p[safe]), self.head.classes[hazard]))
        return out

    def classify(self, messages: Sequence[Mapping[str, Any]]) -> GuardVerdict:
        """The last User message by its text. For an Agent message (response classification) this head has no
        response model: the exchange is unsafe when the request is unsafe and the response does not refuse —
        a proxy that counts any compliance with a harmful request as a violation."""
        turns = guard_turns(messages)
        request = next(text for side, text in reversed(turns) if side == "User")
        p, category = self.p_unsafe_and_category([request])[0]
        if p < self.threshold or (turns[-1][0] == "Agent" and is_refusal(turns[-1][1])):
            return GuardVerdict("safe", p_unsafe=p)
        return GuardVerdict("unsafe", (category,), p_unsafe=p)

    def __call__(self, messages: Sequence[Mapping[str, Any]]) -> GuardVerdict:
        return self.classify(messages)

    def save(self, path: Path) -> None:
        self.head.save(Path(path))
        (Path(path) / "threshold.txt").write_text(f"{self.threshold}\n")

    @classmethod
    def load(cls, path: Path) -> EmbeddingGuard:
        return cls(LinearHead.load(Path(path)), float((Path(path) / "threshold.txt").read_text()))


def evaluate_guard(guard: EmbeddingGuard, train: Sequence[Mapping], test: Sequence[Mapping]) -> dict[str, Any]:
    """Held-out per-category P/R/F1 (15 classes), binary safe/unsafe P/R/F1, and majority baselines."""
    scored = guard.p_unsafe_and_category([last_user_text(r) for r in test])
    pred = [cat if p >= guard.threshold else SAFE for p, cat in scored]
    truth = [guard_label(r) for r in test]
    labels = [SAFE, *sorted({t for t in truth if t != SAFE}, key=lambda c: int(c[1:]))]
    binary = ["unsafe" if t != SAFE else SAFE for t in truth]
    bpred = ["unsafe" if p != SAFE else SAFE for p in pred]
    btrain = ["unsafe" if guard_label(r) != SAFE else SAFE for r in train]
    return {
        "n_train": len(train),
        "n_test": len(test),
        "categories": per_class_prf(truth, pred, labels),
        "categories_majority": majority_baseline([guard_label(r) for r in train], truth, labels)["macro_f1"],
        "binary": per_class_prf(binary, bpred, [SAFE, "unsafe"]),
        "binary_majority": majority_baseline(btrain, binary, [SAFE, "unsafe"])["macro_f1"],
    }


# ---------------------------------------------------------------- Prompt Guard

PG_CLASSES = ("benign", "injection", "jailbreak")


def pg_held_out(row: Mapping[str, Any]) -> bool:
    """Held-out: the last two injected payloads, jailbreak payloads of S12–S14, a slice of benign groups."""
    g = row["group"]
    return g in {"inj-6", "inj-7", "jb-S12", "jb-S13", "jb-S14", "ben-0", "ben-5", "ben-S3", "ben-S9"} or g.endswith(
        "-1"
    )


@dataclass
class PromptGuard:
    """benign / injection / jailbreak scores for a text (an input or a tool result)."""

    head: LinearHead

    @classmethod
    def train(cls, rows: Sequence[Mapping[str, Any]]) -> PromptGuard:
        return cls(LinearHead.fit(embed([r["text"] for r in rows]), [r["label"] for r in rows]))

    def scores(self, texts: Sequence[str]) -> list[dict[str, float]]:
        probs = self.head.proba(embed(texts))
        return [{c: float(p[self.head.classes.index(c)]) for c in PG_CLASSES} for p in probs]

    def predict(self, texts: Sequence[str]) -> list[str]:
        return [max(s, key=s.get) for s in self.scores(texts)]  # type: ignore[arg-type]


def evaluate_prompt_guard(pg: PromptGuard, test: Sequence[Mapping], fprs: Sequence[float] = (0.01, 0.05)) -> dict:
    """TPR at fixed FPR per attack class and slice, against held-out benign texts (Table 28's shape)."""
    scores = pg.scores([r["text"] for r in test])
    out: dict[str, Any] = {"n_test": len(test), "accuracy": 0.0, "tpr_at_fpr": {}}
    preds = [max(s, key=s.get) for s in scores]  # type: ignore[arg-type]
    out["accuracy"] = sum(p == r["label"] for p, r in zip(preds, test, strict=True)) / len(test)
    for cls in ("injection", "jailbreak"):
        neg = [s[cls] for s, r in zip(scores, test, strict=True) if r["label"] == "benign"]
        for slice_ in sorted({r["slice"] for r in test if r["label"] == cls}):
            pos = [s[cls] for s, r in zip(scores, test, strict=True) if r["label"] == cls and r["slice"] == slice_]
            out["tpr_at_fpr"][f"{cls}/{slice_}"] = {f"{f:g}": tpr_at_fpr(pos, neg, f) for f in fprs}
    return out


def main() -> None:
    """`python -m herd.safety.trained`: train both guards on the training topics, print held-out scores."""
    import json

    from herd.safety.prompts import load_prompt_guard_set, load_prompt_set

    train, test = split(load_prompt_set())
    report = evaluate_guard(EmbeddingGuard.train(train), train, test)
    pg_rows = load_prompt_guard_set()
    pg_train = [r for r in pg_rows if not pg_held_out(r)]
    report["prompt_guard"] = evaluate_prompt_guard(
        PromptGuard.train(pg_train), [r for r in pg_rows if pg_held_out(r)]
    ) | {"n_train": len(pg_train)}
    print(json.dumps(report, indent=1))


if __name__ == "__main__":
    main()
