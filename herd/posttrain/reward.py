"""Reward model: a scalar head on a pretrained checkpoint, trained with Bradley–Terry [P §4.1.2].

The paper's one-row form puts the prompt once and its 2–3 responses after it, shuffled, in one sequence.
Each response attends only to the prompt and to itself and takes the positions it would have right after
the prompt, so its reward is exactly the reward of prompt+response alone: the loss equals the loss on
separate pairs, at the cost of one prompt instead of one per response.
"""

from __future__ import annotations

import random
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from herd.core.logging import get_logger
from herd.model import Transformer
from herd.model.layers import AttentionKernel
from herd.posttrain.common import Variant, adamw, save_model, shuffled_batches, step, train_variants
from herd.posttrain.data import Preference
from herd.posttrain.losses import ranked_bt_loss, ranked_pairs
from herd.tokenizer.chat import ChatFormatLike

log = get_logger(__name__)
HEAD_FILE = "reward_head.pt"


@dataclass
class RMConfig:
    lr: float = 1e-5
    epochs: int = 1
    batch_size: int = 8
    max_len: int = 256  # per row: prompt + all responses
    one_row: bool = True  # the paper's prompt-once form; False = one sequence per response
    max_steps: int = 0
    variants: list[Variant] = field(default_factory=lambda: [Variant()])


class RewardModel(nn.Module):
    """Transformer trunk + linear head read at the last token of each response."""

    def __init__(self, trunk: Transformer) -> None:
        super().__init__()
        self.trunk = trunk
        self.head = nn.Linear(trunk.cfg.dim, 1, bias=True)
        nn.init.zeros_(self.head.weight)  # start at reward 0 everywhere: no pair preferred before training
        nn.init.zeros_(self.head.bias)

    def forward(self, batch: RewardBatch) -> Tensor:
        """Rewards (B, N) of each row's responses, best-ranked first."""
        h = self.trunk(batch.tokens, batch.positions, AttentionKernel(mask=batch.mask), return_hidden=True)
        rows = torch.arange(h.shape[0])[:, None]
        return self.head(h[rows, batch.ends]).squeeze(-1)  # (B, N)

    def save(self, out: Path, tokenizer_file: Path | None) -> None:
        save_model(self.trunk, out, tokenizer_file)
        torch.save(self.head.state_dict(), out / HEAD_FILE)

    @classmethod
    def load(cls, path: Path) -> RewardModel:
        from herd.model import load_model

        rm = cls(load_model(path))
        rm.head.load_state_dict(torch.load(path / HEAD_FILE, weights_only=True))
        return rm.eval()


@dataclass
class RewardBatch:
    tokens: Tensor  # (B, T)
    positions: Tensor  # (B, T): a response continues the prompt's positions
    mask: Tensor  # (B, 1, T, T): causal, and a response sees only the prompt and itself
    ends: Tensor  # (B, N): index of each response's last token, in rank order (best first)
    n_valid: Tensor  # (B,)


@dataclass
class Encoded:
    prompt: list[int]
    responses: list[list[int]]  # best first


def encode_preference(chat: ChatFormatLike, pref: Preference, max_len: int) -> Encoded:
    """Prompt up to the assistant header; each response = its content + end token (as the policy writes it)."""
    prompt = chat.encode_prompt(pref.prompt)
    full = [chat.encode_dialog([*pref.prompt, {"role": "assistant", "content": r}])[0] for r in pref.responses]
    responses = [f[len(prompt) :] if f[: len(prompt)] == prompt else f[len(_common(f, prompt)) :] for f in full]
    budget = max(8, (max_len - len(prompt)) // len(responses))
    prompt = (
        prompt[-(max_len - budget * len(responses)) :] if len(prompt) + budget * len(responses) > max_len else prompt
    )
    return Encoded(prompt, [r[:budget] for r in responses])


def _common(a: list[int], b: list[int]) -> list[int]:
    n = next((i for i, (x, y) in enumerate(zip(a, b)) if x != y), min(len(a), len(b)))
    return a[:n]


def one_row_batch(items: Sequence[Encoded], rng: random.Random | None = None, pad_id: int = 0) -> RewardBatch:
    """Prompt once, then the responses in shuffled order [P §4.1.2]; `ends` stay in rank order."""
    n_max = max(len(e.responses) for e in items)
    rows, segs, poss, ends = [], [], [], []
    for e in items:
        order = list(range(len(e.responses)))
        if rng is not None:
            rng.shuffle(order)
        tokens, seg, pos = list(e.prompt), [0] * len(e.prompt), list(range(len(e.prompt)))
        end = [0] * n_max
        for i in order:
            r = e.responses[i]
            tokens += r
            seg += [i + 1] * len(r)
            pos += range(len(e.prompt), len(e.prompt) + len(r))
            end[i] = len(tokens) - 1
        rows.append(tokens)
        segs.append(seg)
        poss.append(pos)
        ends.append(end)
    return _collate(rows, segs, poss, ends, [len(e.responses) for e in items], pad_id)


def separate_batch(items: Sequence[Encoded], pad_id: int = 0) -> RewardBatch:
    """The reference form: one causal sequence per (prompt, response); N columns per item."""
    n_max = max(len(e.responses) for e in items)
    rows = []
    for e in items:
        for i in range(n_max):
            rows.append(e.prompt + e.responses[min(i, len(e.responses) - 1)])
    segs = [[0] * len(r) for r in rows]
    poss = [list(range(len(r))) for r in rows]
    ends = [[len(r) - 1] for r in rows]
    flat = _collate(rows, segs, poss, ends, [1] * len(rows), pad_id)
    B = len(items)
    # Reshape to (B, N) by reading each row's single end; forward is run on the flat batch.
    flat.n_valid = torch.tensor([len(e.responses) for e in items])
    flat.ends = flat.ends.view(B * n_max, 1)
    return flat


def _collate(rows, segs, poss, ends, n_valid, pad_id) -> RewardBatch:
    T = max(len(r) for r in rows)
    B = len(rows)
    tokens = torch.full((B, T), pad_id, dtype=torch.long)
    seg = torch.full((B, T), -1, dtype=torch.long)  # padding: its own segment, so its softmax row is non-empty
    pos = torch.zeros(B, T, dtype=torch.long)
    for b, (r, s, p) in enumerate(zip(rows, segs, poss)):
        tokens[b, : len(r)] = torch.tensor(r)
        seg[b, : len(s)] = torch.tensor(s)
        pos[b, : len(p)] = torch.tensor(p)
    causal = torch.ones(T, T, dtype=torch.bool).tril()
    same = seg[:, :, None] == seg[:, None, :]
    sees_prompt = (seg[:, None, :] == 0) & (seg[:, :, None] >= 0)
    mask = (causal & (same | sees_prompt))[:, None]  # (B, 1, T, T)
    return RewardBatch(tokens, pos, mask, torch.tensor(ends), torch.tensor(n_valid))


def rewards_separate(rm: RewardModel, items: Sequence[Encoded]) -> Tensor:
    """Rewards (B, N) computed one sequence per response (the form the one-row form must equal)."""
    n_max = max(len(e.responses) for e in items)
    flat = separate_batch(items)
    return rm(flat).view(len(items), n_max)


def train_rm(rm: RewardModel, train: Sequence[Encoded], cfg: RMConfig) -> dict[str, Any]:
    def run(m: RewardModel, v: Variant) -> dict[str, Any]:
        return _train_one(m, train, cfg, cfg.lr * v.lr_scale, v.seed)

    _, metrics = train_variants(rm, cfg.variants, run)
    return {"variants": metrics}


def _train_one(rm: RewardModel, items: Sequence[Encoded], cfg: RMConfig, lr: float, seed: int) -> dict[str, Any]:
    rm.train()
    optim = adamw(rm, lr)
    rng = random.Random(seed)
    losses, start = [], time.perf_counter()
    for i, chunk in enumerate(shuffled_batches(items, cfg.batch_size, cfg.epochs, seed)):
        if cfg.max_steps and i >= cfg.max_steps:
            break
        if cfg.one_row:
            batch = one_row_batch(chunk, rng)
            loss = ranked_bt_loss(rm(batch), batch.n_valid)
        else:
            loss = ranked_bt_loss(rewards_separate(rm, chunk), torch.tensor([len(e.responses) for e in chunk]))
        step(optim, rm, loss)
        losses.append(loss.item())
    rm.eval()
    log.info("rm: %d steps, loss %.3f → %.3f", len(losses), losses[0] if losses else 0, losses[-1] if losses else 0)
    return {"steps": len(losses), "first_loss": losses[0] if losses else None, "seconds": time.perf_counter() - start}


@torch.no_grad()
def accuracy(rm: RewardModel, items: Sequence[Encoded], batch_size: int = 16) -> dict[str, float]:
    """Fraction of ranked pairs (better, worse) with r_better > r_worse, and the mean margin."""
    rm.eval()
    right, margin, n = 0.0, 0.0, 0
    for i in range(0, len(items), batch_size):
        chunk = items[i : i + batch_size]
        batch = one_row_batch(chunk)
        r = rm(batch)
        for b, e in enumerate(chunk):
            for hi, lo in ranked_pairs(len(e.responses)):
                d = float(r[b, hi] - r[b, lo])
                right += 1.0 if d > 0 else 0.5 if d == 0 else 0.0
                margin += d
                n += 1
    return {"accuracy": right / max(n, 1), "margin": margin / max(n, 1), "pairs": n}


@torch.no_grad()
def score(
    rm: RewardModel, prompts: Sequence[list[int]], responses: Sequence[list[int]], batch_size: int = 32
) -> list[float]:
    """Reward of each (prompt tokens, response tokens) pair."""
    rm.eval()
    out: list[float] = []
    for i in range(0, len(prompts), batch_size):
        items = [Encoded(p, [r]) for p, r in zip(prompts[i : i + batch_size], responses[i : i + batch_size])]
        out += rm(one_row_batch(items))[:, 0].tolist()
    return out
