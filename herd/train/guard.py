"""The loss-spike/NaN guard as pure functions of the train state: skip an update whose loss is not
finite or jumps above `spike_factor` × its running mean; after `max_skips` skips in a row the loop rolls
back to the last checkpoint. A safety net for small, aggressive runs: the paper reports few loss spikes
and no divergence interventions for the 405B run [P §3.4.1]."""

from __future__ import annotations

import dataclasses
import math

from herd.train.config import GuardSection
from herd.train.phases import TrainState


def skip_reason(loss: float, s: TrainState, g: GuardSection) -> str | None:
    """Why the update of a step with this mean loss must be skipped, or None."""
    if not math.isfinite(loss):
        return "nonfinite_loss"
    if s.ema_steps >= g.warmup_steps and loss > g.spike_factor * s.loss_ema:
        return "loss_spike"
    return None


def accepted(s: TrainState, loss: float, batch_tokens: int, g: GuardSection) -> TrainState:
    """The state after an applied update: one more step, its tokens, the loss in the running mean."""
    ema = loss if s.ema_steps == 0 else g.ema * s.loss_ema + (1 - g.ema) * loss
    return dataclasses.replace(
        s, loss_ema=ema, ema_steps=s.ema_steps + 1, step=s.step + 1, tokens=s.tokens + batch_tokens,
        consecutive_skips=0,
    )  # fmt: skip


def skipped(s: TrainState) -> TrainState:
    """The state after a skipped update: the step and its tokens do not count."""
    return dataclasses.replace(s, skipped=s.skipped + 1, consecutive_skips=s.consecutive_skips + 1)


def must_roll_back(s: TrainState, g: GuardSection) -> bool:
    return s.consecutive_skips >= g.max_skips
