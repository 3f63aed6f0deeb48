"""The capability interface: registry lookup with the nearest name, typed options, the output files and counts."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import pytest

from herd.core.config import ConfigError
from herd.posttrain.capabilities import Capability, CapabilityContext, Outputs, get_capability, register


@dataclass
class _EvenConfig:
    limit: int = 10


@register
class _Even(Capability):
    """Keeps dialogs whose number is even; a stand-in pipeline that exercises the interface only."""

    name = "_even_test"
    category = "reasoning_tools"
    Config = _EvenConfig

    def generate(self, ctx: CapabilityContext) -> Outputs:
        out = Outputs()
        for i in range(self.config.limit):
            row = {"messages": [{"role": "user", "content": f"{i}?"}, {"role": "assistant", "content": str(i)}]}
            out.kept.append(row) if i % 2 == 0 else out.drop(row, "odd", value=i)
        return out

    def evaluate(self, model_dir: Path, ctx: CapabilityContext) -> dict:
        return {"metric": "none", "value": 0.0, "ci95": 0.0, "n": 0}


def test_unknown_name_suggests_the_nearest():
    with pytest.raises(ConfigError, match="did you mean 'math'"):
        get_capability("maths")


def test_options_are_typed_and_typos_named():
    assert get_capability("_even_test", {"limit": 4}).config.limit == 4
    with pytest.raises(ConfigError, match="limit"):
        get_capability("_even_test", {"limt": 4})


def test_build_writes_kept_dropped_and_counts(tmp_path):
    ctx = CapabilityContext(policy=tmp_path, chat=None, bundle=tmp_path)
    counts = get_capability("_even_test", {"limit": 7}).build(ctx, tmp_path / "out")
    assert counts["in"] == 7 and counts["kept"] == 4 and counts["dropped_by_reason"] == {"odd": 3}
    kept = [json.loads(x) for x in (tmp_path / "out" / "sft.jsonl").read_text().splitlines()]
    dropped = [json.loads(x) for x in (tmp_path / "out" / "dropped" / "dropped.jsonl").read_text().splitlines()]
    assert {r["category"] for r in kept} == {"reasoning_tools"}
    assert [r["value"] for r in dropped] == [1, 3, 5] and all(r["reason"] == "odd" for r in dropped)
    assert not (tmp_path / "out" / "prefs.jsonl").exists()
