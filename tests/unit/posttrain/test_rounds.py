"""A tiny 2-round `herd posttrain` run end to end, then reruns: one redoes only a removed stage (resume per
stage), one with another held-out split redoes them all."""

from __future__ import annotations

import json

from herd.cli.main import main


def _overrides(tmp_path):
    return [
        f"out={tmp_path / 'run'}", f"bundle.out={tmp_path / 'bundle'}", "bundle.n_arithmetic=60",
        "bundle.n_chatterbot_prefs=20",
        "bundle.max_chatterbot_dialogs=60", "bundle.vocab_size=600", "base.dim=32", "base.warmup_steps=3",
        "rounds=2", "threads=1", "held_out_fraction=0.2", "rm.lr=1e-3", "rm.max_steps=3", "rm.max_len=96",
        "rs.k=3", "rs.max_prompts=4", "rs.max_new_tokens=4", "sft.max_steps=3", "sft.seq_len=128",
        "dpo.max_steps=3", "dpo.max_len=96",
        # Pruning on, without the embedding steps (MiniLM is tested in test_data_quality.py).
        "prune.enabled=true", 'prune.steps=["rules", "quality"]',
    ]  # fmt: skip


def test_two_rounds_then_resume(tmp_path, capsys):
    assert main(["posttrain", "configs/posttrain/toy.toml", *_overrides(tmp_path)]) == 0
    run = tmp_path / "run"
    for r in (1, 2):
        for stage in ("rm", "rs", "prune", "sft", "dpo"):
            assert (run / f"round-{r}" / stage / "MANIFEST.json").is_file()
        assert json.loads((run / f"round-{r}" / "MANIFEST.json").read_text())["stage"] == "posttrain-round"
    assert "best-of-3 mean RM score" in capsys.readouterr().out
    prune = json.loads((run / "round-1" / "prune" / "MANIFEST.json").read_text())["counts"]
    kept = (run / "round-1" / "prune" / "kept.jsonl").read_text().splitlines()
    dropped = (run / "round-1" / "prune" / "dropped" / "dropped.jsonl").read_text().splitlines()
    assert prune["in"] == len(kept) + len(dropped) and prune["dropped"]["low_quality"] > 0
    sft = json.loads((run / "round-1" / "sft" / "MANIFEST.json").read_text())["counts"]
    assert 0 < sft["examples"] <= len(kept) < prune["in"]  # SFT trains on what pruning kept
    summary = json.loads((run / "summary.json").read_text())
    assert [m["round"] for m in summary["metrics"]] == [1, 2] and summary["metrics"][0]["prune_kept"] == len(kept)
    assert (run / "metrics.png").stat().st_size > 10_000
    # File times in nanoseconds: a redone stage is written anew (a renamed temp folder); the manifests'
    # own `created` field has one-second resolution, too coarse for stages this small.
    created = {p: p.stat().st_mtime_ns for p in run.glob("round-*/*/MANIFEST.json")}
    # Remove one stage: the rerun redoes it and what depends on it, and skips the rest.
    (run / "round-2" / "dpo" / "MANIFEST.json").unlink()
    assert main(["posttrain", "configs/posttrain/toy.toml", *_overrides(tmp_path)]) == 0
    again = {p: p.stat().st_mtime_ns for p in run.glob("round-*/*/MANIFEST.json")}
    changed = {p.parent.relative_to(run).as_posix() for p in again if again[p] != created.get(p)}
    assert changed == {"round-2/dpo"}
    # A run-wide setting every stage depends on (the held-out split) redoes them all.
    assert main(["posttrain", "configs/posttrain/toy.toml", *_overrides(tmp_path), "held_out_fraction=0.25"]) == 0
    third = {p: p.stat().st_mtime_ns for p in run.glob("round-*/*/MANIFEST.json")}
    assert all(third[p] != again[p] for p in again)
