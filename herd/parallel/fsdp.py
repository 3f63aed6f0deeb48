"""FSDP2 (`fully_shard`), applied from outside: each transformer block, then the root [P §3.3.2].

The paper shards optimizer state and gradients but does not re-shard weights after forward (saving the
second all-gather in backward): `reshard_after_forward=False`. Gradients are reduce-scattered in fp32
even when compute is bf16 [P §3.3.4].
"""

from __future__ import annotations

import torch
from torch import nn
from torch.distributed.device_mesh import DeviceMesh
from torch.distributed.fsdp import MixedPrecisionPolicy, fully_shard


def apply_fsdp(
    model: nn.Module, mesh: DeviceMesh, param_dtype: torch.dtype, reshard_after_forward: bool = False
) -> nn.Module:
    """Shard `model` over `mesh` (1D: FSDP; 2D (replicate, shard): HSDP)."""
    mp = MixedPrecisionPolicy(param_dtype=param_dtype, reduce_dtype=torch.float32)
    for block in model.layers.values():
        fully_shard(block, mesh=mesh, mp_policy=mp, reshard_after_forward=reshard_after_forward)
    # The root holds the embeddings, final norm and output; its weights are needed right at the end of
    # forward and the start of backward, so it is never re-sharded in between.
    fully_shard(model, mesh=mesh, mp_policy=mp, reshard_after_forward=False)
    return model
