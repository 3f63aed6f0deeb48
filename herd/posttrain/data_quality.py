"""Post-training data cleaning and pruning [P §4.2.3]: rules, topic, quality, difficulty, semantic dedup.

`prune(dialogs, cfg, rm, judge)` runs the steps in the paper's order on SFT dialogs and returns
(kept, dropped, stats). Every row comes back exactly once: kept rows carry their scores under "prune",
dropped rows also carry the `reason` (the rule or step that dropped them) and the `step`.

1. rules: assistant turns that overuse emojis or exclamation marks (prose only: code blocks are cut out
   first), tonal disclaimers ("As an AI language model") and over-apologetic replies are dropped; dialogs
   that apologize once are rebalanced to at most `max_apology_fraction` of the data.
2. topic: a coarse label per dialog (code, math, reasoning, general, multilingual): the nearest topic
   description in MiniLM space (herd.data.quality's embedder), with language ID for multilingual
   (MiniLM is an English model) and a fenced code block for code. The paper fine-tunes Llama 3 8B into
   a topic classifier with coarse and fine buckets; herd has coarse buckets only.
3. quality: a dialog is high quality if its reward-model score is in the top quartile (of its topic, by
   default) OR the judge gives it the maximum score (3-point scale for general English, 2-point for code);
   the rest are dropped.
4. difficulty: Instag-style intention count (the judge lists the user's intentions as tags; without a judge,
   a count of the user's request sentences) and a 3-point judge difficulty score. Nothing is dropped.
5. dedup: whole dialogs are embedded (MiniLM; the paper uses RoBERTa) and clustered with k-means; within
   a cluster dialogs are visited by quality × difficulty, best first, and one is kept only if its cosine
   similarity to every dialog already kept is at most `dedup_threshold` (the paper gives no value).

Why k-means and not one greedy pass over all dialogs: the greedy pass compares each dialog with every kept
one, O(n²); clusters of ~`cluster_size` make it O(n · cluster_size). Near-duplicates at cosine ≥ 0.95 are
within 0.32 of each other on the unit sphere, far closer than a cluster's radius, so a pair is split only
when it sits on a boundary; the paper accepts the same trade.
"""

from __future__ import annotations

import math
import re
import time
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

import numpy as np

from herd.core.logging import get_logger
from herd.judge.dialog import render, turns
from herd.judge.lm import LMJudge
from herd.judge.lm import load_judge as judge_model

# herd.data.quality (MiniLM, hashing) and herd.data.langid are imported where used: they import datatrove,
# from the `curate` extra, which `herd posttrain` without pruning does not need.

log = get_logger(__name__)

Row = dict[str, Any]  # a dialog row: {"messages": [...], "source": ..., ...}
Embedder = Callable[[Sequence[str]], np.ndarray]  # texts -> (N, D) unit-norm rows
Scorer = Callable[[Sequence[Row]], list[float]]  # dialogs -> reward-model scores

STEPS = ("rules", "topic", "quality", "difficulty", "dedup")
# The paper names the patterns, not the phrase lists [P §4.2.3]; these are herd's.
TONAL_PHRASES = [
    "as an ai language model",
    "as a large language model",
    "as an ai assistant",
    "as an artificial intelligence",
    "i'm just an ai",
    "i am just an ai",
    "i'm only an ai",
]
APOLOGY_PHRASES = ["i'm sorry", "i am sorry", "i apologize", "i apologise", "my apologies", "sorry for the"]
# Several prototypes per topic (a description and an example dialog): MiniLM places a dialog near text
# of the same form, so a description alone pulls in every "What is X?" question.
TOPICS = {
    "code": [
        "User: Write a Python function that sorts a list.\nAssistant: def sort_items(xs): return sorted(xs)",
        "programming: source code, functions, classes, bugs, algorithms in Python, JavaScript, SQL",
    ],
    "math": ["User: What is 12 * 7?\nAssistant: 12 * 7 = 84.", "mathematics: arithmetic, algebra, equations, proofs"],
    "reasoning": ["logic puzzles, riddles and multi-step problems solved by reasoning step by step"],
    "general": [
        "User: How are you today?\nAssistant: I'm fine, thanks for asking.",
        "trivia and general knowledge: history, geography, sport, films, famous people, science facts",
        "everyday help and advice: computers and devices, travel, food, health",
    ],
}
MULTILINGUAL = "multilingual"


@dataclass
class PruneConfig:
    """Thresholds of the pruning steps; the paper's where it gives one [P §4.2.3], herd's otherwise."""

    enabled: bool = False
    steps: list[str] = field(default_factory=lambda: list(STEPS))
    # rules
    max_emojis: int = 3  # per dialog's assistant prose
    max_emoji_per_word: float = 0.05
    max_exclamations: int = 3  # sentence-ending "!" in the assistant prose
    max_exclamation_fraction: float = 0.5  # of its sentences, once there are at least two
    tonal_phrases: list[str] = field(default_factory=lambda: list(TONAL_PHRASES))
    apology_phrases: list[str] = field(default_factory=lambda: list(APOLOGY_PHRASES))
    max_apologies: int = 1  # per dialog; more is over-apologetic
    max_apology_fraction: float = 0.01  # of the dialogs may apologize at all; the rest are rebalanced away
    # topic
    multilingual_min_prob: float = 0.7  # language-ID probability for a non-English label
    # quality
    rm_top_fraction: float = 0.25  # the RM's top quartile [P §4.2.3]
    # Per topic: RM scores compare replies to similar prompts, not across domains. On the bundled data one
    # quartile over everything keeps 356 arithmetic dialogs and 3 conversational ones. The paper does not
    # say which it does; per topic is herd's reading.
    rm_quartile_per_topic: bool = True
    judge: str = ""  # "" = no judge; a bundled name ("smollm2"), a herd/HF folder or a .gguf
    judge_chars: int = 600  # of each dialog shown to the judge
    judge_rank_labels: bool = True  # a small judge answers one digit everywhere: bin by expected score
    # difficulty
    intent_max_new_tokens: int = 32
    max_intentions: int = 10
    # semantic dedup
    dedup_threshold: float = 0.95  # cosine; the paper gives none
    cluster_size: int = 64  # mean dialogs per k-means cluster
    seed: int = 0


class Judge(Protocol):
    """What pruning asks of an LLM judge; labels are integers, the scale's maximum is best/hardest."""

    def quality(self, rows: Sequence[Row], code: Sequence[bool]) -> list[int]: ...

    def difficulty(self, rows: Sequence[Row]) -> list[int]: ...

    def intentions(self, rows: Sequence[Row]) -> list[list[str]]: ...


# ---------------------------------------------------------------- 1. rules

_FENCE = re.compile(r"```.*?(```|$)", re.S)
_INLINE = re.compile(r"`[^`\n]*`")
# Pictographs, dingbats, symbols, flags; variation selectors and joiners are not counted on their own.
_EMOJI = re.compile("[\U0001f000-\U0001faff\u2600-\u27bf\u2b00-\u2bff\u2300-\u23ff]")
_SENTENCE_END = re.compile(r"[.?!]+(?=\s|$|[\"')\]])")
_EXCLAIM = re.compile(r"!+(?=\s|$|[\"')\]])")  # "!=" and "!x" in left-over code are not exclamations


def prose(text: str) -> str:
    """Text with fenced and inline code removed: "!" and symbols in code are not tone."""
    return _INLINE.sub(" ", _FENCE.sub(" ", text))


def count_emojis(text: str) -> int:
    return len(_EMOJI.findall(text))


def count_exclamations(text: str) -> tuple[int, int]:
    """("!" characters ending sentences, sentences) in `text`; "Wow!!" counts two."""
    bangs = sum(len(m.group()) for m in _EXCLAIM.finditer(text))
    return bangs, max(1, len(_SENTENCE_END.findall(text)))


def _phrase_re(phrases: Sequence[str]) -> re.Pattern[str]:
    # Longest first, so "please accept my apologies" is one match, not two.
    alts = sorted((re.escape(p.lower()) for p in phrases), key=len, reverse=True)
    return re.compile(r"\b(?:" + "|".join(alts) + r")") if alts else re.compile(r"(?!)")


def _normalize(text: str) -> str:
    return text.lower().replace("\u2019", "'")


def rule_reason(row: Mapping[str, Any], cfg: PruneConfig) -> str | None:
    """The first rule the dialog's assistant turns break, as a drop reason; None if clean."""
    text = prose("\n".join(turns(row, "assistant")))
    n_emoji = count_emojis(text)
    # One emoji in a short reply is tone; two or more at a high density, or many at all, is overuse.
    if n_emoji > cfg.max_emojis or (n_emoji >= 2 and n_emoji > cfg.max_emoji_per_word * len(text.split())):
        return "rule_emoji"
    bangs, sentences = count_exclamations(text)
    if bangs > cfg.max_exclamations or (bangs >= 2 and bangs / sentences > cfg.max_exclamation_fraction):
        return "rule_exclamation"
    low = _normalize(text)
    if _phrase_re(cfg.tonal_phrases).search(low):
        return "rule_tonal_phrase"
    if len(_phrase_re(cfg.apology_phrases).findall(low)) > cfg.max_apologies:
        return "rule_over_apologetic"
    return None


def apologizes(row: Mapping[str, Any], cfg: PruneConfig) -> bool:
    return bool(_phrase_re(cfg.apology_phrases).search(_normalize(prose("\n".join(turns(row, "assistant"))))))


def rebalance_apologies(rows: Sequence[Row], cfg: PruneConfig, n_total: int) -> list[int]:
    """Indices (into `rows`) of apologizing dialogs beyond max_apology_fraction of `n_total`.

    The paper rebalances the share of "I'm sorry" replies rather than removing them all; which ones stay
    is fixed by a hash of the text, so reruns agree."""
    from herd.data.quality import stable_fraction

    sorry = [i for i, r in enumerate(rows) if apologizes(r, cfg)]
    allowed = math.floor(cfg.max_apology_fraction * n_total)
    sorry.sort(key=lambda i: stable_fraction(render(rows[i]), cfg.seed))
    return sorted(sorry[allowed:])


# ---------------------------------------------------------------- 2. topic


def topic_labels(rows: Sequence[Row], x: np.ndarray, embedder: Embedder, cfg: PruneConfig) -> list[str]:
    """Nearest topic prototype to each dialog embedding `x` (N, D); language and code fences override."""
    from herd.data.langid import identify

    names = [name for name, protos in TOPICS.items() for _ in protos]
    sims = x @ embedder([p for protos in TOPICS.values() for p in protos]).T  # (N, prototypes)
    labels = []
    for row, sim in zip(rows, sims):
        text = " ".join(turns(row, "user") + turns(row, "assistant"))
        lang, prob = identify(prose(text))
        if lang not in ("en", "und") and prob >= cfg.multilingual_min_prob:
            labels.append(MULTILINGUAL)  # MiniLM is an English model
        elif "```" in text:  # a fenced block is unambiguous; MiniLM sees only the first 1,000 characters
            labels.append("code")
        else:
            # Math with not one digit is rare, trivia questions phrased like "What is 3 + 4?" are not.
            ranked = (names[j] for j in np.argsort(-sim))
            labels.append(next(n for n in ranked if n != "math" or re.search(r"\d", text)))
    return labels


# ---------------------------------------------------------------- 3. quality, 4. difficulty


def top_fraction_mask(scores: Sequence[float], fraction: float) -> np.ndarray:
    """True for the ceil(fraction·n) highest scores, and for every score tied with the lowest of them."""
    s = np.asarray(scores, dtype=np.float64)
    if not len(s) or fraction <= 0:
        return np.zeros(len(s), dtype=bool)
    k = min(len(s), math.ceil(fraction * len(s)))
    threshold = np.sort(s)[::-1][k - 1]
    return s >= threshold


def percentile_ranks(values: Sequence[float]) -> np.ndarray:
    """Average rank / n, in (0, 1]: signals on different scales become comparable, ties share a rank."""
    from scipy.stats import rankdata

    v = np.asarray(values, dtype=np.float64)
    return rankdata(v, method="average") / max(1, len(v)) if len(v) else v


_SENTENCE = re.compile(r"[^.?!\n]+[.?!]*")


def heuristic_intentions(row: Mapping[str, Any]) -> int:
    """A judge-free stand-in for Instag's count: request sentences (≥ 2 words) over the user turns,
    and each list item or "and"-joined clause of a request as one more."""
    n = 0
    for text in turns(row, "user"):
        sentences = [s for s in _SENTENCE.findall(prose(text)) if len(s.split()) >= 2]
        n += max(1, len(sentences)) + len(re.findall(r",\s+and\s|;\s", text))
    return n


# ---------------------------------------------------------------- 5. semantic dedup


def n_clusters(n: int, cluster_size: int) -> int:
    return max(1, round(n / max(1, cluster_size)))


def kmeans_labels(x: np.ndarray, cluster_size: int, seed: int) -> np.ndarray:
    """k-means (scipy, k-means++ init) with k = n / cluster_size clusters; one cluster when small."""
    k = n_clusters(len(x), cluster_size)
    if k == 1:
        return np.zeros(len(x), dtype=np.int64)
    import warnings

    from scipy.cluster.vq import kmeans2

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # an empty cluster is harmless here: it keeps no one
        _, labels = kmeans2(x.astype(np.float64), k, minit="++", seed=seed)
    return labels


def semantic_dedup(
    x: np.ndarray, scores: Sequence[float], threshold: float, cluster_size: int, seed: int = 0
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(keep mask, index of the kept near-duplicate or -1, its cosine) for unit rows `x` (N, D).

    Within each cluster, best score first; a row is kept if its cosine to every kept row is ≤ threshold."""
    n = len(x)
    keep, dup_of, cos = np.zeros(n, dtype=bool), np.full(n, -1), np.zeros(n)
    labels = kmeans_labels(x, cluster_size, seed) if n else np.zeros(0, dtype=np.int64)
    s = np.asarray(scores, dtype=np.float64)
    for c in np.unique(labels):
        members = np.flatnonzero(labels == c)
        members = members[np.lexsort((members, -s[members]))]  # score desc, then input order
        kept: list[int] = []
        for i in members:
            if kept:
                sims = x[kept] @ x[i]  # (len(kept),)
                j = int(sims.argmax())
                if sims[j] > threshold:
                    dup_of[i], cos[i] = kept[j], float(sims[j])
                    continue
            kept.append(int(i))
            keep[i] = True
    return keep, dup_of, cos


# ---------------------------------------------------------------- the pipeline


@dataclass
class _Pool:
    """Which rows are still in, their annotations, and the funnel so far."""

    rows: list[Row]
    alive: list[int]
    notes: list[dict[str, Any]]
    dropped: dict[int, tuple[str, str]] = field(default_factory=dict)  # index -> (step, reason)
    funnel: list[dict[str, Any]] = field(default_factory=list)

    def live(self) -> list[Row]:
        return [self.rows[i] for i in self.alive]

    def drop(self, step: str, reasons: Mapping[int, str], seconds: float) -> None:
        """Drop positions (into `alive`) with their reasons; record the step in the funnel."""
        n_in = len(self.alive)
        for pos, reason in reasons.items():
            self.dropped[self.alive[pos]] = (step, reason)
        self.alive = [i for pos, i in enumerate(self.alive) if pos not in reasons]
        by = dict(sorted(Counter(reasons.values()).items()))
        self.funnel.append(
            {"step": step, "in": n_in, "kept": len(self.alive), "dropped": by, "seconds": round(seconds, 2)}
        )


def prune(
    dialogs: Sequence[Mapping[str, Any]],
    cfg: PruneConfig,
    rm: Scorer | None = None,
    judge: Judge | None = None,
    embedder: Embedder | None = None,
) -> tuple[list[Row], list[Row], dict[str, Any]]:
    """Run cfg.steps over `dialogs`; returns (kept rows, dropped rows with `reason`/`step`, stats).

    `rm` scores dialogs with the round's reward model; `judge` is an LLM judge (herd.judge.LMJudge); `embedder`
    defaults to MiniLM (herd.data.quality.embed). Without rm and judge the quality step drops nothing."""
    check_config(cfg)
    if embedder is None:
        from herd.data.quality import embed as embedder
    pool = _Pool([dict(d) for d in dialogs], list(range(len(dialogs))), [{} for _ in dialogs])
    cache = _EmbedCache(embedder)
    stats: dict[str, Any] = {}
    for step in (s for s in STEPS if s in cfg.steps):
        start = time.perf_counter()
        reasons = _STEP_FNS[step](pool, cfg, rm, judge, cache, stats) if pool.alive else {}
        pool.drop(step, reasons, time.perf_counter() - start)
    return _result(pool, stats)


def check_config(cfg: PruneConfig) -> None:
    """One line naming the bad `prune.*` field."""
    unknown = [s for s in cfg.steps if s not in STEPS]
    if unknown:
        raise ValueError(f"prune.steps: unknown step {unknown[0]!r}; steps are {', '.join(STEPS)}")
    for name in ("rm_top_fraction", "dedup_threshold"):
        if not 0 < getattr(cfg, name) <= 1:
            raise ValueError(f"prune.{name}: {getattr(cfg, name)} is not in (0, 1]")
    if cfg.cluster_size < 1:
        raise ValueError(f"prune.cluster_size: {cfg.cluster_size} must be at least 1")


class _EmbedCache:
    """Embeds each distinct rendered dialog once (the bundled data repeats dialogs many times)."""

    def __init__(self, embedder: Embedder) -> None:
        self.embedder = embedder
        self.vectors: dict[str, np.ndarray] = {}

    def __call__(self, rows: Sequence[Row]) -> np.ndarray:
        texts = [render(r) for r in rows]
        new = list(dict.fromkeys(t for t in texts if t not in self.vectors))
        if new:
            self.vectors.update(zip(new, self.embedder(new)))
        return np.stack([self.vectors[t] for t in texts]) if texts else np.zeros((0, 384), np.float32)


def _rules(pool: _Pool, cfg: PruneConfig, rm, judge, cache, stats) -> dict[int, str]:
    reasons = {pos: r for pos, row in enumerate(pool.live()) if (r := rule_reason(row, cfg))}
    clean = [pos for pos in range(len(pool.alive)) if pos not in reasons]
    extra = rebalance_apologies([pool.rows[pool.alive[p]] for p in clean], cfg, len(pool.alive))
    reasons.update({clean[i]: "rule_apology_rebalance" for i in extra})
    return reasons


def _topic(pool: _Pool, cfg: PruneConfig, rm, judge, cache, stats) -> dict[int, str]:
    rows = pool.live()
    labels = topic_labels(rows, cache(rows), cache.embedder, cfg)
    for i, label in zip(pool.alive, labels):
        pool.notes[i]["topic"] = label
    stats["topics"] = dict(Counter(labels).most_common())
    return {}


def _quality(pool: _Pool, cfg: PruneConfig, rm, judge, cache, stats) -> dict[int, str]:
    rows = pool.live()
    signals, high = [], np.zeros(len(rows), dtype=bool)
    info: dict[str, Any] = {"rm": rm is not None, "judge": judge is not None}
    if rm is not None:
        scores = np.asarray(rm(rows), dtype=np.float64)
        groups = [pool.notes[i].get("topic", "") if cfg.rm_quartile_per_topic else "" for i in pool.alive]
        top, ranks, thresholds = _top_by_group(scores, groups, cfg.rm_top_fraction)
        high |= top
        signals.append(ranks)
        info.update(rm_threshold=thresholds, rm_top=int(top.sum()))
        _note(pool, "rm_score", scores.round(4).tolist())
    if judge is not None:
        code = [pool.notes[i].get("topic") == "code" for i in pool.alive]
        labels = np.asarray(judge.quality(rows, code))
        scale = np.where(code, 1, 2)  # max label: 2-point code, 3-point general English [P §4.2.3]
        best = labels >= scale
        info.update(judge_max=int(best.sum()), rm_and_judge=int((best & high).sum()) if rm is not None else None)
        high |= best
        signals.append(labels / scale)
        _note(pool, "judge_quality", labels.tolist())
    quality = np.mean(signals, axis=0) if signals else np.ones(len(rows))
    _note(pool, "quality", quality.round(4).tolist())
    info["high"] = int(high.sum()) if signals else len(rows)
    stats["quality"] = info
    if not signals:
        log.warning("prune: no reward model and no judge, the quality step keeps every dialog")
        return {}
    return {pos: "low_quality" for pos in np.flatnonzero(~high).tolist()}


def _top_by_group(
    scores: np.ndarray, groups: Sequence[str], fraction: float
) -> tuple[np.ndarray, np.ndarray, dict[str, float]]:
    """(top-fraction mask, percentile ranks, lowest kept score per group), each group on its own."""
    top, ranks, thresholds = np.zeros(len(scores), dtype=bool), np.zeros(len(scores)), {}
    g = np.asarray(groups, dtype=object)
    for name in sorted(set(groups)):
        idx = np.flatnonzero(g == name)
        top[idx] = top_fraction_mask(scores[idx], fraction)
        ranks[idx] = percentile_ranks(scores[idx])
        thresholds[name or "all"] = round(float(scores[idx][top[idx]].min()), 4)
    return top, ranks, thresholds


def _difficulty(pool: _Pool, cfg: PruneConfig, rm, judge, cache, stats) -> dict[int, str]:
    rows = pool.live()
    if judge is not None:
        intents = [len(t) for t in judge.intentions(rows)]
        levels = np.asarray(judge.difficulty(rows))
        _note(pool, "judge_difficulty", levels.tolist())
    else:
        intents = [min(cfg.max_intentions, heuristic_intentions(r)) for r in rows]
    _note(pool, "intentions", intents)
    signals = [percentile_ranks(intents)] + ([levels / 2] if judge is not None else [])
    _note(pool, "difficulty", np.mean(signals, axis=0).round(4).tolist())
    stats["difficulty"] = {"intentions": dict(sorted(Counter(intents).items())), "judge": judge is not None}
    return {}


def _dedup(pool: _Pool, cfg: PruneConfig, rm, judge, cache, stats) -> dict[int, str]:
    rows = pool.live()
    score = [pool.notes[i].get("quality", 1.0) * pool.notes[i].get("difficulty", 1.0) for i in pool.alive]
    _note(pool, "score", [round(s, 4) for s in score])
    keep, dup_of, cos = semantic_dedup(cache(rows), score, cfg.dedup_threshold, cfg.cluster_size, cfg.seed)
    for pos in np.flatnonzero(~keep).tolist():
        pool.notes[pool.alive[pos]].update(duplicate_of=pool.alive[int(dup_of[pos])], cosine=round(cos[pos], 4))
    stats["dedup"] = {"threshold": cfg.dedup_threshold, "clusters": n_clusters(len(rows), cfg.cluster_size)}
    return {pos: "semantic_duplicate" for pos in np.flatnonzero(~keep).tolist()}


_STEP_FNS = {"rules": _rules, "topic": _topic, "quality": _quality, "difficulty": _difficulty, "dedup": _dedup}


def _note(pool: _Pool, key: str, values: Sequence[Any]) -> None:
    for i, v in zip(pool.alive, values):
        pool.notes[i][key] = v


def _result(pool: _Pool, stats: dict[str, Any]) -> tuple[list[Row], list[Row], dict[str, Any]]:
    kept = [{**pool.rows[i], "prune": pool.notes[i]} for i in pool.alive]
    dropped = [
        {**pool.rows[i], "reason": reason, "step": step, "prune": pool.notes[i]}
        for i, (step, reason) in sorted(pool.dropped.items())
    ]
    by_reason = Counter(r for _, r in pool.dropped.values())
    counts = {"in": len(pool.rows), "kept": len(kept), "dropped": dict(sorted(by_reason.items()))}
    return kept, dropped, {**counts, "funnel": pool.funnel, **stats}


# ---------------------------------------------------------------- reward model and LLM judge (herd.judge)


def rm_scorer(rm: Any, chat: Any, max_len: int) -> Scorer:
    """Scores each dialog's last assistant turn given the turns before it, with a RewardModel."""
    from herd.posttrain.reward import score

    def fn(rows: Sequence[Row]) -> list[float]:
        prompts, replies = [], []
        for row in rows:
            msgs = row["messages"]
            last = max(i for i, m in enumerate(msgs) if m["role"] == "assistant")
            prompt = chat.encode_prompt(msgs[:last])
            full = chat.encode_dialog(msgs[: last + 1])[0]
            reply = full[len(prompt) :][: max_len // 2]  # content + end token, as the RM was trained
            prompts.append(prompt[-(max_len - len(reply)) :])
            replies.append(reply)
        return score(rm, prompts, replies)

    return fn


def load_judge(cfg: PruneConfig) -> LMJudge | None:
    """The judge named by cfg.judge (herd.judge: model and its own tokenizer and chat format); None when off."""
    if not cfg.judge:
        return None
    return judge_model(
        cfg.judge,
        chars=cfg.judge_chars,
        rank_labels=cfg.judge_rank_labels,
        intent_max_new_tokens=cfg.intent_max_new_tokens,
        max_intentions=cfg.max_intentions,
    )
