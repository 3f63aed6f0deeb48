"""A run's parallel context: process group, mesh, rank coordinates, the fixed order in which parallelism
is applied to a model built on the meta device (TP → activation checkpointing → compile → FSDP), and the
positions and attention of this rank's tokens (context parallelism works on the inputs, not the model).

One process is the degenerate case: no process group, no mesh, every degree 1, nothing applied.
"""

from __future__ import annotations

import contextlib
import os

import torch
import torch.distributed as dist
from torch import Tensor, nn

from herd.model import ModelConfig
from herd.model.layers import AttentionKernel, document_causal
from herd.parallel.activation_checkpoint import apply_activation_checkpointing
from herd.parallel.dims import ParallelConfig, ParallelDims
from herd.parallel.fsdp import apply_fsdp


class ParallelContext:
    """What one rank of a run knows about the parallel layout: its mesh and coordinates, collectives over
    mesh dimensions, and how a model and its inputs are split. One process has no mesh and degree 1."""

    def __init__(self, cfg: ParallelConfig, device_type: str) -> None:
        self.cfg = cfg
        world = int(os.environ.get("WORLD_SIZE", "1"))
        self.dims = ParallelDims.resolve(cfg, world)
        self.mesh = None
        if world > 1:
            if not dist.is_initialized():
                dist.init_process_group(backend=cfg.backend or ("nccl" if device_type == "cuda" else "gloo"))
            self.mesh = self.dims.build_mesh(device_type)
        self.rank = dist.get_rank() if self.mesh is not None else 0

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    def coordinate(self, name: str) -> int:
        """This rank's index along a mesh dimension (dp, cp, tp, pp, ...)."""
        return self.mesh[name].get_local_rank() if self.mesh is not None else 0

    def size(self, name: str) -> int:
        return self.mesh[name].size() if self.mesh is not None else 1

    def sum(self, value: float, dim: str = "dp_cp") -> float:
        """Sum a per-rank number over a mesh dimension (e.g. token losses over data and context ranks)."""
        if self.mesh is None or self.size(dim) == 1:
            return value
        t = torch.tensor([value], dtype=torch.float64)
        dist.all_reduce(t, group=self.mesh[dim].get_group())
        return float(t.item())

    def broadcast(self, obj: object) -> object:
        """Rank 0's Python object on every rank."""
        if self.mesh is None:
            return obj
        box = [obj]
        dist.broadcast_object_list(box, src=0)
        return box[0]

    def gather_to_main(self, obj: object) -> list[object]:
        """Every rank's Python object, on rank 0 (others get an empty list)."""
        if self.mesh is None:
            return [obj]
        out = [None] * dist.get_world_size() if self.is_main else None
        dist.gather_object(obj, out, dst=0)
        return out or []

    def group(self, name: str) -> dist.ProcessGroup | None:
        return self.mesh[name].get_group() if self.mesh is not None and self.size(name) > 1 else None

    def ends_group(self, name: str) -> dist.ProcessGroup | None:
        """The pair of ranks at the two ends of mesh dimension `name` that share this rank's other
        coordinates (a pipeline's first and last stage), or None if this rank is at neither end."""
        dim = self.dims.names.index(name)
        ends = self.mesh.mesh.movedim(dim, -1)[..., [0, -1]].reshape(-1, 2).tolist()
        own = None
        for pair in ends:  # every rank creates every group, in the same order
            group = dist.new_group(pair)
            own = group if self.rank in pair else own
        return own

    def barrier(self) -> None:
        if self.mesh is not None:
            dist.barrier()

    def apply(
        self, model: nn.Module, model_cfg: ModelConfig, param_dtype: torch.dtype, ac: bool, compile: bool
    ) -> None:
        """Parallelize a meta-device model in place, in torchtitan's order."""
        if self.dims.tp > 1:
            from herd.parallel.tp import apply_tp

            apply_tp(model, self.mesh["tp"], self.loss_parallel)
        if ac:
            apply_activation_checkpointing(model)
        if compile:
            for block in model.layers.values():
                block.compile()
        if self.mesh is not None and self.dims.dp_shard * self.dims.cp * self.dims.dp_replicate > 1:
            fsdp_mesh = (
                self.mesh["dp_replicate", "dp_shard_cp"] if self.dims.dp_replicate > 1 else self.mesh["dp_shard_cp"]
            )
            apply_fsdp(model, fsdp_mesh, param_dtype, self.cfg.reshard_after_forward)

    def attention(self, doc_ids: Tensor, impl: str = "auto", cp: bool = True) -> tuple[Tensor, AttentionKernel]:
        """Positions and attention of this rank's tokens of packed sequences with document ids `doc_ids`
        (B, T, the whole sequence). Under context parallelism (unless `cp` is False) the rank holds the
        chunks `herd.parallel.cp.chunk_indices` gives and gathers K/V from its CP group."""
        if not cp or self.dims.cp == 1:
            return document_causal(doc_ids, impl)
        from herd.parallel.cp import context_parallel

        return context_parallel(doc_ids, self.mesh["cp"].get_group(), self.dims.cp, self.coordinate("cp"))

    @property
    def loss_parallel(self) -> bool:
        """Vocabulary-sharded logits and loss (TP without PP: a pipeline's last stage computes the loss
        inside the schedule, where the loss-parallel context cannot reach its backward)."""
        return self.dims.tp > 1 and self.dims.pp == 1 and self.cfg.loss_parallel

    def loss_context(self) -> contextlib.AbstractContextManager:
        """Where the loss and its backward run: torch's loss_parallel() under TP, else nothing."""
        if not self.loss_parallel:
            return contextlib.nullcontext()
        from torch.distributed.tensor.parallel import loss_parallel

        return loss_parallel()

    def close(self) -> None:
        if self.mesh is not None and dist.is_initialized():
            dist.destroy_process_group()
