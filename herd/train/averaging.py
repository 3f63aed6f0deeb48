"""Polyak averaging of checkpoints [P §3.4.3] and model averaging across runs [P §4.1.5]."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import torch
from torch import Tensor


def average_state_dicts(
    states: Sequence[Mapping[str, Tensor]], weights: Sequence[float] | None = None
) -> dict[str, Tensor]:
    """Weighted mean of same-shaped state dicts, accumulated in fp64 and cast back to each tensor's dtype."""
    if not states:
        raise ValueError("average: no checkpoints given")
    weights = list(weights) if weights is not None else [1.0] * len(states)
    if len(weights) != len(states):
        raise ValueError(f"average: {len(weights)} weights for {len(states)} checkpoints")
    if any(w < 0 for w in weights) or sum(weights) <= 0:
        raise ValueError("average: weights must be ≥ 0 with a positive sum")
    total = sum(weights)
    keys = list(states[0])
    for i, s in enumerate(states[1:], 1):
        if list(s) != keys:
            missing = sorted(set(keys) ^ set(s))
            raise ValueError(f"average: checkpoint {i} has different tensors (e.g. '{missing[0]}')")
    out = {}
    for k in keys:
        ref = states[0][k]
        acc = torch.zeros(ref.shape, dtype=torch.float64)
        for s, w in zip(states, weights):
            if s[k].shape != ref.shape:
                raise ValueError(f"average: tensor '{k}' has shape {tuple(s[k].shape)} vs {tuple(ref.shape)}")
            acc += s[k].detach().to("cpu", torch.float64) * (w / total)
        out[k] = acc.to(ref.dtype)
    return out
