"""The experiment additions: mix selection's fits and choice on synthetic numbers, derived arms and further
metrics read from finished runs, table overrides, the unfiltered-corpus stage, and pretraining's own
held-out set with per-source losses."""

from __future__ import annotations

import json
import math
import shutil
import subprocess
import sys
from dataclasses import asdict

import numpy as np
import pytest

from herd.core.config import ConfigError, from_dict, load_config
from herd.core.manifest import Manifest
from herd.data.tokenize import is_val
from herd.experiment import ExperimentConfig, experiment, plan_runs
from herd.experiment.grid import _override
from herd.experiment.mix_selection import MixPoint, MixSelectionConfig, envelope, select_mix, small_sizes
from herd.experiment.prepare import unfiltered
from herd.train.config import PretrainConfig
from tests.helpers import PARITY_PRETRAIN

# ------------------------------------------------------------------------------------------ mix selection


def _points(mix: str, slope: float, icpt: float, extra: float = 0.3) -> list[MixPoint]:
    """Two sizes per budget: the better one on the line loss = slope·log10 C + icpt, the other `extra` above
    it at 1.2× the compute (same tokens, a model with more FLOPs per token)."""
    out = []
    for u in (8.0, 9.0):
        out.append(MixPoint(mix, "small", 10**u, slope * u + icpt))
        out.append(MixPoint(mix, "medium", 1.2 * 10**u, slope * math.log10(1.2 * 10**u) + icpt + extra))
    return out


def test_select_mix_extrapolates_each_mix_to_the_target_compute():
    # B is better at both small budgets; A's loss falls faster and crosses below B at C = 1e10.
    points = _points("A", -0.5, 10.0) + _points("B", -0.4, 9.0)
    chosen, fits = select_mix(points, target_compute=1e12)
    a, b = fits
    assert a.slope == pytest.approx(-0.5) and a.intercept == pytest.approx(10.0)
    assert a.predicted == pytest.approx(4.0) and b.predicted == pytest.approx(4.2)  # 10 − 0.5·12; 9 − 0.4·12
    assert chosen == "A"
    assert select_mix(points, target_compute=1e9)[0] == "B"  # before the crossing the choice flips


def test_envelope_takes_the_best_size_per_budget():
    pts = [MixPoint("m", "s", 1e8, 5.0), MixPoint("m", "l", 1.4e8, 4.8), MixPoint("m", "s", 1e9, 4.5)]
    assert envelope(pts) == [(1.4e8, 4.8), (1e9, 4.5)]


def test_mix_selection_config_checks():
    base = {"mixes": {"paper": {"general": 1.0}, "other": {"general": 0.5, "code": 0.5}},
            "sizes": {"s": {"dim": 32}, "l": {"dim": 96}}, "mix_selection": {"target": "l"}}  # fmt: skip
    cfg = from_dict(MixSelectionConfig, base)
    assert small_sizes(cfg) == ["s"]
    with pytest.raises(ConfigError, match="heuristic 'paper'"):
        from_dict(MixSelectionConfig, {**base, "mixes": {"a": {}, "b": {}}})
    with pytest.raises(ConfigError, match="target: 'xl'"):
        from_dict(MixSelectionConfig, {**base, "mix_selection": {"target": "xl"}})


def test_bundled_configs_load():
    from pathlib import Path

    from herd.core.config import read_toml

    for path in sorted(Path("configs/experiments").glob("*.toml")):
        cls = MixSelectionConfig if "mix_selection" in read_toml(path) else ExperimentConfig
        cfg = load_config(cls, path)
        if cls is ExperimentConfig:  # every run's overrides parse as the command's config would
            assert plan_runs(cfg)


# ------------------------------------------------------------------------------------------ grid additions


def test_table_overrides_are_inline_tables():
    text = _override("data.mix", {"general": 0.5, "a.b": 0.25})
    assert text == 'data.mix={"general" = 0.5, "a.b" = 0.25}'
    cfg = load_config(PretrainConfig, None, [text])
    assert cfg.data.mix == {"general": 0.5, "a.b": 0.25}


def _finished_run(cfg: ExperimentConfig, arm: str, seed: int, counts: dict, judge: dict | None = None) -> None:
    """A run folder as a finished run leaves it, so the experiment reads it instead of starting the command."""
    run = next(r for r in plan_runs(cfg) if r.arm == arm and r.seed == seed)
    Manifest.write(run.out, "pretrain", [], {"seed": seed}, counts)
    if judge is not None:
        Manifest.write(run.out / "judge", "judge", [], {}, judge)
    done = run.out.parent / f"seed-{seed}.done.json"
    record = {"command": run.command(cfg.experiment), "key": Manifest.read(run.out).key, "wall_s": 1.0}
    done.write_text(json.dumps(record))


def test_derived_arm_and_further_metrics_from_the_same_runs(tmp_path):
    cfg = from_dict(ExperimentConfig, {
        "out": str(tmp_path / "exp"),
        "experiment": {"command": "pretrain", "seeds": [0, 1, 2], "metric": "held_out_loss_last_snapshot",
                       "baseline": "last", "also": {"judge:score": True}},
        "arms": {"last": {}},
        "derived": {"polyak": {"of": "last", "metric": "held_out_loss_averaged",
                               "also": {"judge:score": "judge:base"}}},
    })  # fmt: skip
    last, avg = [3.0, 3.2, 3.1], [2.9, 3.15, 3.0]
    for s in range(3):
        counts = {"held_out_loss_last_snapshot": last[s], "held_out_loss_averaged": avg[s]}
        _finished_run(cfg, "last", s, counts, judge={"score": 0.6 + 0.01 * s, "base": 0.5})
    result = experiment(cfg)
    by = {a["arm"]: a for a in result["arms"]}
    assert by["last"]["values"] == last and by["polyak"]["values"] == avg
    comp = result["comparisons"][0]
    diffs = np.subtract(avg, last)
    assert comp["arm"] == "polyak" and comp["diff"] == pytest.approx(diffs.mean())
    assert comp["verdict"] == "holds"  # every pair 0.05–0.1 lower: the interval excludes zero
    also = result["also"]["judge:score"]
    assert [a["mean"] for a in also["arms"]] == [pytest.approx(0.61), pytest.approx(0.5)]
    assert (
        also["comparisons"][0]["verdict"] == "does not hold"
    )  # 0.5 vs 0.60–0.62: lower on every seed, higher is better


def test_derived_arm_config_errors(tmp_path):
    base = {"out": str(tmp_path), "arms": {"a": {}}}
    with pytest.raises(ConfigError, match=r"derived\.b: needs `of`"):
        from_dict(ExperimentConfig, {**base, "derived": {"b": {"of": "nope", "metric": "x"}}})
    with pytest.raises(ConfigError, match=r"experiment\.judge: 'vibes'"):
        from_dict(ExperimentConfig, {**base, "experiment": {"judge": "vibes"}})


# ------------------------------------------------------------------------------------------ data stage


def test_unfiltered_drops_exactly_the_clean_held_out_documents(tmp_path):
    texts = [f"document number {i} " * (i + 3) for i in range(60)]
    raw, clean = tmp_path / "raw", tmp_path / "clean"
    raw.mkdir(), clean.mkdir()
    with open(raw / "docs.jsonl", "w") as f:
        for i, t in enumerate(texts):
            f.write(json.dumps({"id": f"d{i}", "text": "RAW " + t}) + "\n")  # raw text differs from the clean text
    with open(clean / "docs.jsonl", "w") as f:
        for i, t in enumerate(texts[::2]):  # curation kept every other document
            f.write(json.dumps({"id": f"d{2 * i}", "text": t}) + "\n")
    m = unfiltered(raw, clean, tmp_path / "out", val_fraction=0.3)
    held = {f"d{2 * i}" for i, t in enumerate(texts[::2]) if is_val(t, 0.3)}
    assert 0 < len(held) < 30
    c = m.counts
    assert c["in"] == 60 == c["kept"] + c["dropped"]["clean_held_out"] and c["dropped"]["clean_held_out"] == len(held)
    kept = {json.loads(line)["id"] for line in (tmp_path / "out" / "documents.jsonl").read_text().splitlines()}
    dropped = [
        json.loads(line) for line in (tmp_path / "out" / "dropped" / "clean_held_out.jsonl").read_text().splitlines()
    ]
    assert kept.isdisjoint(held) and {d["id"] for d in dropped} == held
    assert all(d["reason"] == "clean_held_out" for d in dropped)


# ------------------------------------------------------------------------------------------ pretraining


def test_pretrain_scores_its_own_held_out_set_and_each_source(tmp_path, token_dir):
    sources = sorted(d.name for d in token_dir.iterdir() if (d / "val").is_dir())
    one = tmp_path / "held-out"  # a held-out set of one source
    shutil.copytree(token_dir / sources[0], one / sources[0])
    run = tmp_path / "run"
    args = [*PARITY_PRETRAIN, f"data.shards={token_dir}", f"eval.shards={one}", "eval.by_source=true",
            "schedule.max_steps=3", "eval.batches=1", f"run_dir={run}"]  # fmt: skip
    subprocess.run([sys.executable, "-m", "herd.cli", "pretrain", "/dev/null", *args], check=True, capture_output=True)
    summary = json.loads((run / "summary.json").read_text())
    # Scored on the one-source set: the mixture and that source alone are the same batches.
    assert summary["held_out_loss_by_source"] == {sources[0]: pytest.approx(summary["held_out_loss_last"], abs=1e-6)}
    assert str(one) in json.dumps(Manifest.read(run).inputs)


# ------------------------------------------------------------------------------------------ the RM judge


def _posttrain_folder(tmp_path, dpo_seed: int):
    """A one-round post-training folder as herd posttrain leaves it: sft/, dpo/ and rm/ of a byte-level
    tiny model, the resolved config, and a bundle with preference rows (a tenth held out)."""
    import torch

    from herd.core.config import save_resolved
    from herd.model import build_model, get_preset
    from herd.posttrain.bundle import BundleConfig
    from herd.posttrain.common import save_model
    from herd.posttrain.reward import RewardModel
    from herd.posttrain.rounds import PosttrainConfig
    from herd.tokenizer.ranks import save_ranks

    tok_file = save_ranks({bytes([i]): i for i in range(256)}, tmp_path / "tok.model")
    cfg = get_preset("debug", vocab_size=512, dim=32, n_heads=4, n_kv_heads=2, ffn_dim=64)
    run, bundle = tmp_path / "run", tmp_path / "bundle"
    last = run / "round-1"
    save_model(build_model(cfg, seed=0), last / "sft", tok_file)
    save_model(build_model(cfg, seed=dpo_seed), last / "dpo", tok_file)
    rm = RewardModel(build_model(cfg, seed=7))
    torch.manual_seed(7)
    torch.nn.init.normal_(rm.head.weight)  # a trained RM's head: the zero init rates every answer 0
    rm.save(last / "rm", tok_file)
    rows = [{"prompt": [{"role": "user", "content": f"what is {i} plus {i}?"}], "chosen": str(2 * i),
             "rejected": "no", "strength": "better"} for i in range(40)]  # fmt: skip
    bundle.mkdir()
    (bundle / "prefs.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    save_resolved(
        PosttrainConfig(out=str(run), rounds=1, held_out_fraction=0.1, bundle=BundleConfig(out=str(bundle))), run
    )
    return run


def test_rm_win_rate_ties_identical_models_and_pairs_answers(tmp_path):
    from herd.experiment.judge import rm_win_rate

    same = rm_win_rate(_posttrain_folder(tmp_path / "same", dpo_seed=0), max_new_tokens=6).counts
    assert same["prompts"] == 4  # 10% of 40 held out
    assert same["win_rate"] == 0.5 and same["ties"] == 4 and same["reward_gap"] == 0.0
    other = rm_win_rate(_posttrain_folder(tmp_path / "other", dpo_seed=1), max_new_tokens=6).counts
    assert other["ties"] < 4 and 0.0 <= other["win_rate"] <= 1.0
    assert other["reward_gap"] == pytest.approx(other["reward_dpo"] - other["reward_sft"])


def test_mix_selection_report_states_the_paired_comparison():
    from herd.experiment.analysis import compare
    from herd.experiment.mix_selection import report_markdown

    values = {"nat": [6.20, 6.24, 6.22], "paper": [6.27, 6.30, 6.28]}
    records = [{"arm": a, "seed": s, "value": v} for a, vs in values.items() for s, v in enumerate(vs)]
    c = compare("nat", "paper", records, higher_is_better=False)
    assert c.diff == pytest.approx(-0.19 / 3) and c.verdict == "holds"  # diffs −0.07, −0.06, −0.06: ± 0.014
    held = [{"mix": m, "predicted": 6.3, "measured": 6.25, "ci95": 0.1, "seeds": 3} for m in ("nat", "paper")]
    result = {"target": {"size": "m", "tokens": 1, "compute": 1.0}, "chosen": "nat", "heuristic": "paper",
              "fits": [], "held_out": held, "comparison": asdict(c)}  # fmt: skip
    assert "Paired over 3 seeds: nat − paper = -0.0633" in report_markdown(result)
    assert "**holds**" in report_markdown(result)
