"""The paper's scaling-law constants and the arithmetic they imply [P §3.2.1].

N*(C) = A·C^α counts training TOKENS, not parameters, with the rounded constants (α, A) = (0.53, 0.29).
At the flagship budget of 3.8e25 FLOPs those give ≈ 10.5T tokens, not the 16.55T the paper reports; the
published 402B / 16.55T must come from unrounded constants (α ≈ 0.538 reproduces 16.55T with A = 0.29).
See llama3-facts.md §0 caveat 2 and docs/scaling.md.
"""

from __future__ import annotations

import math

PAPER_ALPHA = 0.53  # [P §3.2.1], rounded
PAPER_A = 0.29  # [P §3.2.1], rounded
FLAGSHIP_FLOPS = 3.8e25  # [P §3.2.1]
FLAGSHIP_TOKENS = 16.55e12  # [P §3.2.1]
FLAGSHIP_PARAMS = 402e9  # [P §3.2.1]; Meta trained 405B
BUDGET_RANGE = (6e18, 1e22)  # the IsoFLOP grid [P §3.2.1]


def optimal_tokens(budget: float, alpha: float = PAPER_ALPHA, A: float = PAPER_A) -> float:
    """N*(C) = A·C^α, in tokens."""
    return A * budget**alpha


def alpha_for(tokens: float, budget: float = FLAGSHIP_FLOPS, A: float = PAPER_A) -> float:
    """The exponent that sends `budget` to `tokens` with A fixed: log(tokens / A) / log(budget)."""
    return math.log(tokens / A) / math.log(budget)


def params_for(tokens: float, budget: float = FLAGSHIP_FLOPS) -> float:
    """Parameters from C ≈ 6·N·D (the approximation the paper's 402B follows)."""
    return budget / (6 * tokens)


def discrepancy() -> dict[str, float]:
    """The rounded law vs the published flagship numbers."""
    rounded = optimal_tokens(FLAGSHIP_FLOPS)
    return {
        "budget": FLAGSHIP_FLOPS,
        "tokens_rounded_law": rounded,
        "tokens_published": FLAGSHIP_TOKENS,
        "ratio_published_over_rounded": FLAGSHIP_TOKENS / rounded,
        "alpha_for_published": alpha_for(FLAGSHIP_TOKENS),
        "params_from_6ND_published": params_for(FLAGSHIP_TOKENS),
        "params_from_6ND_rounded": params_for(rounded),
    }
