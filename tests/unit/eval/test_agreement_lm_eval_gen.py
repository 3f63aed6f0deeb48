"""Must show (issue 23): herd's new generation benchmarks agree with lm-evaluation-harness 0.4.13 running its own
task definitions (nq_open, triviaqa, drop: its prompts, stops, filters and metrics) on the same documents and the
same model (SmolLM2-135M-Instruct through HerdLM): identical prompts, identical gold answers, identical
per-document metric values. HERD_EVAL_AGREE_GEN_N sets the documents per task."""

import os

import pytest

from herd.eval.harness import evaluate_gen
from herd.eval.lm_eval_tasks import export_builtin_gen_task
from herd.eval.tasks import load_task

N = int(os.environ.get("HERD_EVAL_AGREE_GEN_N", "4"))
METRICS = {"nq_open": {"em": "exact_match"}, "triviaqa": {"em": "exact_match"}, "drop": {"em": "em", "f1": "f1"}}


@pytest.mark.slow
def test_new_qa_tasks_agree_with_lm_eval_on_the_same_docs(tmp_path, olmo_data, herd_smollm2) -> None:
    lm_eval = pytest.importorskip("lm_eval")
    from lm_eval.tasks import TaskManager

    from herd.eval.lm_eval_adapter import HerdLM

    os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
    tasks = {name: load_task(name) for name in METRICS}
    names = {name: export_builtin_gen_task(task, tmp_path, N) for name, task in tasks.items()}
    out = lm_eval.simple_evaluate(
        model=HerdLM(scorer=herd_smollm2, max_gen_toks=32),  # herd's QA tasks generate at most 32 tokens
        tasks=list(names.values()),
        task_manager=TaskManager(include_path=str(tmp_path)),
        log_samples=True,
    )
    from herd.eval.harness import gen_prompt

    for name, task in tasks.items():
        ours = evaluate_gen(task, herd_smollm2, limit=N)
        theirs = sorted(out["samples"][names[name]], key=lambda s: s["doc_id"])
        assert len(theirs) == ours.n == N
        for s, ex, rec in zip(theirs, task.examples, ours.records):
            prompt, gen_kwargs = s["arguments"][0]
            assert prompt == gen_prompt(task, ex, [])  # the exact prompt lm-eval renders
            assert list(gen_kwargs["until"]) == task.stop
            if name != "drop":  # lm-eval's DROP target is display only; its metric reads doc["answers"]
                assert list(s["target"]) == ex.golds()
            assert s["resps"][0][0] == rec["output"]  # same model, same prompt: same generation
            for ours_key, their_key in METRICS[name].items():
                assert rec["scores"][ours_key] == pytest.approx(float(s[their_key]), abs=1e-9), (name, ex.id)
        for ours_key, their_key in METRICS[name].items():
            filt = "remove_whitespace" if name != "drop" else "none"
            assert ours.metrics[ours_key] == pytest.approx(out["results"][names[name]][f"{their_key},{filt}"])
