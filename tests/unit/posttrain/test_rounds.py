"""A tiny 2-round `herd posttrain` run end to end, then reruns: one redoes only a removed stage (resume per
stage), one with another held-out split redoes them all."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from herd.cli.main import main
from herd.posttrain.capabilities import Capability, CapabilityContext, Outputs, register


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


@dataclass
class _EchoConfig:
    dialogs: int = 4


@register
class _Echo(Capability):
    """A stand-in pipeline that records which policy each round gave it and plants one bad candidate."""

    name = "_echo_rounds"
    category = "code"
    Config = _EchoConfig

    def generate(self, ctx: CapabilityContext) -> Outputs:
        out = Outputs()
        for i in range(self.config.dialogs):
            q, a = f"what is {i} + {ctx.round}?", f"{i + ctx.round}"
            out.kept.append({"messages": [{"role": "user", "content": q}, {"role": "assistant", "content": a}],
                             "source": str(ctx.policy)})  # fmt: skip
        out.drop({"messages": []}, "planted_bad")
        prompt = [{"role": "user", "content": f"what is 2 + {ctx.round}?"}]
        out.prefs.append({"prompt": prompt, "chosen": str(2 + ctx.round), "rejected": "7 maybe", "strength": "better"})
        return out

    def evaluate(self, model_dir: Path, ctx: CapabilityContext) -> dict:
        return {"metric": "echo", "value": 0.25 * ctx.round, "ci95": 0.1, "n": 10, "model": str(model_dir)}


def _inputs(manifest: Path) -> set[str]:
    return {i["path"] for i in json.loads(manifest.read_text())["inputs"]}


def test_capabilities_run_inside_the_rounds(tmp_path):
    over = [
        *_overrides(tmp_path),
        "prune.enabled=false",
        'capabilities=["_echo_rounds"]',
        "capability._echo_rounds.dialogs=3",
    ]
    assert main(["posttrain", "configs/posttrain/toy.toml", *over]) == 0
    run = tmp_path / "run"
    r1, r2 = (json.loads((run / f"round-{r}" / "MANIFEST.json").read_text())["counts"] for r in (1, 2))
    assert r1["cap-_echo_rounds"]["kept"] == 3 and r1["cap-_echo_rounds"]["dropped_by_reason"] == {"planted_bad": 1}
    # Each round's pipeline samples from the round's starting policy; its evaluation reads the round's model.
    sources = [
        json.loads(x)["source"] for x in (run / "round-2" / "cap-_echo_rounds" / "sft.jsonl").read_text().splitlines()
    ]
    assert set(sources) == {str(run / "round-1" / "dpo")}
    assert r2["capability_evals"]["_echo_rounds"]["model"] == str(run / "round-2" / "dpo")
    # SFT restarts from the base each round on everything gathered so far (the paper's loop, [P §4.1]).
    sft2 = _inputs(run / "round-2" / "sft" / "MANIFEST.json")
    assert str(run / "base") in sft2 and str(run / "round-1" / "cap-_echo_rounds") in sft2
    assert str(run / "round-1" / "dpo") not in sft2
    assert r2["sft"]["examples"] > r1["sft"]["examples"]
    # The pipeline's checked pairs reach the next round's reward model.
    assert r2["rm"]["train_prefs"] - r1["rm"]["train_prefs"] == 1 + r1["rs"]["verified_pairs"]
    summary = json.loads((run / "summary.json").read_text())
    assert summary["capability_evals_base"]["_echo_rounds"]["value"] == 0.0
    assert [(r["round"], r["value"]) for r in summary["capabilities"]] == [(0, 0.0), (1, 0.25), (2, 0.5)]
    assert (run / "capabilities.png").stat().st_size > 5_000
    posttrain = json.loads((run / "MANIFEST.json").read_text())["counts"]
    assert posttrain["capabilities"] == summary["capabilities"] and "code" in posttrain["mix"][0]["realised"]


def test_sft_from_previous_continues_the_last_round(tmp_path):
    over = [*_overrides(tmp_path), "prune.enabled=false", "sft_from=previous", "rounds=2"]
    assert main(["posttrain", "configs/posttrain/toy.toml", *over]) == 0
    sft2 = _inputs(tmp_path / "run" / "round-2" / "sft" / "MANIFEST.json")
    assert str(tmp_path / "run" / "round-1" / "dpo") in sft2 and str(tmp_path / "run" / "round-1" / "rs") not in sft2
