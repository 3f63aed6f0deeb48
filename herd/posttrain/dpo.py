"""Direct preference optimization with the paper's changes [P §4.1.4]: β = 0.1, LR 1e-5, header and end
tokens masked out of the loss on both responses, and an NLL term (×0.2) on the chosen response.

The reference model is fixed, so its log-probs are computed once before training and cached.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import Tensor

from herd.core.logging import get_logger
from herd.model import Transformer
from herd.posttrain.common import Variant, adamw, shuffled_batches, step, train_variants
from herd.posttrain.data import Preference
from herd.posttrain.losses import dpo_loss, sequence_logps
from herd.tokenizer.chat import ChatFormatLike

log = get_logger(__name__)


@dataclass
class DPOConfig:
    beta: float = 0.1  # [P §4.1.4]
    lr: float = 1e-5  # [P §4.1.4]
    nll_coef: float = 0.2  # [P §4.1.4]
    epochs: int = 1
    batch_size: int = 8
    max_len: int = 256
    max_steps: int = 0
    variants: list[Variant] = field(default_factory=lambda: [Variant()])


@dataclass
class Pair:
    chosen: tuple[list[int], list[int]]  # (tokens, mask): mask on response content only
    rejected: tuple[list[int], list[int]]
    ref: tuple[float, float] = (0.0, 0.0)  # cached reference log-probs (chosen, rejected)


def encode_response(
    chat: ChatFormatLike, prompt: list[dict], response: str, max_len: int
) -> tuple[list[int], list[int]]:
    """Dialog tokens and a mask on the response's content: headers and the end token are excluded."""
    tokens, mask = chat.encode_dialog([*prompt, {"role": "assistant", "content": response}])
    stops = chat.tokenizer.stop_ids
    last = max(i for i, m in enumerate(mask) if m)
    mask = [m if i < last or tokens[i] not in stops else 0 for i, m in enumerate(mask)]
    # Only the final assistant turn is the response; earlier assistant turns are context.
    start = _last_run_start(mask)
    mask = [m if i >= start else 0 for i, m in enumerate(mask)]
    return tokens[-max_len:], mask[-max_len:]


def _last_run_start(mask: list[int]) -> int:
    i = max(j for j, m in enumerate(mask) if m)
    while i > 0 and mask[i - 1]:
        i -= 1
    return i


def encode_pairs(chat: ChatFormatLike, prefs: Sequence[Preference], max_len: int) -> list[Pair]:
    return [
        Pair(encode_response(chat, p.prompt, p.chosen, max_len), encode_response(chat, p.prompt, p.rejected, max_len))
        for p in prefs
    ]


def _collate(seqs: Sequence[tuple[list[int], list[int]]], pad_id: int = 0) -> tuple[Tensor, Tensor]:
    T = max(len(t) for t, _ in seqs)
    tokens = torch.full((len(seqs), T), pad_id, dtype=torch.long)
    mask = torch.zeros(len(seqs), T, dtype=torch.long)
    for b, (t, m) in enumerate(seqs):
        tokens[b, : len(t)] = torch.tensor(t)
        mask[b, : len(m)] = torch.tensor(m)
    return tokens, mask


def logps(model: Transformer, pairs: Sequence[Pair]) -> tuple[Tensor, Tensor, Tensor]:
    """Summed log-probs of chosen (B,), rejected (B,), and the chosen token counts (B,): one forward for both."""
    tokens, mask = _collate([p.chosen for p in pairs] + [p.rejected for p in pairs])
    logits = model(tokens[:, :-1])  # (2B, T-1, V)
    lp = sequence_logps(logits, tokens[:, 1:], mask[:, 1:])
    B = len(pairs)
    return lp[:B], lp[B:], mask[:B, 1:].sum(-1)


@torch.no_grad()
def cache_reference(ref: Transformer, pairs: Sequence[Pair], batch_size: int = 16) -> None:
    """Reference log-probs once, before training: the reference never changes."""
    ref.eval()
    for i in range(0, len(pairs), batch_size):
        chunk = pairs[i : i + batch_size]
        c, r, _ = logps(ref, chunk)
        for p, a, b in zip(chunk, c.tolist(), r.tolist()):
            p.ref = (a, b)


def train_dpo(policy: Transformer, pairs: Sequence[Pair], cfg: DPOConfig) -> dict[str, Any]:
    """Train in place; `pairs` must carry cached reference log-probs (`cache_reference`)."""

    def run(m: Transformer, v: Variant) -> dict[str, Any]:
        return _train_one(m, pairs, cfg, cfg.lr * v.lr_scale, v.seed)

    _, metrics = train_variants(policy, cfg.variants, run)
    return {"variants": metrics}


def _train_one(policy: Transformer, pairs: Sequence[Pair], cfg: DPOConfig, lr: float, seed: int) -> dict[str, Any]:
    policy.train()
    optim = adamw(policy, lr)
    history, start = [], time.perf_counter()
    for i, chunk in enumerate(shuffled_batches(pairs, cfg.batch_size, cfg.epochs, seed)):
        if cfg.max_steps and i >= cfg.max_steps:
            break
        c, r, n_c = logps(policy, chunk)
        ref_c = torch.tensor([p.ref[0] for p in chunk])
        ref_r = torch.tensor([p.ref[1] for p in chunk])
        loss, r_c, r_r = dpo_loss(c, r, ref_c, ref_r, cfg.beta, cfg.nll_coef, n_c)
        step(optim, policy, loss)
        history.append(
            {"loss": loss.item(), "margin": float((r_c - r_r).mean()), "acc": float((r_c > r_r).float().mean())}
        )
    policy.eval()
    if history:
        log.info(
            "dpo: %d steps, loss %.3f → %.3f, reward margin %.3f → %.3f",
            len(history),
            history[0]["loss"],
            history[-1]["loss"],
            history[0]["margin"],
            history[-1]["margin"],
        )
    return {
        "steps": len(history),
        "history": history[:: max(1, len(history) // 20)],
        "seconds": time.perf_counter() - start,
    }


@torch.no_grad()
def preference_metrics(
    policy: Transformer, pairs: Sequence[Pair], beta: float, batch_size: int = 16
) -> dict[str, float]:
    """Held-out: implicit-reward accuracy/margin vs the cached reference, and raw log-prob accuracy/margin."""
    policy.eval()
    acc = margin = lp_acc = lp_margin = 0.0
    for i in range(0, len(pairs), batch_size):
        chunk = pairs[i : i + batch_size]
        c, r, _ = logps(policy, chunk)
        ref_c = torch.tensor([p.ref[0] for p in chunk])
        ref_r = torch.tensor([p.ref[1] for p in chunk])
        m = beta * ((c - ref_c) - (r - ref_r))
        acc += float(((m > 0).float() + 0.5 * (m == 0).float()).sum())  # ties (e.g. policy == reference) count ½
        margin += float(m.sum())
        lp_acc += float((c > r).float().sum())
        lp_margin += float((c - r).sum())
    n = max(len(pairs), 1)
    return {
        "reward_accuracy": acc / n,
        "reward_margin": margin / n,
        "logp_accuracy": lp_acc / n,
        "logp_margin": lp_margin / n,
    }
