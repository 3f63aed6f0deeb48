"""The eval stage: model + tasks (+ robustness, + contamination) → results.json, results.md/.html, samples.

out/
  config.resolved.toml  results.json  results.md  results.html  MANIFEST.json
  samples/<task>.jsonl   per-example records (predictions, log-likelihoods, outputs)
  robustness.png         when [robustness] is enabled
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

import torch

from herd.core.config import save_resolved
from herd.core.logging import get_logger
from herd.core.stage import Stage, run_stage
from herd.eval.config import ContaminationSpec, EvalConfig, TaskSpec
from herd.eval.harness import TaskResult, evaluate_bpb, evaluate_code, evaluate_gen, evaluate_mc
from herd.eval.report import results_table, write_json, write_records, write_report
from herd.eval.sandbox import Limits
from herd.eval.scorer import Scorer, load_scorer
from herd.eval.tasks import Task, load_task

log = get_logger(__name__)


def run_task(spec: TaskSpec, task: Task, scorer: Scorer, cfg: EvalConfig) -> TaskResult:
    if task.kind == "mc":
        return evaluate_mc(task, scorer, shots=spec.shots, mode=spec.mode, limit=spec.limit, seed=cfg.seed)
    if task.kind == "gen":
        return evaluate_gen(task, scorer, spec.shots, spec.limit, cfg.seed, spec.max_new_tokens)
    if task.kind == "bpb":
        return evaluate_bpb(task, scorer, spec.limit)
    sb = cfg.sandbox
    limits = Limits(cpu_s=sb.cpu_s, wall_s=sb.wall_s, memory_mb=sb.memory_mb)
    if spec.max_new_tokens:
        task.max_new_tokens = spec.max_new_tokens
    return evaluate_code(
        task, scorer, spec.limit, spec.samples, tuple(spec.k), spec.temperature, limits, workers=sb.workers
    )


@dataclass
class EvalStage(Stage):
    """Evaluation as a stage: a model (+ the pretraining shards, for contamination) → results."""

    name: ClassVar[str] = "eval"
    config: EvalConfig

    @property
    def out(self) -> Path:
        return Path(self.config.out)

    def inputs(self) -> list[Path]:
        c = self.config
        return [p for p in (Path(c.model.path), Path(c.contamination.shards or "-")) if p.exists()]

    def run(self, workdir: Path) -> dict[str, Any]:
        data = evaluate(self.config, workdir)
        # N per task, then the scores with CIs, robustness and contamination: the record the run report renders.
        figures = {"robustness.png": f"Robustness ({data['model']})"} if (workdir / "robustness.png").is_file() else {}
        return {r["task"]: r["n"] for r in data["results"]} | data | {"report": {"figures": figures}}


def run_eval(cfg: EvalConfig) -> dict[str, Any]:
    """Run the eval stage (skipped when its folder is finished); return the results.json content."""
    run_stage(EvalStage(cfg))
    return json.loads((Path(cfg.out) / "results.json").read_text())


@contextlib.contextmanager
def torch_threads(n: int) -> Iterator[None]:
    """torch's intra-op threads set to `n` (0: unchanged) for the block, restored after (the recipe evaluates
    in the same process as other stages)."""
    before = torch.get_num_threads()
    if n:
        torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def evaluate(cfg: EvalConfig, out: Path) -> dict[str, Any]:
    """Run everything the config asks for and write the reports into `out`; return results.json's content."""
    with torch_threads(cfg.threads):
        return _evaluate(cfg, out)


def _evaluate(cfg: EvalConfig, out: Path) -> dict[str, Any]:
    (out / "samples").mkdir(parents=True, exist_ok=True)
    save_resolved(cfg, out)
    m = cfg.model
    scorer = load_scorer(m.path, m.backend, m.tokenizer, m.device, m.dtype, m.batch_tokens, m.add_bos)
    results, tasks = [], {}
    for spec in cfg.tasks:
        task = load_task(spec.name, spec.path, spec.kind)
        log.info("eval %s: %d examples", task.name, min(len(task.examples), spec.limit or len(task.examples)))
        res = run_task(spec, task, scorer, cfg)
        log.info("%s %s = %.1f ± %.1f (N=%d)", res.task, res.metric, 100 * res.score, 100 * res.ci, res.n)
        write_records(out / "samples" / f"{res.task}.jsonl", res.records)
        results.append(res)
        tasks[res.task] = task
    sections = [("Benchmarks", results_table(results, scorer.name))] if results else []
    data: dict[str, Any] = {"model": scorer.name, "results": [r.summary() for r in results]}
    images: list[Path] = []
    if cfg.robustness.enabled:
        data["robustness"], md, png = _robustness(cfg, scorer, out)
        sections.append(("Robustness", md))
        images.append(png)
    if cfg.contamination.enabled:
        data["contamination"], md = _contamination(cfg.contamination, out, results, tasks)
        sections.append(("Contamination", md))
    write_json(out / "results.json", data)
    write_report(out, sections, images)
    return data


def _robustness(cfg: EvalConfig, scorer: Scorer, out: Path) -> tuple[list[dict], str, Path]:
    from herd.eval import robustness

    r = cfg.robustness
    task = load_task(r.task)
    rows = robustness.run_robustness(task, scorer, limit=r.limit, shots=r.shots, seed=cfg.seed)
    md = robustness.table(rows, scorer.name)
    png = robustness.plot(rows, out / "robustness.png", f"Robustness on {task.name} ({scorer.name}, N={rows[0].n})")
    return robustness.rows_to_json(rows), md, png


def _contamination(
    spec: ContaminationSpec, out: Path, results: list[TaskResult], tasks: dict[str, Task]
) -> tuple[list[dict], str]:
    from herd.eval import contamination as ct
    from herd.tokenizer import load_tokenizer

    if not spec.shards:
        raise ValueError("contamination.shards: set the folder of pretraining token shards")
    index_dir = Path(spec.index) if spec.index else out / "ngram-index"
    if not (index_dir / "ngrams.u64").is_file():
        log.info("building the 8-gram index of %s into %s", spec.shards, index_dir)
        log.info("index: %s", ct.build_index(spec.shards, index_dir))
    index = ct.NgramIndex(index_dir)
    tok = load_tokenizer(spec.tokenizer)
    rows = []
    for res in results:
        task = tasks[res.task]
        exs = task.examples[: res.n]
        correct = [_correct(rec) for rec in res.records]
        cov = [index.coverage(tok.encode(ex.text())) for ex in exs]
        rows.append(ct.choose_threshold(res.task, cov, correct, report_at=spec.report_threshold))
    return ct.rows_to_json(rows), ct.table(rows)


def _correct(record: dict[str, Any]) -> float:
    if "correct" in record:
        return float(record["correct"])
    return float(record.get("passed", 0) > 0)
