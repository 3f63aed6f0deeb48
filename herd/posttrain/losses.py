"""Post-training losses as pure tensor functions [P §4.1]; every one is tested against hand-worked numbers.

Log-probabilities of a response are sums over its trained tokens (`sequence_logps`). Rewards are scalars.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor


def token_logps(logits: Tensor, targets: Tensor) -> Tensor:
    """log p(target_t | prefix) per position: logits (B, T, V), targets (B, T) → (B, T), in fp32."""
    logp = torch.log_softmax(logits.float(), dim=-1)
    return logp.gather(-1, targets.clamp(min=0).unsqueeze(-1)).squeeze(-1)


def sft_loss(logits: Tensor, targets: Tensor, mask: Tensor) -> Tensor:
    """Cross-entropy averaged over the masked (target) tokens only; prompt tokens carry no loss [P §4.1.3]."""
    mask = mask.float()
    return -(token_logps(logits, targets) * mask).sum() / mask.sum().clamp(min=1)


def sequence_logps(logits: Tensor, targets: Tensor, mask: Tensor) -> Tensor:
    """Sum of log-probs over each row's masked tokens: (B, T, V), (B, T), (B, T) → (B,)."""
    return (token_logps(logits, targets) * mask.float()).sum(-1)


def bt_loss(r_chosen: Tensor, r_rejected: Tensor) -> Tensor:
    """Bradley–Terry loss −log σ(r_c − r_r), mean over pairs; Llama 2's objective without the margin [P §4.1.2]."""
    return -F.logsigmoid(r_chosen - r_rejected).mean()


def ranked_pairs(n_responses: int) -> list[tuple[int, int]]:
    """(better, worse) index pairs of a ranking best-first: 3 responses (edited > chosen > rejected) give 3."""
    return [(i, j) for i in range(n_responses) for j in range(i + 1, n_responses)]


def ranked_bt_loss(rewards: Tensor, n_valid: Tensor) -> Tensor:
    """BT loss over every ordered pair of each row's ranked responses (best first), mean over all pairs.

    rewards (B, N) with N ≤ 3; n_valid (B,) how many of each row's N rewards are real. Equal to `bt_loss`
    on the same pairs written out one per row, so the one-row form changes cost, not the objective.
    """
    N = rewards.shape[1]
    terms, weights = [], []
    for i, j in ranked_pairs(N):
        terms.append(-F.logsigmoid(rewards[:, i] - rewards[:, j]))
        weights.append((n_valid > j).float())  # pair (i, j) exists when response j exists
    t, w = torch.stack(terms, 1), torch.stack(weights, 1)  # (B, n_pairs)
    return (t * w).sum() / w.sum().clamp(min=1)


def dpo_rewards(pi_logps: Tensor, ref_logps: Tensor, beta: float) -> Tensor:
    """DPO's implicit reward β·(log π − log π_ref) per sequence."""
    return beta * (pi_logps - ref_logps)


def dpo_loss(
    pi_chosen: Tensor,
    pi_rejected: Tensor,
    ref_chosen: Tensor,
    ref_rejected: Tensor,
    beta: float = 0.1,
    nll_coef: float = 0.0,
    chosen_tokens: Tensor | None = None,
) -> tuple[Tensor, Tensor, Tensor]:
    """DPO loss with an optional NLL term on chosen responses [P §4.1.4: β = 0.1, NLL ×0.2].

    Inputs are summed log-probs (B,) over the trained tokens (headers and end tokens already masked out).
    The NLL is the mean per-token negative log-likelihood over all chosen tokens in the batch
    (`chosen_tokens` (B,) counts them), as TRL's "sft" term computes it. Returns (loss, chosen reward,
    rejected reward); the rewards are detached, for logging margins and accuracy.
    """
    margin = (pi_chosen - ref_chosen) - (pi_rejected - ref_rejected)  # policy/reference log-ratio, c minus r
    loss = -F.logsigmoid(beta * margin).mean()
    if nll_coef:
        if chosen_tokens is None:
            raise ValueError("dpo_loss: nll_coef needs chosen_tokens")
        loss = loss + nll_coef * (-pi_chosen.sum() / chosen_tokens.sum().clamp(min=1))
    r_c = dpo_rewards(pi_chosen, ref_chosen, beta).detach()
    r_r = dpo_rewards(pi_rejected, ref_rejected, beta).detach()
    return loss, r_c, r_r
