"""Parallel degrees, checked against the world size and the model's shapes, and the device mesh.

The mesh follows the paper's order [TP, CP, PP, DP], innermost first [P §3.3.2]: ranks that differ
only in their TP coordinate are adjacent (one NVLink domain), DP is outermost. DP itself is
(replicate × shard): HSDP when dp_replicate > 1, plain FSDP when it is 1.
"""

from __future__ import annotations

from dataclasses import dataclass

from herd.model.config import ModelConfig


@dataclass
class ParallelConfig:
    dp_replicate: int = 1  # HSDP: replicas of the sharded group
    dp_shard: int = -1  # FSDP shards; -1: whatever the world size leaves over
    tp: int = 1  # tensor parallel (must divide the KV heads)
    cp: int = 1  # context parallel (sequence in 2·cp chunks)
    pp: int = 1  # pipeline stages
    pp_schedule: str = "1F1B"  # 1F1B | GPipe (interleaved schedules: not yet)
    pp_microbatches: int = 0  # 0: pp
    pp_lighter_ends: bool = False  # first and last stage one layer lighter (the paper's split)
    reshard_after_forward: bool = False  # False: the paper's mode (no weight re-gather in backward)
    # Under TP, the loss on vocabulary-sharded logits: no all-gather of (tokens × vocab) logits. Not with PP.
    loss_parallel: bool = True
    backend: str = ""  # "": nccl on CUDA, gloo on CPU


@dataclass(frozen=True)
class ParallelDims:
    dp_replicate: int
    dp_shard: int
    cp: int
    tp: int
    pp: int
    world_size: int

    @staticmethod
    def resolve(cfg: ParallelConfig, world_size: int) -> ParallelDims:
        for name in ("dp_replicate", "tp", "cp", "pp"):
            if getattr(cfg, name) < 1:
                raise ValueError(f"parallel.{name} = {getattr(cfg, name)}: degrees must be ≥ 1")
        others = cfg.dp_replicate * cfg.tp * cfg.cp * cfg.pp
        dp_shard = cfg.dp_shard
        if dp_shard == -1:
            if world_size % others:
                raise ValueError(
                    f"parallel: dp_replicate·tp·cp·pp = {others} does not divide the world size {world_size}"
                )
            dp_shard = world_size // others
        if dp_shard < 1 or others * dp_shard != world_size:
            raise ValueError(
                f"parallel: dp_replicate {cfg.dp_replicate} × dp_shard {dp_shard} × cp {cfg.cp} × tp {cfg.tp} "
                f"× pp {cfg.pp} = {others * dp_shard}, but the world size is {world_size}"
            )
        return ParallelDims(cfg.dp_replicate, dp_shard, cfg.cp, cfg.tp, cfg.pp, world_size)

    def check_model(self, cfg: ModelConfig, seq_lens: list[int]) -> None:
        """Fail in one line when the model's shapes cannot be split this way."""
        if cfg.n_kv_heads % self.tp:
            raise ValueError(f"parallel.tp = {self.tp} does not divide the model's {cfg.n_kv_heads} KV heads")
        if cfg.n_heads % self.tp:
            raise ValueError(f"parallel.tp = {self.tp} does not divide the model's {cfg.n_heads} attention heads")
        if self.tp > 1 and cfg.tie_embeddings:
            raise ValueError("parallel.tp > 1 with tied embeddings is not supported (untie the output layer)")
        if self.pp > 1 and cfg.tie_embeddings:
            raise ValueError("parallel.pp > 1 with tied embeddings is not supported (untie the output layer)")
        if self.pp > 1 and self.cp > 1:
            raise ValueError("parallel.pp > 1 together with parallel.cp > 1 is not supported yet")
        if self.pp > cfg.n_layers:
            raise ValueError(f"parallel.pp = {self.pp} is more stages than the model's {cfg.n_layers} layers")
        for T in seq_lens:
            if T % (2 * self.cp):
                raise ValueError(f"sequence length {T} is not divisible by 2·cp = {2 * self.cp}")
            if self.tp > 1 and T % self.tp:
                raise ValueError(f"sequence length {T} is not divisible by tp = {self.tp} (sequence parallel)")

    @property
    def dp(self) -> int:
        return self.dp_replicate * self.dp_shard

    @property
    def names(self) -> tuple[str, ...]:
        return ("dp_replicate", "dp_shard", "pp", "cp", "tp")

    @property
    def shape(self) -> tuple[int, ...]:
        return (self.dp_replicate, self.dp_shard, self.pp, self.cp, self.tp)

    def build_mesh(self, device_type: str):
        from torch.distributed.device_mesh import init_device_mesh

        mesh = init_device_mesh(device_type, self.shape, mesh_dim_names=self.names)
        # Flattened views used for data loading (dp), FSDP (dp_shard·cp: CP ranks share weight shards)
        # and loss all-reduce.
        mesh["dp_replicate", "dp_shard"]._flatten("dp")
        mesh["dp_shard", "cp"]._flatten("dp_shard_cp")
        mesh["dp_replicate", "dp_shard", "cp"]._flatten("dp_cp")
        return mesh
