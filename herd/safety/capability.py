"""Safety fine-tuning data as a post-training capability ("safety", Table 7 category "general") [P §5.4.3].

The paper's recipe, at toy scale:

- **SFT**: adversarial prompts get refusals, borderline prompts get helpful answers, so the model learns
  where the line is rather than to refuse everything; the balance between the two sets moves the VR–FRR
  trade-off [P §5.4.3]. Refusals are written here (`refusal`, one tone per hazard: supportive for
  self-harm, a pointer to a professional for specialised advice) unless the policy itself refuses;
  helpful answers are the policy's own non-refusing samples.
- **DPO**: (refusal ≻ compliance) on adversarial prompts and (helpful ≻ refusal) on borderline prompts,
  each pair chosen as the two responses FARTHEST apart in MiniLM embedding space: the paper found pairs
  that are nearly orthogonal in embedding space the most effective [P §5.4.3].

Only the TRAINING topics of the bundled prompt set are used (herd.safety.trained.split); `evaluate` scores
the held-out topics and Spanish, which no pipeline here ever trains on. Every policy sample is kept once
(the chosen response of its prompt) or dropped with a reason: `violation` (an adversarial prompt
answered), `false_refusal` (a borderline prompt refused), `degenerate`, `insecure_code:B…`, `not_selected`.
"""

from __future__ import annotations

import random
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from herd.posttrain.capabilities.base import Capability, CapabilityContext, Outputs, register, sample_replies
from herd.safety.llama_guard import LONG_NAMES
from herd.safety.metrics import is_refusal, rate
from herd.safety.prompts import load_prompt_set

# Refusal openings per language; each is matched by herd.safety.metrics.is_refusal (a test checks).
_DECLINE = {
    "en": "I can't help with that.",
    "de": "Ich kann dir dabei nicht helfen.",
    "fr": "Je ne peux pas t'aider avec ça.",
    "es": "No puedo ayudar con eso.",
}
_WHY = {
    "en": "It falls under {name}, which I won't assist with, however the request is framed.",
    "de": "Die Anfrage fällt unter {name}.",
    "fr": "La demande relève de la catégorie {name}.",
    "es": "La solicitud entra en la categoría {name}.",
}
# Tone per hazard [P §5.4.3: refusal tone guidelines]: no lecturing, an alternative where one exists.
_ALTERNATIVE = {
    "S6": "For a decision like this, please talk to a doctor or a licensed professional who knows your situation.",
    "S11": "I'm sorry you're going through this. You don't have to face it alone: please reach out to someone "
    "you trust or a local crisis line right now.",
    "S14": "I can run ordinary code for you, but not code meant to harm or escape the environment it runs in.",
}
_DEFAULT_ALTERNATIVE = "If you have a related question that stays within safe limits, I'm happy to help with that."


def refusal(category: str, language: str = "en") -> str:
    """The written refusal for an adversarial prompt of hazard `category` in `language` (en/de/fr/es)."""
    lang = language if language in _DECLINE else "en"
    why = _WHY[lang].format(name=LONG_NAMES[category].lower() if lang == "en" else LONG_NAMES[category])
    tail = _ALTERNATIVE.get(category, _DEFAULT_ALTERNATIVE) if lang == "en" else ""
    return " ".join(t for t in (_DECLINE[lang], why, tail) if t)


@dataclass
class SafetyCapabilityConfig:
    share: float = 1.0  # fraction of the training prompts used (a seeded subset of each set) [P §5.4.3]
    borderline_weight: int = 1  # copies of each borderline/helpful dialog: the adversarial/borderline balance
    k: int = 4  # policy samples per prompt
    temperature: float = 0.7
    max_new_tokens: int = 64
    min_chars: int = 20  # shorter answers are degenerate
    pairing: str = "far"  # "far" (the paper's choice), "near" or "random": DPO pair selection, for ablation
    batch: int = 8
    # evaluate: held-out adversarial prompts per category (every attack style in turn) and all borderline
    eval_per_category: int = 4
    eval_max_new_tokens: int = 40
    eval_helpful: bool = True  # also answer the 30 bundled helpfulness prompts (helpfulness after tuning)
    judge: str = "minilm"

    def __post_init__(self) -> None:
        if not 0.0 <= self.share <= 1.0:
            raise ValueError(f"capability.safety.share: {self.share} is not in [0, 1]")
        if self.pairing not in ("far", "near", "random"):
            raise ValueError(f"capability.safety.pairing: {self.pairing!r} is not one of far, near, random")


def training_prompts(share: float = 1.0, seed: int = 0) -> list[dict[str, Any]]:
    """The training split's adversarial, borderline and helpful prompts; `share` of each set, seeded."""
    from herd.safety.trained import split

    train = split(load_prompt_set())[0]
    rng = random.Random(seed)
    out = []
    for kind in ("adversarial", "borderline", "helpful"):
        rows = [r for r in train if r["set"] == kind]
        rng.shuffle(rows)
        out += sorted(rows[: round(share * len(rows))], key=lambda r: r["id"])
    return out


def cosine_matrix(a: Sequence[str], b: Sequence[str]) -> np.ndarray:
    """Cosine similarity of MiniLM embeddings, (len(a), len(b))."""
    from herd.safety.embed import embed

    return embed(list(a)) @ embed(list(b)).T


def pick_pair(
    chosen: Sequence[str], rejected: Sequence[str], pairing: str, rng: random.Random
) -> tuple[int, int, float]:
    """(i, j, cosine) of the pair: lowest cosine for "far", highest for "near", any for "random"."""
    sim = cosine_matrix(chosen, rejected)
    if pairing == "random":
        i, j = rng.randrange(len(chosen)), rng.randrange(len(rejected))
    else:
        flat = int(sim.argmin() if pairing == "far" else sim.argmax())
        i, j = divmod(flat, sim.shape[1])
    return i, j, float(sim[i, j])


def _problem(text: str, min_chars: int) -> str | None:
    """Why a sample cannot be a helpful answer: too short or insecure code."""
    from herd.safety.code_shield import code_snippets, insecure_code

    if len(text.strip()) < min_chars:
        return "degenerate"
    try:
        return insecure_code(list(code_snippets(text)))
    except FileNotFoundError:  # bandit / semgrep missing: Code Shield is part of the safety extra
        return None


@register
class SafetyCapability(Capability):
    name = "safety"
    category = "general"
    Config = SafetyCapabilityConfig

    def generate(self, ctx: CapabilityContext) -> Outputs:
        from herd.model import load_model

        cfg = self.config
        rows = training_prompts(cfg.share, ctx.seed)
        model = load_model(ctx.policy).eval()
        samples = sample_replies(
            model, ctx.chat, [r["messages"] for r in rows], cfg.k, cfg.max_new_tokens, cfg.temperature,
            seed=ctx.seed, batch=cfg.batch,
        )  # fmt: skip
        out, rng = Outputs(), random.Random(ctx.seed)
        for row, texts in zip(rows, samples, strict=True):
            build = self._adversarial if row["set"] == "adversarial" else self._helpful
            build(row, texts, out, rng)
        kinds = [r["set"] for r in rows]
        out.stats = {"prompts": {k: kinds.count(k) for k in ("adversarial", "borderline", "helpful")}}
        if out.prefs:
            out.stats["pair_cosine_mean"] = float(np.mean([p["cosine"] for p in out.prefs]))
        return out

    def _adversarial(self, row: Mapping[str, Any], texts: Sequence[str], out: Outputs, rng: random.Random) -> None:
        """Refusal as the SFT target (the policy's own if it refused); its compliant samples are dropped and
        become the rejected side of a (refusal ≻ compliance) pair."""
        base = {"messages": row["messages"], "prompt_id": row["id"], "set": row["set"]}
        written = refusal(row["category"], row["language"])
        refusals = [t for t in texts if is_refusal(t)] + [written]
        complied = [t for t in texts if not is_refusal(t)]
        for t in complied:
            out.drop({**base, "response": t}, "violation")
        if complied:
            i, j, cos = pick_pair(refusals, complied, self.config.pairing, rng)
            out.prefs.append(self._pair(row, refusals[i], complied[j], cos))
        target = refusals[0]  # the policy's first refusal, else the written one
        out.kept.append(self._dialog(row, target, "policy" if target != written else "written_refusal"))
        for t in refusals[1:-1]:
            out.drop({**base, "response": t}, "not_selected")

    def _helpful(self, row: Mapping[str, Any], texts: Sequence[str], out: Outputs, rng: random.Random) -> None:
        """The policy's first usable non-refusal as the SFT target; (helpful ≻ refusal) pairs for borderline."""
        base = {"messages": row["messages"], "prompt_id": row["id"], "set": row["set"]}
        usable = []
        for t in texts:
            reason = "false_refusal" if is_refusal(t) else _problem(t, self.config.min_chars)
            out.drop({**base, "response": t}, reason) if reason else usable.append(t)
        if not usable:
            return
        for _ in range(self.config.borderline_weight if row["set"] == "borderline" else 1):
            out.kept.append(self._dialog(row, usable[0], "policy"))
        for t in usable[1:]:
            out.drop({**base, "response": t}, "not_selected")
        if row["set"] == "borderline":
            refusals = [t for t in texts if is_refusal(t)] + [refusal(row["category"], row["language"])]
            i, j, cos = pick_pair(usable, refusals, self.config.pairing, rng)
            out.prefs.append(self._pair(row, usable[i], refusals[j], cos))

    @staticmethod
    def _dialog(row: Mapping[str, Any], reply: str, origin: str) -> dict[str, Any]:
        messages = [*row["messages"], {"role": "assistant", "content": reply}]
        return {"messages": messages, "source": f"safety-{row['set']}", "prompt_id": row["id"], "origin": origin}

    @staticmethod
    def _pair(row: Mapping[str, Any], chosen: str, rejected: str, cos: float) -> dict[str, Any]:
        return {
            "prompt": row["messages"], "chosen": chosen, "rejected": rejected, "strength": "significantly_better",
            "source": f"safety-{row['set']}", "prompt_id": row["id"], "cosine": round(cos, 4),
        }  # fmt: skip

    def evaluate(self, model_dir: Path, ctx: CapabilityContext) -> dict[str, Any]:
        """VR on held-out adversarial prompts (`value`) and FRR on held-out borderline prompts, ± 95% CI."""
        return evaluate_vr_frr(model_dir, ctx.chat, self.config)


def eval_prompts(per_category: int) -> list[dict[str, Any]]:
    """Held-out topics and languages only: `per_category` adversarial prompts each and every borderline one."""
    from herd.safety.stage import select
    from herd.safety.trained import split

    return select(split(load_prompt_set())[1], per_category)


def evaluate_vr_frr(model_dir: Path, chat: Any, cfg: SafetyCapabilityConfig) -> dict[str, Any]:
    """Greedy replies judged as the safety stage does (judge guard for VR, refusal detector for FRR)."""
    from herd.model import load_model
    from herd.safety.guarded import load_guard
    from herd.safety.stage import judge_rows, summarise

    rows = eval_prompts(cfg.eval_per_category)
    helpful = [r for r in load_prompt_set() if r["set"] == "helpful"] if cfg.eval_helpful else []
    model = load_model(model_dir).eval()
    prompts = [r["messages"] for r in [*rows, *helpful]]
    texts = sample_replies(model, chat, prompts, 1, cfg.eval_max_new_tokens, batch=cfg.batch)
    finals = [{"role": "assistant", "content": t[0]} for t in texts[: len(rows)]]
    m = summarise(rows, *judge_rows(rows, finals, load_guard(cfg.judge)))
    vr, frr = m["vr"]["all"], m["frr"]["all"]
    # Helpfulness proxy: a helpfulness prompt counts as answered when the reply is neither a refusal nor
    # degenerate (_problem: too short, insecure code). No reward model judges quality here.
    answered = rate([_problem(t[0], cfg.min_chars) is None and not is_refusal(t[0]) for t in texts[len(rows) :]])
    return {
        "helpful_answered": answered["rate"], "helpful_ci95": answered["ci95"], "helpful_n": answered["n"],
        "metric": "violation_rate", "value": vr["rate"], "ci95": vr["ci95"], "n": vr["n"],
        "frr": frr["rate"], "frr_ci95": frr["ci95"], "frr_n": frr["n"],
        "vr_by_category": {k: v["rate"] for k, v in m["vr"]["category"].items()},
        "frr_by_category": {k: v["rate"] for k, v in m["frr"]["category"].items()},
        "vr_by_language": {k: v["rate"] for k, v in m["vr"]["language"].items()},
    }  # fmt: skip
