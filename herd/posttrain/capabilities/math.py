"""Math and reasoning data with checked answers and checked steps [P §4.3.3].

For each generated problem (herd.posttrain.capabilities.math_problems) the policy writes K reasoning
traces. A trace is kept only when

  1. it states a final answer (dropped: no_answer) that equals the sympy answer (dropped: wrong_answer),
  2. every equation it writes holds (dropped: bad_step, by "check"), and the step-wise reward model,
     trained on this round's step-labelled traces, gives none of its steps a low score (bad_step, by "rm"),
  3. it is not a copy of a trace already kept for the problem (dropped: duplicate).

Answer-checked preference pairs (a kept trace over a wrong one for the same problem, built with
herd.posttrain.rejection.verified_pair) go to prefs.jsonl for RM/DPO. The evaluation is GSM8K-style:
greedy answers to held-out generated problems (a fixed seed, never in the training problems), exact
match with a 95% CI; herd's GSM8K task can be added with `gsm8k_items`.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import sympy

from herd.core.logging import get_logger
from herd.eval.extract import extract_number
from herd.eval.stats import ci95, mean
from herd.posttrain.capabilities.base import Capability, CapabilityContext, Outputs, register, sample_replies
from herd.posttrain.capabilities.math_problems import KINDS, Problem, answers_match, make_problems
from herd.posttrain.capabilities.math_steps import StepRewardModel, label_steps, step_features
from herd.posttrain.data import preference_row
from herd.posttrain.rejection import verified_pair

log = get_logger(__name__)
EVAL_SEED = 104729  # the held-out problems: one fixed set for every round and seed
INSTRUCTION = (
    "\nSolve the problem step by step. Write each calculation on its own line as an equation. "
    "Finish with the line: The answer is <number>."
)
Sampler = Callable[..., list[list[str]]]


@dataclass
class MathConfig:
    problems: int = 48  # generated training problems per round
    kinds: list[str] = field(default_factory=lambda: list(KINDS))
    k: int = 4  # traces per problem
    max_new_tokens: int = 160
    temperature: float = 0.8
    top_p: float = 0.95
    step_rm: bool = True  # train the step-wise reward model and filter with it
    step_threshold: float = 0.2  # a trace is dropped when one of its steps scores below this
    step_rm_min: int = 20  # labelled steps needed to train the step RM (fewer: no RM filter this round)
    max_per_problem: int = 2  # kept traces per problem
    eval_items: int = 60  # held-out generated problems
    eval_max_new_tokens: int = 160
    gsm8k_items: int = 0  # herd's GSM8K task (8-shot CoT) subset, 0 = off: slow on CPU, ~0 for a 135M model


def prompt_of(problem: Problem) -> list[dict[str, str]]:
    return [{"role": "user", "content": problem["question"] + INSTRUCTION}]


def final_answer(trace: str) -> str | None:
    """The stated answer ('The answer is N', '#### N', else the last number), as GSM8K is scored."""
    return extract_number(trace)


def eval_problems(cfg: MathConfig) -> list[Problem]:
    return make_problems(cfg.eval_items, cfg.kinds, EVAL_SEED)


@register
class MathCapability(Capability):
    name = "math"
    category = "reasoning_tools"
    Config = MathConfig

    sampler: Sampler = staticmethod(sample_replies)  # tests plant a scripted generator here

    def generate(self, ctx: CapabilityContext) -> Outputs:
        from herd.model import load_model

        cfg: MathConfig = self.config
        held = {p["question"] for p in eval_problems(cfg)}
        problems = make_problems(cfg.problems, cfg.kinds, ctx.seed * 1000 + ctx.round, exclude=held)
        model = load_model(ctx.policy).eval()
        traces = self.sampler(
            model,
            ctx.chat,
            [prompt_of(p) for p in problems],
            k=cfg.k,
            max_new_tokens=cfg.max_new_tokens,
            temperature=cfg.temperature,
            top_p=cfg.top_p,
            seed=ctx.seed,
        )
        return self.check(problems, traces, model, ctx.chat)

    def check(self, problems: Sequence[Problem], traces: Sequence[Sequence[str]], model: Any, chat: Any) -> Outputs:
        """Sort every trace into kept or dropped-with-reason, train the step RM, build verified pairs."""
        cfg: MathConfig = self.config
        out = Outputs()
        labelled = [[label_steps(t, sympy.Rational(p["answer"])) for t in ts] for p, ts in zip(problems, traces)]
        rm, rm_stats = self._step_rm(problems, traces, labelled, model, chat)
        out.stats.update(rm_stats)
        for p, ts, steps in zip(problems, traces, labelled):
            kept_texts: list[str] = []
            wrong_texts: list[str] = []
            for t, st in zip(ts, steps):
                row = {
                    "messages": [*prompt_of(p), {"role": "assistant", "content": t}],
                    "source": "math",
                    "problem_id": p["id"],
                    "kind": p["kind"],
                    "answer": p["answer"],
                }
                reason, detail = self._reject(p, t, st, rm, model, chat, kept_texts)
                if reason is None:
                    out.kept.append(row)
                    kept_texts.append(t)
                else:
                    out.drop(row, reason, **detail)
                    wrong_texts += [t] if reason in ("wrong_answer", "no_answer") else []
            pair = self._pair(p, kept_texts, wrong_texts)
            if pair is not None:
                out.prefs.append(pair)
        solved = sum(any(r["problem_id"] == p["id"] for r in out.kept) for p in problems)
        out.stats.update({"problems": len(problems), "k": cfg.k, "problems_with_a_kept_trace": solved})
        return out

    def _reject(
        self,
        p: Problem,
        trace: str,
        steps: list[Any],
        rm: StepRewardModel | None,
        model: Any,
        chat: Any,
        kept: list[str],
    ) -> tuple[str | None, dict[str, Any]]:
        pred = final_answer(trace)
        if pred is None:
            return "no_answer", {}
        if not answers_match(pred, p["answer"]):
            return "wrong_answer", {"pred": pred}
        bad = [s.text for s in steps if s.label == 0]
        if bad:
            return "bad_step", {"by": "check", "step": bad[0]}
        if rm is not None and steps:
            scores = rm.score(step_features(model, chat, prompt_of(p), trace, [s.end for s in steps]))
            worst = min(range(len(scores)), key=scores.__getitem__)
            if scores[worst] < self.config.step_threshold:
                return "bad_step", {"by": "rm", "step": steps[worst].text, "score": round(scores[worst], 4)}
        if trace.strip() in {k.strip() for k in kept}:
            return "duplicate", {}
        if len(kept) >= self.config.max_per_problem:
            return "enough_for_problem", {}
        return None, {}

    def _step_rm(
        self,
        problems: Sequence[Problem],
        traces: Sequence[Sequence[str]],
        labelled: list[list[list[Any]]],
        model: Any,
        chat: Any,
    ) -> tuple[StepRewardModel | None, dict[str, Any]]:
        """Fit the step RM on 80% of the problems' labelled steps; report its agreement with sympy on the rest."""
        cfg: MathConfig = self.config
        if not cfg.step_rm:
            return None, {"step_rm": "off"}
        order = list(range(len(problems)))
        random.Random(0).shuffle(order)
        test_ids = set(order[: max(1, len(order) // 5)])
        parts: dict[bool, tuple[list[Any], list[int]]] = {True: ([], []), False: ([], [])}
        for i, (p, ts, steps) in enumerate(zip(problems, traces, labelled)):
            for t, st in zip(ts, steps):
                lab = [s for s in st if s.label is not None]
                if lab:
                    parts[i in test_ids][0].append(step_features(model, chat, prompt_of(p), t, [s.end for s in lab]))
                    parts[i in test_ids][1].extend(s.label for s in lab)
        import torch

        (xtr, ytr), (xte, yte) = parts[False], parts[True]
        stats: dict[str, Any] = {"step_labels": len(ytr) + len(yte), "step_labels_correct": sum(ytr) + sum(yte)}
        if len(ytr) < cfg.step_rm_min or len(set(ytr)) < 2:
            return None, {**stats, "step_rm": f"skipped: {len(ytr)} training steps, labels {sorted(set(ytr))}"}
        rm = StepRewardModel(seed=0).fit(torch.cat(xtr), ytr)
        if yte:
            pred = [int(s >= 0.5) for s in rm.score(torch.cat(xte))]
            acc = mean([float(a == b) for a, b in zip(pred, yte)])
            stats.update(step_rm_heldout_acc=acc, step_rm_heldout_ci95=ci95(acc, len(yte)), step_rm_heldout_n=len(yte))
            stats["step_rm_heldout_majority"] = max(mean([float(y) for y in yte]), 1 - mean([float(y) for y in yte]))
        return rm, {**stats, "step_rm": "trained", "step_rm_train_n": len(ytr)}

    @staticmethod
    def _pair(p: Problem, kept: list[str], wrong: list[str]) -> dict[str, Any] | None:
        try:
            answer = int(p["answer"])
        except ValueError:
            return None  # verified_pair compares whole numbers
        # Kept traces first, so the chosen one passed every check, not only the last-number test.
        pref = verified_pair({"prompt": prompt_of(p), "answer": answer}, [*kept, *wrong]) if kept and wrong else None
        return None if pref is None else {**preference_row(pref), "source": "math-verified", "problem_id": p["id"]}

    def evaluate(self, model_dir: Path, ctx: CapabilityContext) -> dict[str, Any]:
        """Exact match of the stated answer on the held-out generated problems (greedy), with a 95% CI."""
        from herd.model import load_model

        cfg: MathConfig = self.config
        problems = eval_problems(cfg)
        model = load_model(model_dir).eval()
        outs = self.sampler(
            model,
            ctx.chat,
            [prompt_of(p) for p in problems],
            k=1,
            max_new_tokens=cfg.eval_max_new_tokens,
            seed=ctx.seed,
        )
        correct = [float(answers_match(final_answer(o[0]), p["answer"])) for p, o in zip(problems, outs)]
        by_kind = {k: mean([c for c, p in zip(correct, problems) if p["kind"] == k]) for k in cfg.kinds}
        acc = mean(correct)
        result = {
            "metric": "generated_math_em",
            "value": acc,
            "ci95": ci95(acc, len(correct)),
            "n": len(correct),
            "by_kind": by_kind,
            "eval_seed": EVAL_SEED,
        }
        if cfg.gsm8k_items:
            result["gsm8k"] = gsm8k(model, ctx.chat.tokenizer, cfg.gsm8k_items)
        return result


def gsm8k(model: Any, tokenizer: Any, items: int) -> dict[str, Any]:
    """herd's GSM8K task (8-shot CoT, exact match) on its first `items` problems. The scorer is built from
    the loaded model and the run's tokenizer: a fine-tuned folder holds weights only, no tokenizer."""
    from herd.eval import HerdScorer, evaluate_gen, load_task

    r = evaluate_gen(load_task("gsm8k"), HerdScorer(model, tokenizer, name="capability"), limit=items)
    return {"metric": "gsm8k_em", "value": r.score, "ci95": r.ci, "n": r.n, "seconds": round(r.seconds, 1)}
