"""Context parallelism as the paper does it [P §3.3.2]: the sequence is cut into 2·CP chunks and rank i
holds chunks i and 2·CP−1−i (so every rank has as much causal work as the others); K and V are
all-gathered and each rank attends with its local queries over the whole sequence, which makes the
document mask easy (it is just a mask over gathered positions). Under GQA the gathered K/V are small.

torch's own context_parallel does not run on CPU, and gloo's functional all_gather returns wrong
gradients for non-contiguous inputs (platform-notes.md), so the all-gather is an autograd function
written here: all-gather forward, sum of the gradient slices back to their owner in backward.

`apply_cp` attaches this to a model (or a pipeline stage) from outside: the caller feeds the rank's
chunks of the tokens (or hidden states) with the whole sequence's document ids, and a forward pre-hook
adds the global positions and the K/V-gathering attention. Pipeline stages pass the document ids on, so
context parallelism composes with pipeline parallelism.
"""

from __future__ import annotations

import torch
import torch.distributed as dist
import torch.nn.functional as F
from torch import Tensor, nn

from herd.model.layers import AttnMask


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


class ContextParallelAttention(AttnMask):
    """The attention kernel of one CP rank: local queries, gathered keys/values, block-causal mask over
    global positions and document ids."""

    def __init__(self, group: dist.ProcessGroup, doc_ids: Tensor | None, T: int, cp: int, rank: int) -> None:
        super().__init__()
        device = doc_ids.device if doc_ids is not None else "cpu"
        self.group = group
        self.q_pos = chunk_indices(T, cp, rank, device)  # (t,)
        self.k_pos = torch.cat([chunk_indices(T, cp, r, device) for r in range(cp)])  # (T,) in gathered order
        visible = self.k_pos[None, :] <= self.q_pos[:, None]  # (t, T) causal over global positions
        if doc_ids is None:
            self.mask = visible[None, None]
        else:
            same = doc_ids[:, self.q_pos, None] == doc_ids[:, None, self.k_pos]  # (B, t, T)
            self.mask = (same & visible)[:, None]

    def attend(self, q: Tensor, k: Tensor, v: Tensor) -> Tensor:
        k, v = all_gather_seq(k, self.group), all_gather_seq(v, self.group)
        return F.scaled_dot_product_attention(q, k, v, attn_mask=self.mask, enable_gqa=True)


def apply_cp(model: nn.Module, group: dist.ProcessGroup, cp: int, rank: int) -> nn.Module:
    """Make `model(chunks, doc_ids)` run as context-parallel rank `rank`: `chunks` are this rank's
    positions (`chunk_indices`) of the tokens or hidden states, `doc_ids` (B, T) the whole sequence's."""

    def add_positions_and_attention(module: nn.Module, args: tuple, kwargs: dict) -> tuple[tuple, dict]:
        kwargs = dict(kwargs)
        x = args[0] if args else kwargs.pop("tokens")
        doc_ids = args[1] if len(args) > 1 else kwargs.pop("doc_ids")
        T = doc_ids.shape[1]
        kwargs["positions"] = chunk_indices(T, cp, rank, doc_ids.device)
        kwargs["attn"] = ContextParallelAttention(group, doc_ids, T, cp, rank)
        return (x, doc_ids), kwargs

    model.register_forward_pre_hook(add_positions_and_attention, with_kwargs=True)
    return model
