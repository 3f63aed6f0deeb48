"""The paper's schedules as pure functions of the step or of tokens seen [P §3.4.1, §3.4.3].

- LR: linear warmup, cosine decay to a floor (405B: 8,000 warmup steps, 8e-5 → 8e-7 over 1,200,000
  steps); annealing: linear decay to 0 over a token budget.
- Batch/sequence ramp keyed on tokens seen (405B: 4M tokens of 4,096-token sequences, then 8M of 8,192
  after 252M tokens, then 16M after 2.87T).
The data mix schedule lives with the loader (herd.data.loader.MixSchedule).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field


@dataclass(frozen=True)
class LRSchedule:
    peak: float = 3e-4
    warmup_steps: int = 2000
    total_steps: int = 100_000  # the cosine horizon: LR reaches `floor` here and stays
    floor: float = 0.0  # absolute LR at the end (405B: 8e-7 = peak / 100)

    def __call__(self, step: int) -> float:
        """LR for optimizer step `step` (0-based): (step+1)/warmup × peak, then cosine to floor."""
        if step < self.warmup_steps:
            return self.peak * (step + 1) / self.warmup_steps
        span = max(1, self.total_steps - self.warmup_steps)
        progress = min(1.0, (step - self.warmup_steps) / span)
        return self.floor + 0.5 * (self.peak - self.floor) * (1 + math.cos(math.pi * progress))


def anneal_lr(start_lr: float, tokens_into_anneal: int, anneal_tokens: int) -> float:
    """Annealing: LR falls linearly from `start_lr` to 0 over `anneal_tokens` [P §3.4.3]."""
    return start_lr * max(0.0, 1.0 - tokens_into_anneal / anneal_tokens)


@dataclass(frozen=True)
class RampStage:
    after_tokens: int  # the stage starts once this many tokens have been seen
    batch_tokens: int  # global tokens per optimizer step
    seq_len: int


@dataclass(frozen=True)
class Ramp:
    """Batch size and sequence length as a function of tokens seen (stages sorted by after_tokens)."""

    stages: Sequence[RampStage] = field(default_factory=lambda: (RampStage(0, 4 * 2**20, 4096),))

    def __post_init__(self) -> None:
        if not self.stages or self.stages[0].after_tokens != 0:
            raise ValueError("ramp: the first stage must start at after_tokens = 0")
        starts = [s.after_tokens for s in self.stages]
        if starts != sorted(starts):
            raise ValueError("ramp: stages must be sorted by after_tokens")
        for s in self.stages:
            if s.batch_tokens % s.seq_len:
                raise ValueError(f"ramp: batch_tokens {s.batch_tokens} is not a multiple of seq_len {s.seq_len}")

    def at(self, tokens_seen: int) -> RampStage:
        current = self.stages[0]
        for s in self.stages:
            if tokens_seen >= s.after_tokens:
                current = s
        return current


PAPER_405B_RAMP = Ramp(
    (
        # "4M/8M/16M tokens" are binary: Table 4's 16M batch is 16 sequences × DP128 × 8,192 = 2^24 [P §3.3.2],
        # and powers of two split evenly over any power-of-two DP degree.
        RampStage(0, 2**22, 4096),
        RampStage(252_000_000, 2**23, 8192),
        RampStage(2_870_000_000_000, 2**24, 8192),
    )
)
PAPER_405B_LR = LRSchedule(peak=8e-5, warmup_steps=8000, total_steps=1_200_000, floor=8e-7)
