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
import torch.nn.functional as F
from torch import Tensor
from torch.utils.checkpoint import checkpoint

from herd.core.logging import get_logger
from herd.model import Transformer
from herd.model.layers import document_causal
from herd.parallel.activation_checkpoint import apply_activation_checkpointing, remove_activation_checkpointing
from herd.posttrain.common import Variant, adamw, clip_and_step, shuffled_batches, train_variants
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
    # Recompute each block's activations in backward: a 135M model's 30 blocks otherwise keep ~1.4 MB per
    # token (4 × 512 tokens: ~3 GB; docs/posttraining.md, "SFT memory"). Costs about one more forward.
    activation_checkpointing: bool = False
    micro_rows: int = 0  # rows per forward/backward, gradients accumulated over the batch (0: all at once)
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


# Trained positions projected to the vocabulary at a time: 512 × 49,152 fp32 logits are ~100 MB, and only
# one chunk's live at once (each is recomputed in backward), where a (B, T, V) tensor is 0.4 GB per copy.
LOSS_CHUNK = 512


def batch_loss(model: Transformer, batch: Batch) -> Tensor:
    """Mean cross-entropy over the trained (assistant) targets; equal to `sft_loss` on the full logits
    [P §4.1.3], but logits exist only at trained positions, LOSS_CHUNK at a time."""
    return summed_nll(model, batch) / max(int(batch.loss_mask.sum()), 1)


def summed_nll(model: Transformer, batch: Batch) -> Tensor:
    """Sum of −log p over the trained targets (a scalar), for averaging over several micro-batches."""
    # Unpacked rows are one causal sequence each: the model's default positions and attention.
    layout = () if batch.doc_ids is None else document_causal(batch.doc_ids, model.cfg.attn_impl)
    hidden = model(batch.inputs, *layout, return_hidden=True)  # (B, T, dim)
    sel = batch.loss_mask.bool()
    h, targets = hidden[sel], batch.targets[sel]  # (N, dim), (N,)
    total = hidden.new_zeros((), dtype=torch.float32)
    for i in range(0, len(targets), LOSS_CHUNK):
        chunk, tgt = h[i : i + LOSS_CHUNK], targets[i : i + LOSS_CHUNK]
        if torch.is_grad_enabled():  # recomputed in backward: this chunk's logits are not kept
            total = total + checkpoint(_chunk_nll, model, chunk, tgt, use_reentrant=False)
        else:
            total = total + _chunk_nll(model, chunk, tgt)
    return total


def _chunk_nll(model: Transformer, h: Tensor, targets: Tensor) -> Tensor:
    return F.cross_entropy(model.project(h).float(), targets, reduction="sum")


def micro_batches(batch: Batch, rows: int) -> list[Batch]:
    """`batch` cut into groups of `rows` rows (0: the whole batch), each trimmed of columns that are
    padding in all its rows (padding trails every row, so trimming changes no loss)."""
    if rows <= 0 or rows >= len(batch.inputs):
        return [batch]
    out = []
    for i in range(0, len(batch.inputs), rows):
        part = Batch(batch.inputs[i : i + rows], batch.targets[i : i + rows], batch.loss_mask[i : i + rows],
                     None if batch.doc_ids is None else batch.doc_ids[i : i + rows])  # fmt: skip
        out.append(_trim(part))
    return out


def _trim(b: Batch) -> Batch:
    if b.doc_ids is None:  # unpacked rows carry no padding marker; leave them as they are
        return b
    width = int((b.doc_ids >= 0).any(0).nonzero().max()) + 1 if (b.doc_ids >= 0).any() else b.inputs.shape[1]
    return Batch(b.inputs[:, :width], b.targets[:, :width], b.loss_mask[:, :width], b.doc_ids[:, :width])


def train_sft(model: Transformer, examples: Sequence[Example], cfg: SFTConfig, pad_id: int = 0) -> dict[str, Any]:
    """Train in place (averaging the variants); returns loss and throughput numbers."""

    def run(m: Transformer, v: Variant) -> dict[str, Any]:
        return _train_one(m, make_batches(examples, cfg, v.seed, pad_id), cfg.lr * v.lr_scale, cfg)

    _, metrics = train_variants(model, cfg.variants, run)
    return {"variants": metrics}


def _train_one(model: Transformer, batches: list[Batch], lr: float, cfg: SFTConfig) -> dict[str, Any]:
    if cfg.activation_checkpointing:
        apply_activation_checkpointing(model)
    try:
        return _train_steps(model, batches, lr, cfg)
    finally:
        if cfg.activation_checkpointing:
            remove_activation_checkpointing(model)  # the model saved and sampled afterwards is the plain one


def _accumulated_step(optim: torch.optim.Optimizer, model: Transformer, batch: Batch, micro_rows: int) -> float:
    """One optimizer step on `batch`, its gradient summed over micro-batches: each backward carries its
    part of the batch's mean (its NLL sum over the batch's trained-token count), so the update equals the
    whole batch's."""
    optim.zero_grad(set_to_none=True)
    n = max(int(batch.loss_mask.sum()), 1)
    total = 0.0
    for part in micro_batches(batch, micro_rows):
        nll = summed_nll(model, part)
        (nll / n).backward()
        total += float(nll.detach())
    clip_and_step(optim, model)
    return total / n


def _train_steps(model: Transformer, batches: list[Batch], lr: float, cfg: SFTConfig) -> dict[str, Any]:
    model.train()
    optim = adamw(model, lr, cfg.weight_decay)
    if cfg.max_steps:
        batches = batches[: cfg.max_steps]
    losses, tokens, start = [], 0, time.perf_counter()
    for batch in batches:
        losses.append(_accumulated_step(optim, model, batch, cfg.micro_rows))
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
