"""lm-evaluation-harness runs a herd model through HerdLM: loglikelihood, loglikelihood_rolling, generate_until."""

import json
import os

import pytest
from unit.eval.toy import toy_scorer

from herd.eval.lm_eval_tasks import export_gen_task, export_mc_task
from herd.eval.tasks import MCExample, Task

lm_eval = pytest.importorskip("lm_eval")


def _rolling_task(folder, texts) -> str:
    (folder / "roll.jsonl").write_text("".join(json.dumps({"text": t}) + "\n" for t in texts))
    lines = [
        "task: herd_rolling",
        "dataset_path: json",
        "dataset_kwargs:",
        "  data_files:",
        f"    test: {json.dumps(str(folder / 'roll.jsonl'))}",
        "output_type: loglikelihood_rolling",
        "test_split: test",
        'doc_to_text: ""',
        'doc_to_target: "{{text}}"',
        "metric_list:",
        "  - metric: word_perplexity",
    ]
    (folder / "herd_rolling.yaml").write_text("\n".join(lines) + "\n")
    return "herd_rolling"


def test_simple_evaluate_runs_a_herd_model_on_local_json_tasks(tmp_path) -> None:
    from lm_eval.tasks import TaskManager

    from herd.eval.harness import evaluate_mc
    from herd.eval.lm_eval_adapter import HerdLM

    os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
    scorer = toy_scorer()
    exs = [MCExample(str(i), f"Question: {i} plus one?\nAnswer:", [str(i + 1), str(i + 2), "x"], 0) for i in range(6)]
    task = Task("local_mc", "mc", exs)
    mc = export_mc_task(task, tmp_path)
    gen = export_gen_task("herd_gen", [{"prompt": "Say hi:", "answer": "hi"}] * 2, tmp_path, until=["\n"])
    roll = _rolling_task(tmp_path, ["one document to score", "and another one"])
    lm = HerdLM(scorer=scorer, max_gen_toks=6)
    out = lm_eval.simple_evaluate(
        model=lm, tasks=[mc, gen, roll], task_manager=TaskManager(include_path=str(tmp_path)), log_samples=True
    )
    ours = evaluate_mc(task, scorer)
    assert out["results"][mc]["acc,none"] == pytest.approx(ours.metrics["acc"])
    assert out["results"][mc]["acc_norm,none"] == pytest.approx(ours.metrics["acc_norm"])
    resp = out["samples"][gen][0]["resps"][0][0]
    assert resp == scorer.generate(["Say hi:"], max_new_tokens=6, stop=["\n"])[0]
    rolled = [s["resps"][0][0] for s in sorted(out["samples"][roll], key=lambda s: s["doc_id"])]
    assert rolled == pytest.approx(scorer.loglikelihood_rolling(["one document to score", "and another one"]))
    assert "herd" in lm_eval.api.registry.MODEL_REGISTRY
