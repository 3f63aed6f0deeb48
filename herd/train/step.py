"""One optimizer step for any layout (plain, FSDP, TP, PP, CP, and their products): forward, backward,
gradient clipping and the AdamW update, plus the held-out loss through the same forward.

Every layout trains on the same global batch: each data-parallel rank takes its rows, each context-
parallel rank its two sequence chunks. Losses are sums of token losses divided by the global batch's
label count, so micro-batches, ranks and pipeline stages add up to the single-process mean loss and
gradient.
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from herd.core.runtime import autocast
from herd.data.loader import IGNORE_INDEX, Batch
from herd.parallel.cp import chunk_indices
from herd.parallel.grads import clip_grad_norm
from herd.parallel.parallelize import ParallelContext
from herd.parallel.pp import Pipeline


def summed_token_loss(logits: Tensor, labels: Tensor) -> Tensor:
    """Σ cross-entropy over the labelled tokens, computed in fp32 whatever the logits' dtype."""
    return F.cross_entropy(logits.float().flatten(0, 1), labels.flatten(), ignore_index=IGNORE_INDEX, reduction="sum")


class ScaledLoss:
    """Σ token losses × a factor, for pipeline schedules, which fix their loss function when built. The
    factor is set only for the extent of one `scaled` block, so no step leaves it behind for another."""

    def __init__(self, token_loss: Callable[[Tensor, Tensor], Tensor]) -> None:
        self.token_loss, self._factor = token_loss, 1.0

    def __call__(self, logits: Tensor, labels: Tensor) -> Tensor:
        return self.token_loss(logits, labels) * self._factor

    @contextlib.contextmanager
    def scaled(self, factor: float) -> Iterator[None]:
        self._factor = factor
        try:
            yield
        finally:
            self._factor = 1.0


@dataclass(frozen=True)
class StepOutcome:
    loss: float  # the global batch's mean token loss
    grad_norm: float  # before clipping; nan when the update was skipped before clipping
    skipped: str | None  # why the update was not applied, or None


def local_rows(batch: Batch, par: ParallelContext) -> Batch:
    """This data-parallel rank's rows of a global batch (the same global batch for every layout)."""
    dp, r = par.dims.dp, par.coordinate("dp")
    n = batch.tokens.shape[0]
    if n % dp:
        raise ValueError(f"a batch of {n} sequences cannot be split over {dp} data-parallel ranks")
    rows = slice(r * n // dp, (r + 1) * n // dp)
    return Batch(batch.tokens[rows], batch.labels[rows], batch.doc_ids[rows])


def micro_batches(batch: Batch, size: int) -> list[Batch]:
    """Rows in groups of `size` sequences: one forward each, gradients accumulate over them."""
    n = batch.tokens.shape[0]
    return [Batch(*(t[i : i + size] for t in (batch.tokens, batch.labels, batch.doc_ids))) for i in range(0, n, size)]


class TrainStep:
    """Forward, backward, clip and update of one global batch on this rank's part of the model."""

    def __init__(
        self,
        model: nn.Module,
        optim: torch.optim.Optimizer,
        par: ParallelContext,
        pipeline: Pipeline | None,
        loss: ScaledLoss,
        device: torch.device,
        dtype: torch.dtype,
        micro_batch_size: int,
        grad_clip: float,
        attn_impl: str = "auto",
    ) -> None:
        self.model, self.optim, self.par, self.pipeline, self.loss = model, optim, par, pipeline, loss
        self.device, self.dtype = device, dtype
        self.micro_batch_size, self.grad_clip = micro_batch_size, grad_clip
        self.attn_impl = attn_impl

    # -- the model calls: inputs, forward, pipeline
    def model_inputs(self, b: Batch, parallel: bool = True) -> tuple[dict[str, Tensor], Tensor]:
        """The model's keyword arguments for a batch and the labels this rank scores. Under context
        parallelism a rank feeds its two sequence chunks; `forward` gives them their global positions and
        K/V-gathering attention (ParallelContext.attention)."""
        tokens, labels, doc_ids = (t.to(self.device) for t in (b.tokens, b.labels, b.doc_ids))
        cp = self.par.dims.cp if parallel else 1
        if cp == 1:
            return {"tokens": tokens, "doc_ids": doc_ids}, labels
        idx = chunk_indices(tokens.shape[1], cp, self.par.coordinate("cp"), self.device)
        return {"tokens": tokens[:, idx], "doc_ids": doc_ids}, labels[:, idx]

    def forward(self, model: nn.Module, b: Batch, parallel: bool = True) -> Tensor:
        """Σ token losses of `b` on `model` (`parallel=False`: an unsharded copy that sees whole rows)."""
        kwargs, labels = self.model_inputs(b, parallel)
        with autocast(self.device, self.dtype):
            positions, attention = self.par.attention(kwargs["doc_ids"], self.attn_impl, parallel)
            logits = model(kwargs["tokens"], positions, attention)
        return self.loss.token_loss(logits, labels)

    def forward_pipeline(self, b: Batch, factor: float, train: bool) -> float:
        """All micro-batches through the pipeline, each loss × `factor` (and backward if `train`); the
        summed losses, known on the last stage, go to every rank."""
        inputs, labels = self.model_inputs(b)
        with self.loss.scaled(factor):
            losses = self.pipeline.run(inputs["tokens"], inputs["doc_ids"], labels, train=train)
        return self.par.sum(sum(x.item() for x in losses), "pp")

    # -- training
    def __call__(self, full: Batch, lr: float, skip_reason: Callable[[float], str | None]) -> StepOutcome:
        """Train on one global batch at `lr`, unless `skip_reason(mean loss)` names why not."""
        loss = self.backward(full)
        reason = skip_reason(loss)
        grad_norm = float("nan")
        if reason is None:
            counted_elsewhere = self.pipeline.duplicate_weights() if self.pipeline is not None else []
            grad_norm = clip_grad_norm(self.model.parameters(), self.grad_clip, self.par.group("pp"), counted_elsewhere)
            reason = None if math.isfinite(grad_norm) else "nonfinite_grad"
        if reason is None:
            for g in self.optim.param_groups:
                g["lr"] = lr
            self.optim.step()
        self.optim.zero_grad(set_to_none=True)
        return StepOutcome(loss, grad_norm, reason)

    def backward(self, full: Batch) -> float:
        """Gradients of the global batch's mean token loss into .grad; returns that mean loss."""
        n_labels = full.n_labels
        rows = local_rows(full, self.par)
        # FSDP averages gradients over its ranks; scaling by their count turns the mean into the sum
        # of every rank's share of sum(token losses) / n_labels: the single-process gradient.
        scale = self.par.dims.dp * self.par.dims.cp
        if self.pipeline is not None:
            return self.par.sum(self.forward_pipeline(rows, scale / max(n_labels, 1), train=True) / scale)
        loss = 0.0
        for b in micro_batches(rows, self.micro_batch_size):
            with self.par.loss_context():  # the loss and its backward, on vocabulary-sharded logits under TP
                micro = self.forward(self.model, b) / max(n_labels, 1)
                (micro * scale).backward()  # grads accumulate in the fp32 parameters' .grad
            loss += micro.item()
        return self.par.sum(loss)

    # -- evaluation
    @torch.no_grad()
    def held_out_loss(self, batches: list[Batch], model: nn.Module | None = None) -> float | None:
        """Mean token loss over global batches: on the trained model (every layout), or on an unsharded
        copy such as an export or an average (`model`, on this rank alone, every row)."""
        if not batches:
            return None
        unsharded = model is not None
        model = model or self.model
        model.to(self.device)
        was_training = model.training
        model.eval()
        total, count = 0.0, 0
        for full in batches:
            b = full if unsharded else local_rows(full, self.par)
            if self.pipeline is not None and not unsharded:
                total += self.forward_pipeline(b, 1.0, train=False)
            else:
                with self.par.loss_context() if not unsharded else contextlib.nullcontext():
                    total += float(self.forward(model, b, parallel=not unsharded))
            count += full.n_labels
        model.train(was_training)
        return (total if unsharded else self.par.sum(total)) / max(count, 1)
