"""lm-eval's `local-completions` backend scores a model through `herd serve` (echo + logprobs, the server's
own tokenizer over /tokenize) with the log-likelihoods herd's in-process adapter gives."""

import os

import pytest
from unit.serve.tiny import running_server

from herd.eval.lm_eval_tasks import export_mc_task
from herd.eval.tasks import MCExample, Task

lm_eval = pytest.importorskip("lm_eval")


def _loglikelihoods(out: dict, task: str) -> list[float]:
    """Every choice's log-likelihood, document by document (in id order)."""
    docs = sorted(out["samples"][task], key=lambda s: s["doc_id"])
    return [float(r[0][0]) for d in docs for r in d["resps"]]


def test_local_completions_through_herd_serve_matches_the_in_process_adapter(tiny, tmp_path) -> None:
    from lm_eval.models.openai_completions import LocalCompletionsAPI
    from lm_eval.tasks import TaskManager

    from herd.eval.lm_eval_adapter import HerdLM
    from herd.eval.scorer import HerdScorer

    os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
    model, tok = tiny
    exs = [
        MCExample(str(i), f"Question: what follows {i}?\nAnswer:", [f" {i + 1}", f" {i + 2}", " x"], 0)
        for i in range(5)
    ]
    task = export_mc_task(Task("served_mc", "mc", exs), tmp_path)
    manager = TaskManager(include_path=str(tmp_path))
    # lm-eval's remote tokenizer adds no BOS: score the same token ids in process.
    local = lm_eval.simple_evaluate(
        model=HerdLM(scorer=HerdScorer(model, tok, add_bos=False)), tasks=[task], task_manager=manager, log_samples=True
    )
    with running_server(model, tok) as (url, state, _):
        remote = LocalCompletionsAPI(
            base_url=f"{url}/v1/completions", model="tiny", tokenizer_backend="remote", max_length=512, max_retries=1
        )
        served = lm_eval.simple_evaluate(model=remote, tasks=[task], task_manager=manager, log_samples=True)
        assert state.runner.engine.stats.prefill_tokens > 0  # it really went through the engine
    ours, theirs = _loglikelihoods(local, task), _loglikelihoods(served, task)
    assert len(ours) == 3 * len(exs)
    assert ours == pytest.approx(theirs, abs=1e-4)
    assert served["results"][task]["acc,none"] == local["results"][task]["acc,none"]
