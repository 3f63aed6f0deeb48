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
    # 1F1B | GPipe (one stage per rank) | Interleaved1F1B | LoopedBFS | InterleavedZeroBubble
    pp_schedule: str = "1F1B"
    pp_stages_per_rank: int = 1  # > 1: interleaved (looped) stages, for the multi-stage schedules
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
    stages_per_rank: int = 1
    lighter_ends: bool = False

    @staticmethod
    def resolve(cfg: ParallelConfig, world_size: int) -> ParallelDims:
        for name in ("dp_replicate", "tp", "cp", "pp", "pp_stages_per_rank"):
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
        return ParallelDims(
            cfg.dp_replicate, dp_shard, cfg.cp, cfg.tp, cfg.pp, world_size, cfg.pp_stages_per_rank, cfg.pp_lighter_ends
        )

    def check_model(self, cfg: ModelConfig, seq_lens: list[int]) -> None:
        """Fail in one line when the model's shapes cannot be split this way."""
        if cfg.n_kv_heads % self.tp:
            raise ValueError(f"parallel.tp = {self.tp} does not divide the model's {cfg.n_kv_heads} KV heads")
        if cfg.n_heads % self.tp:
            raise ValueError(f"parallel.tp = {self.tp} does not divide the model's {cfg.n_heads} attention heads")
        stages = self.pp * self.stages_per_rank
        slots = cfg.n_layers + (2 if self.lighter_ends else 0)  # end stages may hold no layer then
        if self.pp > 1 and stages > slots:
            raise ValueError(
                f"parallel.pp × pp_stages_per_rank = {stages} stages is more than the model's {cfg.n_layers} layers"
                + (" + 2 lighter ends" if self.lighter_ends else "")
            )
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
