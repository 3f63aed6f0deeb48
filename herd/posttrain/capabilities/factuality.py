"""Factuality by knowledge probing [P §4.3.6]: answer what the model knows, refuse what it does not.

The paper's recipe, with an extractive question generator in place of Llama: take a sentence from a bundled
document, blank out a span whose value the sentence states (a year, another number, a name), and ask for
it without the document. The policy answers K times; each answer is judged against the source span
(normalised exact match, token F1 or the number itself) or recognised as a refusal. A probe answered
right consistently is kept with the model's own answer; one answered wrong consistently (informative and
incorrect) becomes a refusal target; a mixed one is dropped ("inconsistent"). Preference pairs: right answer
over refusal where it knows, refusal over the wrong answer where it does not.

Evaluation on probes from held-out documents: the share not answered wrongly (the value), accuracy when
answering, refusal rate and correct rate, each with a 95% CI.
"""

from __future__ import annotations

import random
import re
import string
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from herd.eval.stats import ci95
from herd.posttrain.capabilities.base import Capability, CapabilityContext, Outputs, ReplyFn, policy_replies, register
from herd.posttrain.data import Preference, preference_row, split_held_out

Messages = list[dict[str, str]]

REFUSALS = (
    "I don't know. I can't recall that with confidence.",
    "I'm not sure, and I would rather not guess.",
    "I don't know the answer to that.",
)
_REFUSAL = re.compile(
    r"\b(i (do not|don't|dont) know|i'?m not sure|i am not sure|not certain|no idea"
    r"|can(not|'t) (recall|say|tell|answer)|rather not guess|unable to (answer|determine))\b",
    re.IGNORECASE,
)
_SENTENCE = re.compile(r"(?<=[.!?])\s+(?=[A-Z\"'])")
_YEAR = re.compile(r"\b(1[5-9]\d\d|20\d\d)\b")
_NUMBER = re.compile(r"\b\d[\d,]*(?:\.\d+)?\b")
_NAME = re.compile(r"(?<=\s)[A-Z][a-zA-Z]*[a-z](?:\s+(?:of\s+)?[A-Z][a-zA-Z]*[a-z])*\b")
_COMMON = {"The", "This", "That", "These", "It", "We", "I", "In", "But", "And", "Our", "They", "If", "A"}


# ---------------------------------------------------------------- documents and probes


def read_documents(paths: Sequence[str]) -> list[tuple[str, str]]:
    """(name, text) of every .txt file under the given folders or files, in sorted order."""
    docs = []
    for p in paths:
        path = Path(p)
        if not path.exists():
            raise FileNotFoundError(
                f"{path}: no documents (build the bundled corpus: python -m herd.data.bundle SOURCES runs/corpus)"
            )
        files = sorted(path.rglob("*.txt")) if path.is_dir() else [path]
        for f in files:
            try:
                docs.append((str(f), f.read_text(encoding="utf-8")))
            except UnicodeDecodeError as e:
                raise ValueError(f"{f}: not UTF-8 text (byte {e.start})") from e
    if not docs:
        raise FileNotFoundError(f"{', '.join(paths)}: no .txt documents found")
    return docs


def sentences(text: str) -> list[str]:
    return [" ".join(s.split()) for s in _SENTENCE.split(text) if s.strip()]


@dataclass
class Probe:
    """A cloze question about one sentence: the answer is the blanked span."""

    question: str
    answer: str
    kind: str  # year | number | name
    sentence: str
    source: str

    @property
    def prompt(self) -> Messages:
        return [{"role": "user", "content": self.question}]


def make_probe(sentence: str, source: str, min_words: int = 8, max_words: int = 40) -> tuple[Probe | None, str]:
    """(probe, "") or (None, drop reason): a year first, then another number, then a name not at the start."""
    n = len(sentence.split())
    if n < min_words:
        return None, "sentence_too_short"
    if n > max_words:
        return None, "sentence_too_long"
    for kind, pattern in (("year", _YEAR), ("number", _NUMBER), ("name", _NAME)):
        spans = [m.group(0) for m in pattern.finditer(sentence)]
        spans = [s for s in spans if s not in _COMMON and len(s) > 1]
        if not spans:
            continue
        answer = spans[0]
        if sentence.count(answer) > 1:
            return None, "ambiguous_span"  # the blank would be filled in by the sentence itself
        blanked = sentence.replace(answer, "____", 1)
        what = {"year": "year", "number": "number", "name": "name"}[kind]
        question = f'Fill in the blank with the missing {what}: "{blanked}" Answer with the {what} only.'
        return Probe(question, answer, kind, sentence, source), ""
    return None, "no_answer_span"


def normalise(text: str) -> str:
    text = text.lower().replace(",", "")
    text = "".join(c for c in text if c not in string.punctuation)
    return " ".join(w for w in text.split() if w not in ("a", "an", "the"))


def token_f1(pred: str, gold: str) -> float:
    """SQuAD's token-overlap F1 between normalised answers."""
    p, g = normalise(pred).split(), normalise(gold).split()
    common = sum((Counter(p) & Counter(g)).values())
    if not common:
        return 0.0
    precision, recall = common / len(p), common / len(g)
    return 2 * precision * recall / (precision + recall)


def judge(reply: str, probe: Probe, min_f1: float = 0.5) -> str:
    """ "refused", "correct" or "wrong": a refusal phrase first; numbers must appear as a whole token."""
    if not reply.strip() or _REFUSAL.search(reply):
        return "refused"
    if probe.kind in ("year", "number"):
        gold = probe.answer.replace(",", "")
        return "correct" if gold in re.findall(r"\d+(?:\.\d+)?", reply.replace(",", "")) else "wrong"
    if normalise(probe.answer) in normalise(reply) or token_f1(reply, probe.answer) >= min_f1:
        return "correct"
    return "wrong"


@dataclass
class FactualityConfig:
    documents: list[str] = field(default_factory=lambda: ["runs/corpus/sotu"])  # folders of .txt files
    held_out_fraction: float = 0.3  # documents whose probes only the evaluation sees
    probes_per_document: int = 2
    n_probes: int = 60
    k: int = 4  # answers per probe; "consistently" right or wrong is judged over these [P §4.3.6]
    temperature: float = 0.7
    max_new_tokens: int = 16
    min_correct: float = 0.75  # share of K answers right to count as known
    max_correct_unknown: float = 0.0  # share right at most to count as not known (a refusal target)
    min_f1: float = 0.5
    n_eval: int = 60


@register
class Factuality(Capability):
    name = "factuality"
    category = "general"
    Config = FactualityConfig
    reply_fn: ReplyFn | None = None  # tests plant a scripted generator; None samples the model

    def probes(self, seed: int, held_out: bool, limit: int, out: Outputs | None = None) -> list[Probe]:
        """Up to `limit` probes from held-in or held-out documents, `probes_per_document` each, seeded."""
        docs = read_documents(self.config.documents)
        train, test = split_held_out(docs, self.config.held_out_fraction, seed)
        docs = test if held_out else train
        random.Random(seed).shuffle(docs)
        probes: list[Probe] = []
        for name, text in docs:
            candidates = sentences(text)
            random.Random(f"{seed}:{name}").shuffle(candidates)
            found = 0
            for sentence in candidates:
                if found == self.config.probes_per_document or len(probes) == limit:
                    break
                probe, reason = make_probe(sentence, name)
                if probe is None:
                    if out is not None:
                        out.drop({"sentence": sentence, "document": name, "source": "factuality"}, reason)
                    continue
                probes.append(probe)
                found += 1
            if len(probes) == limit:
                break
        return probes

    def generate(self, ctx: CapabilityContext) -> Outputs:
        cfg = self.config
        out = Outputs()
        rng = random.Random(ctx.seed)
        probes = self.probes(ctx.seed, held_out=False, limit=cfg.n_probes, out=out)
        samples = policy_replies(
            self.reply_fn, ctx.policy, ctx.chat, [p.prompt for p in probes], cfg.k, cfg.max_new_tokens,
            cfg.temperature, ctx.seed,
        )  # fmt: skip
        for probe, replies in zip(probes, samples, strict=True):
            self._decide(out, probe, replies, rng)
        out.stats["probes"] = len(probes)
        out.stats["known"] = sum(r["source"] == "factuality-known" for r in out.kept)
        out.stats["refusal_targets"] = sum(r["source"] == "factuality-refusal" for r in out.kept)
        return out

    def _decide(self, out: Outputs, probe: Probe, replies: Sequence[str], rng: random.Random) -> None:
        cfg = self.config
        verdicts = [judge(r, probe, cfg.min_f1) for r in replies]
        right = [r for r, v in zip(replies, verdicts, strict=True) if v == "correct"]
        wrong = [r for r, v in zip(replies, verdicts, strict=True) if v == "wrong"]
        share = len(right) / len(replies) if replies else 0.0
        row = {"source": "factuality", "answer": probe.answer, "kind": probe.kind, "document": probe.source,
               "verdicts": dict(Counter(verdicts))}  # fmt: skip
        refusal = rng.choice(REFUSALS)
        if share >= cfg.min_correct:
            answer = right[0].strip()
            out.kept.append({**row, "messages": [*probe.prompt, _assistant(answer)], "source": "factuality-known"})
            pair = Preference(probe.prompt, [answer, refusal], "better", "factuality-known")
        elif share <= cfg.max_correct_unknown and len(wrong) == len(replies):
            # consistently informative and incorrect: the model does not know, so it should say so
            out.kept.append({**row, "messages": [*probe.prompt, _assistant(refusal)], "source": "factuality-refusal",
                             "hallucinated": wrong[0]})  # fmt: skip
            pair = Preference(probe.prompt, [refusal, wrong[0]], "significantly_better", "factuality-refusal")
        else:
            out.drop({**row, "messages": probe.prompt, "replies": list(replies)},
                     "inconsistent" if right else "already_refuses")  # fmt: skip
            return
        if pair.chosen != pair.rejected:
            out.prefs.append(preference_row(pair))

    def evaluate(self, model_dir: Path, ctx: CapabilityContext) -> dict[str, Any]:
        """Greedy answers to held-out probes: not-wrong share (the value), accuracy when answering, refusals."""
        probes = self.probes(ctx.seed, held_out=True, limit=self.config.n_eval)
        replies = policy_replies(
            self.reply_fn, model_dir, ctx.chat, [p.prompt for p in probes], 1, self.config.max_new_tokens, 0.0, ctx.seed
        )
        verdicts = Counter(judge(r[0], p, self.config.min_f1) for p, r in zip(probes, replies, strict=True))
        n, answered = len(probes), verdicts["correct"] + verdicts["wrong"]
        value = 1 - verdicts["wrong"] / n if n else 0.0
        acc = verdicts["correct"] / answered if answered else None  # undefined when it refuses everything
        refused, correct = verdicts["refused"] / n if n else 0.0, verdicts["correct"] / n if n else 0.0
        return {
            "metric": "not_hallucinated",
            "value": value,
            "ci95": ci95(value, n),
            "n": n,
            "accuracy_when_answering": acc,
            "accuracy_when_answering_ci95": ci95(acc, answered) if acc is not None else None,
            "answered": answered,
            "refusal_rate": refused,
            "refusal_rate_ci95": ci95(refused, n),
            "correct_rate": correct,
            "correct_rate_ci95": ci95(correct, n),
        }


def _assistant(text: str) -> dict[str, str]:
    return {"role": "assistant", "content": text}
