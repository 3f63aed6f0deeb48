"""Context parallelism as the paper does it [P §3.3.2]: the sequence is cut into 2·CP chunks and rank i
holds chunks i and 2·CP−1−i (so every rank has as much causal work as the others); K and V are
all-gathered and each rank attends with its local queries over the whole sequence, which makes the
document mask easy (it is just a mask over gathered positions). Under GQA the gathered K/V are small.

torch's own context_parallel does not run on CPU, and gloo's functional all_gather returns wrong
gradients for non-contiguous inputs (platform-notes.md), so the all-gather is an autograd function
written here: all-gather forward, sum of the gradient slices back to their owner in backward.

The model knows nothing of this: a caller feeds a rank's chunks of the tokens (or hidden states) with
the positions and attention kernel `context_parallel` builds from the whole sequence's document ids.
Pipeline stages pass the document ids on and build the same per stage, so context parallelism composes
with pipeline parallelism.
"""

from __future__ import annotations

import torch
import torch.distributed as dist
from torch import Tensor

from herd.model.layers import AttentionKernel


def chunk_indices(T: int, cp: int, rank: int, device: torch.device | str = "cpu") -> Tensor:
    """Global positions held by `rank`: chunks rank and 2·cp−1−rank of 2·cp equal chunks."""
    if T % (2 * cp):
        raise ValueError(f"sequence length {T} is not divisible by 2·cp = {2 * cp}")
    c = T // (2 * cp)
    first = torch.arange(rank * c, (rank + 1) * c, device=device)
    second = torch.arange((2 * cp - 1 - rank) * c, (2 * cp - rank) * c, device=device)
    return torch.cat([first, second])


class _AllGatherSeq(torch.autograd.Function):
    """Concatenate every rank's (B, H, t, D) along t in rank order; backward returns this rank's slice
    of the summed gradient (every rank's attention used this rank's K/V)."""

    @staticmethod
    def forward(ctx, x: Tensor, group: dist.ProcessGroup) -> Tensor:
        ctx.group, ctx.t = group, x.shape[2]
        parts = [torch.empty_like(x) for _ in range(dist.get_world_size(group))]
        dist.all_gather(parts, x.contiguous(), group=group)
        return torch.cat(parts, dim=2)

    @staticmethod
    def backward(ctx, grad: Tensor) -> tuple[Tensor, None]:
        grad = grad.contiguous()  # gloo silently mis-reduces non-contiguous buffers
        dist.all_reduce(grad, group=ctx.group)  # reduce-scatter expressed with what gloo supports
        r = dist.get_rank(ctx.group)
        return grad[:, :, r * ctx.t : (r + 1) * ctx.t].contiguous(), None


def all_gather_seq(x: Tensor, group: dist.ProcessGroup) -> Tensor:
    return _AllGatherSeq.apply(x, group)


class ContextParallelAttention(AttentionKernel):
    """The attention kernel of one CP rank: local queries, keys/values gathered from every rank, a
    block-causal mask over global positions and document ids."""

    def __init__(self, group: dist.ProcessGroup, doc_ids: Tensor | None, T: int, cp: int, rank: int) -> None:
        device = doc_ids.device if doc_ids is not None else "cpu"
        q_pos = chunk_indices(T, cp, rank, device)  # (t,)
        k_pos = torch.cat([chunk_indices(T, cp, r, device) for r in range(cp)])  # (T,) in gathered order
        visible = k_pos[None, :] <= q_pos[:, None]  # (t, T) causal over global positions
        if doc_ids is None:
            mask = visible[None, None]
        else:
            same = doc_ids[:, q_pos, None] == doc_ids[:, None, k_pos]  # (B, t, T)
            mask = (same & visible)[:, None]
        super().__init__(mask=mask)
        self.group = group

    def __call__(self, q: Tensor, k: Tensor, v: Tensor, layer: int) -> Tensor:
        k, v = all_gather_seq(k, self.group), all_gather_seq(v, self.group)
        return super().__call__(q, k, v, layer)


def context_parallel(
    doc_ids: Tensor, group: dist.ProcessGroup, cp: int, rank: int
) -> tuple[Tensor, ContextParallelAttention]:
    """Positions and attention of CP rank `rank`'s tokens (its chunks, `chunk_indices`) of packed
    sequences whose whole document ids (B, T) are `doc_ids`: pass both to the model with the chunks."""
    T = doc_ids.shape[1]
    return chunk_indices(T, cp, rank, doc_ids.device), ContextParallelAttention(group, doc_ids, T, cp, rank)
