"""herd.eval: benchmarks scored with 95% CIs, a code sandbox, robustness, contamination, an lm-eval adapter.

    from herd.eval import load_scorer, load_task, evaluate
    scorer = load_scorer("smollm2")                      # or backend="hf" for transformers
    result = evaluate(load_task("arc_easy"), scorer, limit=100)
    print(result.metric, result.score, "±", result.ci)

`herd.eval.lm_eval_adapter.HerdLM` (imports lm_eval) lets lm-evaluation-harness run herd models.
"""

from herd.eval.harness import TaskResult, evaluate, evaluate_code, evaluate_gen, evaluate_mc
from herd.eval.sandbox import Limits, SandboxResult, run_python
from herd.eval.scorer import HerdScorer, HFScorer, Scorer, load_scorer
from herd.eval.stats import ci95, pass_at_k
from herd.eval.tasks import CodeExample, GenExample, MCExample, Task, load_jsonl_task, load_task

__all__ = [
    "CodeExample",
    "GenExample",
    "HFScorer",
    "HerdScorer",
    "Limits",
    "MCExample",
    "SandboxResult",
    "Scorer",
    "Task",
    "TaskResult",
    "ci95",
    "evaluate",
    "evaluate_code",
    "evaluate_gen",
    "evaluate_mc",
    "load_jsonl_task",
    "load_scorer",
    "load_task",
    "pass_at_k",
    "run_python",
]
