"""Pretraining as a stage: token shards (+ tokenizer) → checkpoints, final/ and base/ HF exports,
metrics, summary.json; run by herd.core.stage.run_stage, which alone decides whether it runs."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, ClassVar

from herd.core.stage import Stage
from herd.model import resolve
from herd.train.config import PretrainConfig, tokenizer_file
from herd.train.loop import Trainer
from herd.train.metrics import curve_record


class PretrainStage(Stage):
    """Resumable: it trains in its own folder and continues from the newest trustworthy checkpoint there.
    Every rank runs it (torchrun); global rank 0 alone writes files (herd.core.stage.is_writer)."""

    name: ClassVar[str] = "pretrain"
    version: ClassVar[int] = 2  # 2: records the loss curves
    resumable: ClassVar[bool] = True

    def __init__(self, config: PretrainConfig) -> None:
        self.config = config

    @property
    def out(self) -> Path:
        return Path(self.config.run_dir)

    def inputs(self) -> Sequence[Path]:
        shards, tokenizer = Path(self.config.data.shards), tokenizer_file(self.config.data)
        # A tokenizer beside the shards is hashed with them already.
        extra = [tokenizer] if tokenizer and not tokenizer.is_relative_to(shards) else []
        if self.config.eval.shards:  # a held-out set of its own is hashed as an input too
            extra.append(Path(self.config.eval.shards))
        if self.config.model.init_from:  # continued pretraining: the starting weights are an input too
            extra.append(Path(resolve(self.config.model.init_from)))
        return [shards, *extra]

    def run(self, workdir: Path) -> Mapping[str, Any]:
        """Train in place; the summary numbers (held-out losses of the final weights, of each annealing
        snapshot and of their average, steps, tokens, skips, rollbacks, long-context gates, wall time)."""
        if workdir != self.out:
            raise ValueError(f"pretrain: runs in its own folder {self.out}, not {workdir}")
        # The summary and the curves are the stage's record: the run report renders them, never recomputes.
        return Trainer(self.config).fit() | curve_record(workdir / "metrics.jsonl")
