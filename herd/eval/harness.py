"""Score a task with a Scorer: multiple choice by log-likelihood, generation by extracted answer, code by
running tests in the sandbox. Every score carries the paper's 95% CI, 1.96·√(S(1−S)/N) [P §5]."""

from __future__ import annotations

import math
import time
from collections import defaultdict
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from typing import Any

from herd.eval.extract import extract, is_correct
from herd.eval.prompts import mc_requests, pick_shots
from herd.eval.sandbox import Limits, run_python
from herd.eval.scorer import Scorer
from herd.eval.stats import ci95, ci95_mean, mean, pass_at_k
from herd.eval.tasks import BPBExample, CodeExample, GenExample, MCExample, Task


@dataclass
class TaskResult:
    task: str
    metric: str
    score: float
    n: int
    metrics: dict[str, float] = field(default_factory=dict)
    records: list[dict[str, Any]] = field(default_factory=list)
    settings: dict[str, Any] = field(default_factory=dict)
    seconds: float = 0.0
    # CIs of metrics that are means of non-binary per-example values (F1, bits per byte), from their spread;
    # a metric not here is a proportion and gets 1.96·√(S(1−S)/N).
    cis: dict[str, float] = field(default_factory=dict)

    @property
    def ci(self) -> float:
        return self.metric_ci(self.metric)

    def metric_ci(self, name: str) -> float:
        return self.cis[name] if name in self.cis else ci95(self.metrics.get(name, self.score), self.n)

    def summary(self) -> dict[str, Any]:
        """Everything but the per-example records, with a CI next to every metric."""
        out = {k: v for k, v in asdict(self).items() if k not in ("records", "cis")}
        out["ci95"] = self.ci
        out["metrics_ci95"] = {
            k: self.metric_ci(k) for k, v in self.metrics.items() if k in self.cis or 0.0 <= v <= 1.0
        }
        return out


def subset(examples: Sequence[Any], limit: int | None) -> list[Any]:
    """The first `limit` examples (a fixed, reproducible subset)."""
    return list(examples if not limit or limit >= len(examples) else examples[:limit])


# ------------------------------------------------------------------------------------------------ multiple choice


def evaluate_mc(
    task: Task,
    scorer: Scorer,
    shots: int = 0,
    mode: str | None = None,
    limit: int | None = None,
    seed: int = 1234,
    variant: str = "A.",
    fmt: str = "plain",
    examples: Sequence[MCExample] | None = None,
    shot_examples: Sequence[Sequence[MCExample]] | None = None,
) -> TaskResult:
    """Log-likelihood multiple choice. Cloze: acc (raw log-likelihood) and acc_norm (divided by the answer's
    character length, as lm-eval); letter: the log-likelihood of each answer label [LM eval_details].

    `examples`/`shot_examples` override the task's (the robustness suite passes permuted copies)."""
    start = time.perf_counter()
    mode = mode or task.mode
    exs = list(examples) if examples is not None else subset(task.examples, limit)
    pool = task.fewshot or task.examples
    requests: list[tuple[str, str]] = []
    spans = []
    for i, ex in enumerate(exs):
        picked = shot_examples[i] if shot_examples is not None else pick_shots(pool, ex, shots, seed)
        desc = task.description.format(group=ex.group.replace("_", " ")) if task.description else ""
        reqs = mc_requests(ex, picked, mode, variant, fmt, desc)
        spans.append((len(requests), len(reqs)))
        requests.extend(reqs)
    results = scorer.loglikelihood(requests)
    records = [_mc_record(ex, results[s : s + k], mode) for ex, (s, k) in zip(exs, spans)]
    metrics = {"acc": mean([r["correct"] for r in records])}
    if mode == "cloze":
        metrics["acc_norm"] = mean([r["correct_norm"] for r in records])
    if any(ex.group for ex in exs):
        metrics["acc_macro"] = _macro(records, "correct")  # MMLU: the mean over subjects [LM eval_details]
    metric = task.metric if task.metric in metrics else "acc"
    settings = {"shots": shots, "mode": mode, "seed": seed, "variant": variant, "format": fmt, "limit": limit}
    seconds = time.perf_counter() - start
    return TaskResult(task.name, metric, metrics[metric], len(records), metrics, records, settings, seconds)


def _mc_record(ex: MCExample, results: Sequence[tuple[float, bool]], mode: str) -> dict[str, Any]:
    lls = [lp for lp, _ in results]
    pred = max(range(len(lls)), key=lambda i: lls[i])
    rec: dict[str, Any] = {"id": ex.id, "gold": ex.gold, "pred": pred, "correct": float(pred == ex.gold), "lls": lls}
    if mode == "cloze":
        norm = [lp / max(len(c), 1) for lp, c in zip(lls, ex.choices)]
        rec["pred_norm"] = max(range(len(norm)), key=lambda i: norm[i])
        rec["correct_norm"] = float(rec["pred_norm"] == ex.gold)
    if ex.group:
        rec["group"] = ex.group
    return rec


def _macro(records: Sequence[dict[str, Any]], key: str) -> float:
    by: dict[str, list[float]] = defaultdict(list)
    for r in records:
        by[r.get("group", "")].append(r[key])
    return mean([mean(v) for v in by.values()])


# ------------------------------------------------------------------------------------------------ generation


def gen_prompt(task: Task, ex: GenExample, shots: Sequence[GenExample]) -> str:
    """Description (lm-eval's), fixed prefix (e.g. GSM8K's CoT exemplars), answered shots, then the question."""
    return task.description + task.prefix + "".join(f"{s.prompt} {s.answer}\n\n" for s in shots) + ex.prompt


def evaluate_gen(
    task: Task,
    scorer: Scorer,
    shots: int = 0,
    limit: int | None = None,
    seed: int = 1234,
    max_new_tokens: int | None = None,
) -> TaskResult:
    """Greedy generation; the answer is extracted (CoT "The answer is", number, \\boxed{}, regex) and
    compared exactly (after normalization)."""
    import random

    start = time.perf_counter()
    exs = subset(task.examples, limit)
    pool = task.fewshot or task.examples
    prompts = []
    for ex in exs:
        rng = random.Random(f"{seed}:{ex.id}")
        cand = [p for p in pool if p.id != ex.id]
        prompts.append(gen_prompt(task, ex, rng.sample(cand, min(shots, len(cand))) if shots else []))
    outs = scorer.generate(prompts, max_new_tokens=max_new_tokens or task.max_new_tokens, stop=task.stop)
    records = [_gen_record(task, ex, out) for ex, out in zip(exs, outs)]
    names = list(records[0]["scores"]) if records else ["em"]
    metrics = {k: mean([r["scores"][k] for r in records]) for k in names}
    cis = {k: ci95_mean([r["scores"][k] for r in records]) for k in names if k != "em"}
    metric = task.metric if task.metric in metrics else "em"
    settings = {"shots": shots, "seed": seed, "extract": task.scoring or task.extract, "limit": limit}
    seconds = time.perf_counter() - start
    return TaskResult(task.name, metric, metrics[metric], len(records), metrics, records, settings, seconds, cis)


def _gen_record(task: Task, ex: GenExample, out: str) -> dict[str, Any]:
    """Scores of one generation: the task's QA metric (qa_metrics.SCORING), or extract-and-compare (em)."""
    if task.scoring:
        from herd.eval.qa_metrics import SCORING

        if task.scoring not in SCORING:
            raise ValueError(f"task {task.name}: unknown scoring {task.scoring!r} (known: {', '.join(SCORING)})")
        scores = SCORING[task.scoring](out, ex.golds())
        pred: str | None = out.strip()
    else:
        pred = extract(out, task.extract)
        scores = {"em": float(is_correct(pred, ex.answer, task.extract))}
    head = scores.get(task.metric, scores["em"])
    return {"id": ex.id, "gold": ex.answer, "pred": pred, "correct": head, "scores": scores, "output": out}


# ------------------------------------------------------------------------------------------------ code


def code_from_output(text: str) -> str:
    """A completion as generated; a fenced block (chat models) is unwrapped."""
    if "```" in text:
        body = text.split("```", 2)[1]
        return body.split("\n", 1)[1] if body.startswith(("python", "py\n", "\n")) else body
    return text


def evaluate_code(
    task: Task,
    scorer: Scorer | None,
    limit: int | None = None,
    samples: int = 1,
    ks: Sequence[int] = (1,),
    temperature: float = 0.0,
    limits: Limits | None = None,
    workers: int = 2,
    completions: Sequence[Sequence[str]] | None = None,
) -> TaskResult:
    """pass@k: `samples` completions per problem, each run with the tests in the sandbox.

    `completions` (one list per example) skips generation: e.g. the canonical solutions."""
    start = time.perf_counter()
    exs: list[CodeExample] = subset(task.examples, limit)
    if completions is None:
        if scorer is None:
            raise ValueError("evaluate_code needs a scorer or completions")
        completions = _sample_code(task, scorer, exs, samples, temperature)
    jobs = [(i, ex.program(code_from_output(c))) for i, ex in enumerate(exs) for c in completions[i]]
    with ThreadPoolExecutor(max(1, workers)) as pool:
        results = list(pool.map(lambda job: run_python(job[1], limits or Limits()), jobs))
    per: dict[int, list[Any]] = defaultdict(list)
    for (i, _), r in zip(jobs, results):
        per[i].append(r)
    records, metrics = [], {}
    for i, ex in enumerate(exs):
        rs = per[i]
        records.append(
            {
                "id": ex.id,
                "passed": sum(r.passed for r in rs),
                "n": len(rs),
                "status": [r.status for r in rs],
                "completion": completions[i][0] if completions[i] else "",
            }
        )
    n_per = min(len(completions[i]) for i in range(len(exs))) if exs else 0
    for k in ks:
        if k <= n_per:
            metrics[f"pass@{k}"] = mean([pass_at_k(r["n"], r["passed"], k) for r in records])
    metric = task.metric if task.metric in metrics else "pass@1"
    settings = {"samples": samples, "temperature": temperature, "limit": limit, "cpu_s": (limits or Limits()).cpu_s}
    seconds = time.perf_counter() - start
    return TaskResult(task.name, metric, metrics[metric], len(records), metrics, records, settings, seconds)


def _sample_code(
    task: Task, scorer: Scorer, exs: Sequence[CodeExample], samples: int, temperature: float
) -> list[list[str]]:
    prompts = [ex.prompt for ex in exs]
    outs: list[list[str]] = [[] for _ in exs]
    for s in range(samples):
        temp = temperature if samples > 1 else 0.0
        texts = scorer.generate(prompts, max_new_tokens=task.max_new_tokens, stop=task.stop, temperature=temp, seed=s)
        for i, t in enumerate(texts):
            outs[i].append(t)
    return outs


# ------------------------------------------------------------------------------------------------ bits per byte


def evaluate_bpb(task: Task, scorer: Scorer, limit: int | None = None) -> TaskResult:
    """Bits per byte of each gold continuation given its context, −log₂ P(continuation) / UTF-8 bytes (lower is
    better), averaged over examples (OLMo's gold-bpb metric)."""
    start = time.perf_counter()
    exs: list[BPBExample] = subset(task.examples, limit)
    results = scorer.loglikelihood([(ex.context, ex.continuation) for ex in exs])
    records = []
    for ex, (lp, _) in zip(exs, results):
        n_bytes = len(ex.continuation.encode("utf-8"))
        records.append({"id": ex.id, "logprob": lp, "bytes": n_bytes, "bpb": -lp / math.log(2) / n_bytes})
    values = [r["bpb"] for r in records]
    bpb, ci = mean(values), ci95_mean(values)
    seconds = time.perf_counter() - start
    settings = {"limit": limit}
    return TaskResult(task.name, "bpb", bpb, len(records), {"bpb": bpb}, records, settings, seconds, {"bpb": ci})


def evaluate(task: Task, scorer: Scorer, **kwargs: Any) -> TaskResult:
    """Dispatch on the task's kind."""
    if task.kind == "mc":
        return evaluate_mc(task, scorer, **kwargs)
    if task.kind == "gen":
        return evaluate_gen(task, scorer, **kwargs)
    if task.kind == "bpb":
        return evaluate_bpb(task, scorer, **kwargs)
    return evaluate_code(task, scorer, **kwargs)
