"""Gradient clipping that works for plain and DTensor (FSDP/TP) parameters alike."""

from __future__ import annotations

import math
from collections.abc import Iterable

import torch
import torch.distributed as dist
from torch.distributed.tensor import DTensor


@torch.no_grad()
def clip_grad_norm(
    params: Iterable[torch.nn.Parameter],
    max_norm: float,
    pp_group: dist.ProcessGroup | None = None,
    counted_elsewhere: Iterable[torch.nn.Parameter] = (),
) -> float:
    """Clip the global L2 norm of all gradients to `max_norm`; return the norm before clipping.

    For DTensor gradients the norm is computed from their shards with the right collectives
    (torch's clip_grad_norm_ returns a DTensor then; `full_tensor()` makes it a number everywhere);
    with pipeline stages the squared norms of all stages are summed over `pp_group`. Gradients in
    `counted_elsewhere` (a tied embedding's copy on the last stage) are clipped but not counted twice.
    """
    params = [p for p in params if p.grad is not None]
    grads = [p.grad for p in params]
    skip = {id(p) for p in counted_elsewhere}
    counted = [p.grad for p in params if id(p) not in skip]
    norm = torch.nn.utils.get_total_norm(counted, norm_type=2.0, foreach=True) if counted else torch.tensor(0.0)
    if isinstance(norm, DTensor):
        norm = norm.full_tensor()
    if pp_group is not None:  # each pipeline stage holds different parameters: add their squares
        square = norm.detach().double().square().reshape(1)
        dist.all_reduce(square, group=pp_group)
        norm = square.sqrt()
    total = float(norm)
    coef = max_norm / (total + 1e-6)  # torch's clip_grad_norm_ coefficient
    if math.isfinite(total) and coef < 1.0:
        torch._foreach_mul_(grads, coef)
    return total
