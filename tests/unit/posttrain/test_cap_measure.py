"""`herd capability NAME` end to end on a tiny model: before → data → SFT → after, and a rerun that
reuses the evaluation before tuning (minutes on a shared CPU) only when model, seed and options match."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

import pytest

from herd.posttrain.capabilities import base as cap_base
from herd.posttrain.capabilities import measure
from herd.posttrain.capabilities.base import Capability, CapabilityContext, Outputs
from herd.posttrain.common import save_model
from herd.posttrain.sft import SFTConfig


@dataclass
class _Cfg:
    items: int = 2


class _Counting(Capability):
    name = "counting_test"
    category = "reasoning_tools"
    Config = _Cfg
    evaluated: ClassVar[list[str]] = []

    def generate(self, ctx: CapabilityContext) -> Outputs:
        dialog = [{"role": "user", "content": "2+2?"}, {"role": "assistant", "content": "The answer is 4."}]
        return Outputs(kept=[{"messages": dialog, "source": "test"}])

    def evaluate(self, model_dir: Path, ctx: CapabilityContext) -> dict[str, Any]:
        self.evaluated.append(model_dir.name)
        return {"metric": "m", "value": 0.5, "ci95": 0.1, "n": self.config.items}


@pytest.fixture
def counting(monkeypatch, chat, tmp_path, model):
    monkeypatch.setitem(cap_base.CAPABILITIES, "counting_test", _Counting)
    monkeypatch.setattr(measure, "load_tokenizer", lambda source: chat.tokenizer)
    monkeypatch.setattr(measure, "load_chat_format", lambda tok: chat)
    _Counting.evaluated = []
    return save_model(model, tmp_path / "base", None)


def _cfg(tmp_path: Path, policy: Path, **options: Any) -> measure.MeasureConfig:
    return measure.MeasureConfig(model=str(policy), tokenizer="test", bundle=str(tmp_path / "none"),
                                 out=str(tmp_path / "runs"), options=options,
                                 sft=SFTConfig(lr=1e-3, epochs=1, batch_rows=2, seq_len=64))  # fmt: skip


def test_measure_writes_before_and_after_and_reuses_before(tmp_path, counting):
    r = measure.measure_capability("counting_test", _cfg(tmp_path, counting))
    assert _Counting.evaluated == ["base", "sft"]
    assert r["data"]["kept"] == 1 and r["before"]["n"] == 2 and r["after"]["value"] == 0.5
    saved = json.loads((tmp_path / "runs" / "counting_test" / "before.json").read_text())
    assert saved["before"] == r["before"] and saved["config"]["options"] == {}
    measure.measure_capability("counting_test", _cfg(tmp_path, counting))  # same config: before is reused
    assert _Counting.evaluated == ["base", "sft", "sft"]
    measure.measure_capability("counting_test", _cfg(tmp_path, counting, items=3))  # other options: evaluated again
    assert _Counting.evaluated[3] == "base"


def test_an_sft_override_keeps_the_other_capability_defaults():
    """`sft.lr=...` used to rebuild SFTConfig from its own defaults (seq_len 256, 8 rows at once, no
    checkpointing): tool dialogs were cut before their answers and the fine-tune needed 5-8 GB."""
    from herd.core.config import load_config

    cfg = load_config(measure.MeasureConfig, None, ["sft.lr=1e-4", "sft.epochs=3"]).sft
    assert (cfg.lr, cfg.epochs) == (1e-4, 3)
    assert (cfg.seq_len, cfg.batch_rows, cfg.micro_rows, cfg.activation_checkpointing) == (1024, 4, 1, True)
