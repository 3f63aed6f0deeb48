"""Supervised fine-tuning: chat-format dialogs, loss on assistant tokens only, packed with a document mask.

Packing puts several dialogs in one row; `doc_ids` make attention block-causal, so a packed dialog never
sees another and its loss equals the loss it would have alone [P §4.1.3: LR 1e-5].
"""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import Tensor

from herd.core.logging import get_logger
from herd.model import Transformer
from herd.model.layers import document_causal
from herd.posttrain.common import Variant, adamw, shuffled_batches, step, train_variants
from herd.posttrain.losses import sft_loss
from herd.tokenizer.chat import ChatFormatLike

log = get_logger(__name__)


@dataclass
class SFTConfig:
    lr: float = 1e-5  # [P §4.1.3]
    epochs: int = 1
    batch_rows: int = 8
    seq_len: int = 256
    pack: bool = True
    max_steps: int = 0  # 0: run the epochs
    weight_decay: float = 0.0
    variants: list[Variant] = field(default_factory=lambda: [Variant()])


@dataclass
class Example:
    tokens: list[int]
    mask: list[int]  # 1 on tokens that are trained on (assistant content + end token)


@dataclass
class Batch:
    inputs: Tensor  # (B, T)
    targets: Tensor  # (B, T)
    loss_mask: Tensor  # (B, T) on targets
    doc_ids: Tensor | None  # (B, T), None for unpacked rows


def encode_dialogs(chat: ChatFormatLike, dialogs: Sequence[Sequence[Mapping[str, Any]]], max_len: int) -> list[Example]:
    """Encode and cut to `max_len`; a dialog with no trained token left after cutting is skipped."""
    out = []
    for messages in dialogs:
        tokens, mask = chat.encode_dialog(messages)
        tokens, mask = tokens[:max_len], mask[:max_len]
        if sum(mask[1:]):
            out.append(Example(tokens, mask))
    return out


def pack(examples: Sequence[Example], seq_len: int) -> list[list[Example]]:
    """Greedy first-fit in the given order: rows of whole examples summing to ≤ seq_len tokens."""
    rows: list[list[Example]] = []
    used: list[int] = []
    for ex in examples:
        n = len(ex.tokens)
        for i, u in enumerate(used):
            if u + n <= seq_len:
                rows[i].append(ex)
                used[i] += n
                break
        else:
            rows.append([ex])
            used.append(n)
    return rows


def collate(rows: Sequence[Sequence[Example]], pad_id: int = 0, packed: bool = True) -> Batch:
    """Rows of examples → shifted inputs/targets; a target is trained only inside its own document."""
    width = max(sum(len(e.tokens) for e in row) for row in rows)
    tokens = torch.full((len(rows), width), pad_id, dtype=torch.long)
    mask = torch.zeros(len(rows), width, dtype=torch.long)
    docs = torch.full((len(rows), width), -1, dtype=torch.long)  # padding is its own "document"
    for b, row in enumerate(rows):
        at = 0
        for d, ex in enumerate(row):
            n = len(ex.tokens)
            tokens[b, at : at + n] = torch.tensor(ex.tokens)
            mask[b, at : at + n] = torch.tensor(ex.mask)
            docs[b, at : at + n] = d
            at += n
    same_doc = docs[:, 1:] == docs[:, :-1]  # never train to predict the next document's first token
    return Batch(tokens[:, :-1], tokens[:, 1:], mask[:, 1:] * same_doc, docs[:, :-1] if packed else None)


def make_batches(examples: Sequence[Example], cfg: SFTConfig, seed: int, pad_id: int) -> list[Batch]:
    rows = pack(examples, cfg.seq_len) if cfg.pack else [[e] for e in examples]
    return [collate(b, pad_id, cfg.pack) for b in shuffled_batches(rows, cfg.batch_rows, cfg.epochs, seed)]


def batch_loss(model: Transformer, batch: Batch) -> Tensor:
    # Unpacked rows are one causal sequence each: the model's default positions and attention.
    layout = () if batch.doc_ids is None else document_causal(batch.doc_ids, model.cfg.attn_impl)
    logits = model(batch.inputs, *layout)  # (B, T, V)
    return sft_loss(logits, batch.targets, batch.loss_mask)


def train_sft(model: Transformer, examples: Sequence[Example], cfg: SFTConfig, pad_id: int = 0) -> dict[str, Any]:
    """Train in place (averaging the variants); returns loss and throughput numbers."""

    def run(m: Transformer, v: Variant) -> dict[str, Any]:
        return _train_one(m, make_batches(examples, cfg, v.seed, pad_id), cfg.lr * v.lr_scale, cfg)

    _, metrics = train_variants(model, cfg.variants, run)
    return {"variants": metrics}


def _train_one(model: Transformer, batches: list[Batch], lr: float, cfg: SFTConfig) -> dict[str, Any]:
    model.train()
    optim = adamw(model, lr, cfg.weight_decay)
    if cfg.max_steps:
        batches = batches[: cfg.max_steps]
    losses, tokens, start = [], 0, time.perf_counter()
    for batch in batches:
        loss = batch_loss(model, batch)
        step(optim, model, loss)
        losses.append(loss.item())
        tokens += batch.inputs.numel()
    seconds = time.perf_counter() - start
    model.eval()
    log.info("sft: %d steps, loss %.3f → %.3f", len(losses), losses[0] if losses else 0, losses[-1] if losses else 0)
    return {
        "steps": len(losses),
        "first_loss": losses[0] if losses else None,
        "last_loss": sum(losses[-5:]) / max(1, len(losses[-5:])),
        "tokens_per_s": tokens / max(seconds, 1e-9),
    }


@torch.no_grad()
def held_out_loss(model: Transformer, examples: Sequence[Example], cfg: SFTConfig, pad_id: int = 0) -> float:
    model.eval()
    total, count = 0.0, 0
    rows = pack(examples, cfg.seq_len) if cfg.pack else [[e] for e in examples]
    for i in range(0, len(rows), cfg.batch_rows):
        b = collate(rows[i : i + cfg.batch_rows], pad_id, cfg.pack)
        n = int(b.loss_mask.sum())
        total += float(batch_loss(model, b)) * n
        count += n
    return total / max(count, 1)
