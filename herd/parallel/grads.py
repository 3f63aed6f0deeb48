"""Gradient clipping that works for plain and DTensor (FSDP/TP) parameters alike."""

from __future__ import annotations

import math
from collections.abc import Iterable

import torch
from torch.distributed.tensor import DTensor


@torch.no_grad()
def clip_grad_norm(params: Iterable[torch.nn.Parameter], max_norm: float) -> float:
    """Clip the global L2 norm of all gradients to `max_norm`; return the norm before clipping.

    For DTensor gradients the norm is computed from their shards with the right collectives
    (torch's clip_grad_norm_ returns a DTensor then; `full_tensor()` makes it a number everywhere).
    """
    grads = [p.grad for p in params if p.grad is not None]
    if not grads:
        return 0.0
    norm = torch.nn.utils.get_total_norm(grads, norm_type=2.0, foreach=True)
    if isinstance(norm, DTensor):
        norm = norm.full_tensor()
    total = float(norm)
    coef = max_norm / (total + 1e-6)  # torch's clip_grad_norm_ coefficient
    if math.isfinite(total) and coef < 1.0:
        torch._foreach_mul_(grads, coef)
    return total
