"""Steerability: system prompts whose instructions a program can check [P §4.3.7].

The paper steers with system prompts (length, format, tone, persona) and measures instruction following
with IFEval. Here each system prompt carries 1–2 verifiable instructions (ids and semantics as IFEval
defines them, checked by the functions below); the policy answers bundle prompts under it; a reply that
passes every check is kept, one that fails is dropped naming the first failed instruction
("failed:<id>"), and (passing, failing) replies to the same prompt become preference pairs. With
`repair` on, a failing reply whose failures are all mechanical (case, commas, end phrase, quotes, title,
postscript, word limit) is edited until it passes: the paper's "edited" response, ranked above both.

Evaluation on held-out prompts: IFEval's prompt-level strict accuracy (every instruction of the prompt
followed: the value) and instruction-level strict accuracy, with 95% CIs.
"""

from __future__ import annotations

import json
import random
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from herd.eval.stats import ci95
from herd.posttrain.capabilities.base import Capability, CapabilityContext, Outputs, ReplyFn, policy_replies, register
from herd.posttrain.data import Preference, preference_row, split_held_out

Messages = list[dict[str, str]]

_WORD = re.compile(r"\w+")
_SENTENCE_END = re.compile(r"[.!?]+(?:\s+|$)")
END_PHRASES = ("Is there anything else I can help with?", "Any other questions?", "Hope this helps.")
KEYWORDS = ("robot", "friend", "music", "weather", "computer", "history", "science", "food", "travel", "book")


# ---------------------------------------------------------------- checkers (IFEval semantics)


def count_words(text: str) -> int:
    """Runs of word characters, as IFEval's RegexpTokenizer(r"\\w+") counts them."""
    return len(_WORD.findall(text))


def count_sentences(text: str) -> int:
    """Pieces ending in ., ! or ? (IFEval uses nltk's punkt, which needs a download: this is the offline
    approximation, so abbreviations such as "e.g." count as ends)."""
    return len([s for s in _SENTENCE_END.split(text.strip()) if s.strip()])


def _relation(n: int, relation: str, bound: int) -> bool:
    return n < bound if relation == "less than" else n >= bound


def check(instruction_id: str, kwargs: dict[str, Any], text: str) -> bool:
    """Whether `text` follows the instruction, strictly (the raw reply, no loosening)."""
    if instruction_id == "length_constraints:number_words":
        return _relation(count_words(text), kwargs["relation"], kwargs["num_words"])
    if instruction_id == "length_constraints:number_sentences":
        return _relation(count_sentences(text), kwargs["relation"], kwargs["num_sentences"])
    if instruction_id == "keywords:existence":
        return all(re.search(k, text, flags=re.IGNORECASE) for k in kwargs["keywords"])
    if instruction_id == "change_case:english_lowercase":
        return text.islower() and _english(text)
    if instruction_id == "change_case:english_capital":
        return text.isupper() and _english(text)
    if instruction_id == "detectable_format:json_format":
        return _is_json(text)
    if instruction_id == "detectable_format:number_bullet_lists":
        stars = re.findall(r"^\s*\*[^\*].*$", text, flags=re.MULTILINE)
        dashes = re.findall(r"^\s*-.*$", text, flags=re.MULTILINE)
        return len(stars) + len(dashes) == kwargs["num_bullets"]
    if instruction_id == "startend:end_checker":
        return text.strip().lower().endswith(kwargs["end_phrase"].strip().lower())
    if instruction_id == "punctuation:no_comma":
        return "," not in text
    if instruction_id == "startend:quotation":
        t = text.strip()
        return len(t) > 1 and t[0] == '"' and t[-1] == '"'
    if instruction_id == "detectable_format:title":
        return any(m.strip() for m in re.findall(r"<<([^\n]+)>>", text))
    if instruction_id == "detectable_content:postscript":
        return bool(re.search(r"\s*p\.\s?s\..*$", text.lower(), flags=re.MULTILINE))
    raise ValueError(f"steerability: unknown instruction id {instruction_id!r}; known: {', '.join(INSTRUCTIONS)}")


def _english(text: str) -> bool:
    """IFEval's case checks also require English (it asks langdetect); herd asks lid.176 [P §3.1.1]. Text
    without letters counts as English, as IFEval counts a text langdetect cannot judge as followed."""
    from herd.data.langid import UNDETERMINED, identify

    return identify(text.lower())[0] in ("en", UNDETERMINED)


def _is_json(text: str) -> bool:
    body = text.strip()
    for fence in ("```json", "```Json", "```JSON", "```"):
        body = body.removeprefix(fence)
    try:
        json.loads(body.removesuffix("```").strip())
    except ValueError:
        return False
    return True


# id -> (kwargs sampler, description of the instruction as the system prompt states it)
def _words(rng: random.Random) -> dict[str, Any]:
    return {"relation": rng.choice(["less than", "at least"]), "num_words": rng.choice([10, 20, 30, 50])}


def _sentences(rng: random.Random) -> dict[str, Any]:
    return {"relation": rng.choice(["less than", "at least"]), "num_sentences": rng.choice([2, 3, 4])}


INSTRUCTIONS: dict[str, tuple[Callable[[random.Random], dict[str, Any]], Callable[..., str]]] = {
    "length_constraints:number_words": (
        _words, lambda relation, num_words: f"Answer in {relation} {num_words} words."),
    "length_constraints:number_sentences": (
        _sentences, lambda relation, num_sentences: f"Answer in {relation} {num_sentences} sentences."),
    "keywords:existence": (
        lambda rng: {"keywords": rng.sample(KEYWORDS, 2)},
        lambda keywords: f"Use the words {' and '.join(repr(k) for k in keywords)} in your answer."),
    "change_case:english_lowercase": (
        lambda rng: {}, lambda: "Write your whole answer in lowercase letters; no capital letters at all."),
    "change_case:english_capital": (
        lambda rng: {}, lambda: "Write your whole answer in capital letters."),
    "detectable_format:json_format": (
        lambda rng: {}, lambda: "Format your entire answer as valid JSON."),
    "detectable_format:number_bullet_lists": (
        lambda rng: {"num_bullets": rng.choice([2, 3])},
        lambda num_bullets: f"Answer with exactly {num_bullets} bullet points in markdown, each starting with '* '."),
    "startend:end_checker": (
        lambda rng: {"end_phrase": rng.choice(END_PHRASES)},
        lambda end_phrase: f"Finish your answer with the exact phrase: {end_phrase}"),
    "punctuation:no_comma": (lambda rng: {}, lambda: "Do not use any commas in your answer."),
    "startend:quotation": (lambda rng: {}, lambda: "Wrap your entire answer in double quotation marks."),
    "detectable_format:title": (
        lambda rng: {}, lambda: "Give your answer a title wrapped in double angular brackets, like <<my title>>."),
    "detectable_content:postscript": (
        lambda rng: {}, lambda: "End your answer with a postscript starting with P.S."),
}  # fmt: skip


# Mechanical edits that make a reply follow an instruction [P §4.2.1: edited responses rank first].
def _repair(instruction_id: str, kwargs: dict[str, Any], text: str) -> str | None:
    t = text.strip()
    if instruction_id == "change_case:english_lowercase":
        return t.lower()
    if instruction_id == "change_case:english_capital":
        return t.upper()
    if instruction_id == "punctuation:no_comma":
        return t.replace(",", "")
    if instruction_id == "startend:end_checker":
        return f"{t} {kwargs['end_phrase']}"
    if instruction_id == "startend:quotation":
        return f'"{t}"'
    if instruction_id == "detectable_format:title":
        return f"<<{' '.join(t.split()[:4]) or 'Answer'}>>\n{t}"
    if instruction_id == "detectable_content:postscript":
        return f"{t}\nP.S. Ask me if anything is unclear."
    if instruction_id == "length_constraints:number_words" and kwargs["relation"] == "less than":
        words = list(_WORD.finditer(t))
        return t[: words[kwargs["num_words"] - 1].start()].rstrip() if len(words) >= kwargs["num_words"] else t
    return None


@dataclass
class Task:
    """A prompt with its instructions; the system prompt states them."""

    prompt: Messages
    instructions: list[tuple[str, dict[str, Any]]]

    @property
    def messages(self) -> Messages:
        lines = [INSTRUCTIONS[i][1](**kw) for i, kw in self.instructions]
        system = "Follow these instructions in your reply:\n" + "\n".join(f"- {x}" for x in lines)
        return [{"role": "system", "content": system}, *self.prompt]

    def failed(self, text: str) -> list[str]:
        return [i for i, kw in self.instructions if not check(i, kw, text)]

    def repaired(self, text: str) -> str | None:
        """The reply edited until every instruction passes, or None when some failure is not mechanical."""
        for _ in range(len(self.instructions) + 1):  # an edit can undo another (an end phrase's capitals)
            for i, kw in self.instructions:
                if not check(i, kw, text):
                    edited = _repair(i, kw, text)
                    if edited is None:
                        return None
                    text = edited
            if not self.failed(text):
                return text if text.strip() else None
        return None


@dataclass
class SteerabilityConfig:
    instructions: list[str] = field(default_factory=lambda: list(INSTRUCTIONS))
    max_instructions: int = 2  # per system prompt, from distinct groups (the id's part before ':')
    sources: list[str] = field(default_factory=lambda: ["chatterbot"])  # bundle prompts.jsonl sources
    held_out_fraction: float = 0.3
    n_prompts: int = 48  # held-in prompts the policy answers
    k: int = 4
    temperature: float = 0.8
    max_new_tokens: int = 64
    repair: bool = True
    n_eval: int = 60
    eval_max_new_tokens: int = 96


def read_prompts(bundle: Path, sources: Sequence[str]) -> list[Messages]:
    path = bundle / "prompts.jsonl"
    if not path.is_file():
        raise FileNotFoundError(
            f"{path}: no bundle prompts (build the bundle: herd posttrain configs/posttrain/toy.toml)"
        )
    out = []
    for n, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        try:
            row = json.loads(line)
        except json.JSONDecodeError as e:
            raise ValueError(f"{path}:{n}: not JSON: {e.msg}") from e
        if not isinstance(row.get("prompt"), list):
            raise ValueError(f"{path}:{n}: field 'prompt': expected a list of messages")
        if row.get("source") in sources:
            out.append(row["prompt"])
    return out


@register
class Steerability(Capability):
    name = "steerability"
    category = "general"
    Config = SteerabilityConfig
    reply_fn: ReplyFn | None = None  # tests plant a scripted generator; None samples the model

    def tasks(self, bundle: Path, seed: int) -> tuple[list[Task], list[Task]]:
        """(held-in, held-out) prompts with seeded instructions; unknown instruction ids fail here."""
        for i in self.config.instructions:
            if i not in INSTRUCTIONS:
                raise ValueError(
                    f"capability.steerability.instructions: unknown id {i!r}; known: {', '.join(INSTRUCTIONS)}"
                )
        train, test = split_held_out(read_prompts(bundle, self.config.sources), self.config.held_out_fraction, seed)
        rng = random.Random(seed)
        return [self._task(p, rng) for p in train], [self._task(p, rng) for p in test]

    def _task(self, prompt: Messages, rng: random.Random) -> Task:
        ids = rng.sample(self.config.instructions, len(self.config.instructions))
        n = rng.randint(1, max(1, self.config.max_instructions))
        picked: list[str] = []
        for i in ids:  # distinct groups: "lowercase" and "capital" together could never pass
            if len(picked) < n and i.split(":")[0] not in {p.split(":")[0] for p in picked}:
                picked.append(i)
        return Task(prompt, [(i, INSTRUCTIONS[i][0](rng)) for i in picked])

    def generate(self, ctx: CapabilityContext) -> Outputs:
        cfg = self.config
        out = Outputs()
        tasks = self.tasks(ctx.bundle, ctx.seed)[0][: cfg.n_prompts]
        samples = policy_replies(
            self.reply_fn, ctx.policy, ctx.chat, [t.messages for t in tasks], cfg.k, cfg.max_new_tokens,
            cfg.temperature, ctx.seed,
        )  # fmt: skip
        for task, replies in zip(tasks, samples, strict=True):
            self._judge(out, task, replies)
        out.stats["instructions_kept"] = dict(
            sorted({i: sum(i in [x[0] for x in r["instructions"]] for r in out.kept) for i in cfg.instructions}.items())
        )
        return out

    def _judge(self, out: Outputs, task: Task, replies: Sequence[str]) -> None:
        kept, failed_reply = None, None
        for reply in replies:
            row = {"messages": [*task.messages, {"role": "assistant", "content": reply}], "source": "steerability",
                   "instructions": task.instructions}  # fmt: skip
            failed = task.failed(reply)
            if not reply.strip():
                out.drop(row, "empty_reply")
                continue
            if failed:
                failed_reply = failed_reply or reply
                fixed = task.repaired(reply) if self.config.repair and kept is None else None
                if fixed is None:
                    out.drop(row, f"failed:{failed[0]}", failed=failed)
                    continue
                row = {**row, "source": "steerability-repaired", "repaired": failed}
                row["messages"] = [*task.messages, {"role": "assistant", "content": fixed}]
            if kept is not None:
                out.drop(row, "extra_sample")  # one kept reply per prompt, as RS keeps the best of K
            else:
                kept = row["messages"][-1]["content"]
                out.kept.append(row)
        if kept and failed_reply and kept != failed_reply:
            pair = Preference(task.messages, [kept, failed_reply], "significantly_better", "steerability",
                              {"instructions": task.instructions})  # fmt: skip
            out.prefs.append(preference_row(pair))

    def evaluate(self, model_dir: Path, ctx: CapabilityContext) -> dict[str, Any]:
        """IFEval's strict accuracies on held-out prompts: prompt-level (the value) and instruction-level."""
        tasks = self.tasks(ctx.bundle, ctx.seed)[1][: self.config.n_eval]
        replies = policy_replies(
            self.reply_fn, model_dir, ctx.chat, [t.messages for t in tasks], 1, self.config.eval_max_new_tokens
        )
        followed = [[check(i, kw, r[0]) for i, kw in t.instructions] for t, r in zip(tasks, replies, strict=True)]
        prompt_level = sum(all(f) for f in followed) / len(followed) if followed else 0.0
        flat = [x for f in followed for x in f]
        inst_level = sum(flat) / len(flat) if flat else 0.0
        by_id: dict[str, list[int]] = {}
        for t, f in zip(tasks, followed, strict=True):
            for (i, _), ok in zip(t.instructions, f, strict=True):
                by_id.setdefault(i, [0, 0])[0 if ok else 1] += 1
        return {
            "metric": "ifeval_prompt_strict",
            "value": prompt_level,
            "ci95": ci95(prompt_level, len(followed)),
            "n": len(followed),
            "instruction_strict": inst_level,
            "instruction_ci95": ci95(inst_level, len(flat)),
            "instruction_n": len(flat),
            "followed_failed_by_id": dict(sorted(by_id.items())),
        }
