"""Initialize a parallelized model so it starts from exactly the weights one process would have.

Every rank builds the full model on CPU from the seed (herd.model's own init), then keeps its shard of
each parameter: DTensors take their local piece, plain tensors are copied. This makes parallel runs
comparable with single-process runs to the last bit. For models too large to materialize on one host,
start from a seed checkpoint instead (one process writes a DCP checkpoint; every layout can load it).
"""

from __future__ import annotations

import torch
from torch import nn
from torch.distributed.tensor import DTensor, distribute_tensor

from herd.model import ModelConfig, build_model


def clean_name(name: str) -> str:
    """Parameter names without wrapper prefixes (activation checkpointing, torch.compile)."""
    return name.replace("_checkpoint_wrapped_module.", "").replace("_orig_mod.", "")


@torch.no_grad()
def init_parallel_weights(model: nn.Module, cfg: ModelConfig, seed: int) -> None:
    copy_full_weights(model, build_model(cfg, seed=seed, device="cpu").state_dict())


@torch.no_grad()
def copy_full_weights(model: nn.Module, full: dict[str, torch.Tensor]) -> None:
    """Give a (possibly sharded, possibly pipeline-stage) model its part of unsharded weights `full`."""
    for name, p in model.named_parameters():
        src = full[clean_name(name)]
        if isinstance(p, DTensor):
            local = distribute_tensor(src.to(p.device), p.device_mesh, p.placements, src_data_rank=None)
            p.to_local().copy_(local.to_local())
        else:
            p.copy_(src)
    if hasattr(model, "init_buffers"):
        model.init_buffers()
