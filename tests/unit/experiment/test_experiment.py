"""`herd experiment`: the grid's commands, the statistics against scipy and hand-worked numbers, and a 2-arm ×
2-seed miniature of real pretraining runs that is analysed, reported and skipped when rerun."""

from __future__ import annotations

import json
import math

import pytest
from scipy import stats

from herd.core.config import ConfigError, from_dict, parse_override
from herd.experiment import ExperimentConfig, analyse, compare, experiment, plan_runs
from herd.experiment.analysis import t_half_width
from herd.experiment.grid import metric_value
from tests.helpers import PARITY_PRETRAIN


def _cfg(tmp_path, **exp):
    arms = {"fast": {"optim.lr": 3e-3}, "slow": {"optim.lr": 1e-6}}
    section = {"command": "pretrain", "config": "/dev/null", "seeds": [0, 1], "baseline": "slow", **exp}
    return from_dict(ExperimentConfig, {"out": str(tmp_path / "exp"), "experiment": section, "arms": arms})


def test_plan_has_every_arm_and_seed_with_its_own_folder(tmp_path):
    runs = plan_runs(_cfg(tmp_path))
    assert [(r.arm, r.seed) for r in runs] == [("fast", 0), ("slow", 0), ("fast", 1), ("slow", 1)]
    assert runs[0].overrides == ["optim.lr=0.003", "seed=0", f'run_dir="{tmp_path / "exp" / "fast" / "seed-0"}"']


def test_config_errors_name_the_field(tmp_path):
    with pytest.raises(ConfigError, match="baseline: 'none' is not one of the arms: fast, slow"):
        _cfg(tmp_path, baseline="none")
    with pytest.raises(ConfigError, match="distinct seeds"):
        _cfg(tmp_path, seeds=[1, 1])


def test_interval_is_students_t():
    assert t_half_width([1.0, 2.0, 3.0]) == pytest.approx(stats.t.ppf(0.975, 2) * 1.0 / math.sqrt(3))
    assert t_half_width([1.0, 2.0, 3.0]) == pytest.approx(2.4841, abs=1e-4)  # 4.3027 / √3
    assert math.isnan(t_half_width([1.0]))


def test_paired_comparison_and_verdicts():
    recs = [{"arm": a, "seed": s, "value": v} for a, s, v in
            [("b", 0, 2.0), ("b", 1, 3.0), ("b", 2, 4.0), ("a", 0, 1.9), ("a", 1, 2.8), ("a", 2, 3.95)]]  # fmt: skip
    c = compare("a", "b", recs, higher_is_better=False)
    # Unpaired the arms overlap completely; paired, a is lower on every seed.
    assert c.diff == pytest.approx(-0.35 / 3) and c.n_pairs == 3
    assert c.p_value == pytest.approx(stats.ttest_rel([1.9, 2.8, 3.95], [2.0, 3.0, 4.0]).pvalue)
    assert c.ci95 == pytest.approx(t_half_width([-0.1, -0.2, -0.05]))
    # s = 0.0764 over 3 pairs: half-width 4.303 · 0.0764 / √3 = 0.190 > 0.117, so the interval spans 0.
    assert c.ci95 == pytest.approx(0.190, abs=1e-3) and c.verdict == "inconclusive"
    tight = [{"arm": "b", "seed": s, "value": v} for s, v in enumerate([2.0, 3.0, 4.0])]
    tight += [{"arm": "a", "seed": s, "value": v - 0.1 - 0.01 * s} for s, v in enumerate([2.0, 3.0, 4.0])]
    assert compare("a", "b", tight, higher_is_better=False).verdict == "holds"
    assert compare("a", "b", tight, higher_is_better=True).verdict == "does not hold"
    flat = [{**r, "value": 1.0} for r in recs]
    assert compare("a", "b", flat, higher_is_better=False).verdict == "inconclusive"
    out = analyse(recs, "b", higher_is_better=False)
    assert [a["arm"] for a in out["arms"]] == ["b", "a"] and out["arms"][0]["mean"] == 3.0


def test_metric_path_errors_name_what_exists(tmp_path):
    assert metric_value({"metrics": [{"x": 1}, {"x": 2.5}]}, "metrics.-1.x", tmp_path) == 2.5
    with pytest.raises(ValueError, match="no 'held_out' in"):
        metric_value({"held_out_loss_last": 1.0}, "held_out.loss", tmp_path)


def test_two_arm_two_seed_pretraining_miniature(tmp_path, token_dir):
    cfg = _cfg(tmp_path, metric="held_out_loss_last", claim="lr 3e-3 beats 1e-6 after 6 steps")
    cfg.common = {
        **{k: v for k, v in map(parse_override, PARITY_PRETRAIN) if k != "optim.lr"},
        "data.shards": str(token_dir), "schedule.max_steps": 6, "eval.every": 6, "eval.batches": 1,
    }  # fmt: skip
    result = experiment(cfg)
    fast, slow = (a for a in result["arms"])
    assert fast["n"] == slow["n"] == 2 and fast["mean"] < slow["mean"]
    assert result["comparisons"][0]["arm"] == "fast" and result["comparisons"][0]["diff"] < 0
    out = tmp_path / "exp"
    assert "Paired over shared seeds" in (out / "index.html").read_text() and (out / "arms.png").stat().st_size > 5000
    assert json.loads((out / "MANIFEST.json").read_text())["stage"] == "experiment"
    # A rerun finds every run finished: the same numbers, no run trained again.
    before = {p: p.stat().st_mtime_ns for p in out.glob("*/seed-*/MANIFEST.json")}
    again = experiment(cfg)
    assert [r["value"] for r in again["runs"]] == [r["value"] for r in result["runs"]]
    assert {p: p.stat().st_mtime_ns for p in out.glob("*/seed-*/MANIFEST.json")} == before
