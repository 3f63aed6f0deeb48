"""The pretraining phase machine as pure functions of (TrainState, PretrainConfig) [P §3.4].

Main pretraining → long-context stages k = 0, 1, ... → annealing → done. Every function here reads the
state and the config and returns a value or a new state; none touches a model, a loader or a file, so
the loop alone applies what they say (batch shape, LR, data mix, RoPE) and measures what they ask for
(held-out loss and the needle probe at a long-context gate).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Literal

from herd.data.loader import MixSchedule, MixStage
from herd.model.config import ModelConfig, RopeScaling
from herd.train.config import PretrainConfig
from herd.train.schedules import RampStage, anneal_lr

PhaseName = Literal["main", "long", "anneal", "done"]


@dataclass
class TrainState:
    """Everything besides model, optimizer and loader that a resumed run needs to continue exactly."""

    step: int = 0
    tokens: int = 0
    phase: PhaseName = "main"  # main → long (one per long-context stage) → anneal → done
    long_stage: int = -1
    long_start_tokens: int = 0
    long_baseline: float = 0.0
    long_results: list[dict] = field(default_factory=list)
    anneal_start_tokens: int = 0
    anneal_start_lr: float = 0.0
    anneal_snapshots: list[int] = field(default_factory=list)
    skipped: int = 0
    consecutive_skips: int = 0
    rollbacks: int = 0
    loss_ema: float = 0.0
    ema_steps: int = 0


# ---------------------------------------------------------------------------------- what the step uses


def batch_shape(s: TrainState, cfg: PretrainConfig) -> RampStage:
    """(batch tokens, sequence length) now: the ramp's [P §3.4.1], or the current long-context stage's."""
    stage = cfg.ramp_schedule().at(s.tokens)
    if s.phase != "long":
        return stage
    lc = cfg.long_context[s.long_stage]
    # Keep the batch's token count: as many whole long sequences as the ramp's batch holds.
    batch = lc.batch_tokens or max(1, round(stage.batch_tokens / lc.seq_len)) * lc.seq_len
    return RampStage(s.long_start_tokens, batch, lc.seq_len)


def learning_rate(s: TrainState, cfg: PretrainConfig) -> float:
    """Warmup + cosine by step; during annealing linear to 0 over its tokens [P §3.4.3]."""
    if s.phase == "anneal":
        return anneal_lr(s.anneal_start_lr, s.tokens - s.anneal_start_tokens, cfg.anneal.tokens)
    return cfg.lr_schedule()(s.step)


def data_mix(s: TrainState, cfg: PretrainConfig, main: MixSchedule) -> MixSchedule:
    """The main mix (with its later changes), plus annealing's up-sampled mix from where it started."""
    if s.phase not in ("anneal", "done") or not cfg.anneal.tokens or not cfg.anneal.mix:
        return main
    return MixSchedule((*main.stages, MixStage(s.anneal_start_tokens, cfg.anneal.mix)))


def rope_config(base: ModelConfig, cfg: PretrainConfig, long_stage: int) -> ModelConfig:
    """RoPE θ, Llama 3.1 scaling and max length as set by long-context stages 0..long_stage (later
    stages win) [P §3.4.2]; `base` itself before the first one."""
    out = base
    for lc in cfg.long_context[: long_stage + 1]:
        scaling = out.rope_scaling
        if lc.rope_scaling_factor:
            # Scaling is relative to the length the model was trained at before: the ramp's last.
            original = cfg.ramp_schedule().stages[-1].seq_len
            scaling = RopeScaling(factor=lc.rope_scaling_factor, original_max_seq_len=original)
        out = dataclasses.replace(
            out, rope_theta=lc.rope_theta or out.rope_theta, rope_scaling=scaling,
            max_seq_len=max(out.max_seq_len, lc.seq_len),
        )  # fmt: skip
    return out


# ---------------------------------------------------------------------------------- when phases change


def main_done(s: TrainState, cfg: PretrainConfig) -> bool:
    c = cfg.schedule
    return bool((c.max_steps and s.step >= c.max_steps) or (c.tokens and s.tokens >= c.tokens))


def anneal_done(s: TrainState, cfg: PretrainConfig) -> bool:
    return s.tokens - s.anneal_start_tokens >= cfg.anneal.tokens


def long_tokens(s: TrainState) -> int:
    """Tokens seen in the current long-context stage."""
    return s.tokens - s.long_start_tokens


def long_cap(s: TrainState, cfg: PretrainConfig) -> int:
    lc = cfg.long_context[s.long_stage]
    return lc.max_tokens or 2 * lc.tokens


def gate_due(s: TrainState, cfg: PretrainConfig) -> bool:
    """Whether to measure recovery now: the stage's minimum tokens are seen and it is an eval step (or
    the cap is reached, where the stage ends whatever the measurement says)."""
    seen, every = long_tokens(s), cfg.eval.every or 1
    return seen >= cfg.long_context[s.long_stage].tokens and (seen >= long_cap(s, cfg) or s.step % every == 0)


def recovered(s: TrainState, cfg: PretrainConfig, short_loss: float | None) -> bool:
    """Short-context held-out loss back within the stage's tolerance of its value before the stage."""
    tolerance = cfg.long_context[s.long_stage].loss_tolerance
    return short_loss is None or short_loss <= s.long_baseline * (1 + tolerance)


def gate_ends(s: TrainState, cfg: PretrainConfig, passed: bool) -> bool:
    """A stage ends when its gate passes, or at its cap regardless."""
    return passed or long_tokens(s) >= long_cap(s, cfg)


def end_long_stage(s: TrainState, result: dict) -> TrainState:
    return dataclasses.replace(s, long_results=[*s.long_results, result])


def begin(s: TrainState, cfg: PretrainConfig, next_long: int, baseline: float = 0.0) -> TrainState:
    """The phase after long-context stage next_long - 1 (or after main pretraining for 0): long-context
    stage `next_long` (from `baseline`, its short-context held-out loss), else annealing, else done."""
    if next_long < len(cfg.long_context):
        return dataclasses.replace(
            s, phase="long", long_stage=next_long, long_start_tokens=s.tokens, long_baseline=baseline
        )
    if cfg.anneal.tokens > 0:
        start_lr = cfg.lr_schedule()(s.step)
        return dataclasses.replace(s, phase="anneal", anneal_start_tokens=s.tokens, anneal_start_lr=start_lr)
    return dataclasses.replace(s, phase="done")


def resumed(s: TrainState, cfg: PretrainConfig) -> TrainState:
    """A checkpoint's state under this config: a finished run with neither long-context stages nor
    annealing continues when given a larger budget (schedule.max_steps / tokens)."""
    if s.phase == "done" and s.long_stage < 0 and not s.anneal_snapshots and not main_done(s, cfg):
        return dataclasses.replace(s, phase="main")
    return s


# ---------------------------------------------------------------------------------- annealing snapshots


def snapshot_due(s: TrainState, cfg: PretrainConfig) -> bool:
    """Evenly spaced annealing snapshots for the Polyak average [P §3.4.3]: the k-th after k/n of it."""
    a = cfg.anneal
    if not a.tokens or s.phase in ("main", "long"):
        return False
    k = len(s.anneal_snapshots)
    return k < a.checkpoints and s.tokens - s.anneal_start_tokens >= (k + 1) * a.tokens / a.checkpoints


def boundaries(s: TrainState, cfg: PretrainConfig) -> dict[str, int]:
    """Tokens at which the run changed phase or shape, for the loss plot."""
    marks = {"anneal": s.anneal_start_tokens} if s.anneal_snapshots else {}
    marks.update({f"long {r['seq_len']}": r["start"] for r in s.long_results if "start" in r})
    marks.update({f"seq {r.seq_len}": r.after_tokens for r in cfg.ramp_schedule().stages[1:]})
    return marks
