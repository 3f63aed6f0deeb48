"""Building the model for a layout: meta device → parallelize from outside → allocate → seed's weights,
pipeline stages wired when parallel.pp > 1; the optimizer; and the unsharded weights back out."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import Tensor, nn

from herd.model import Transformer, get_preset
from herd.model.config import ModelConfig
from herd.parallel.init import init_parallel_weights
from herd.parallel.parallelize import ParallelContext
from herd.parallel.pp import Pipeline, StageParts, rank_stages, stage_model
from herd.train.config import PretrainConfig


def model_config(cfg: PretrainConfig, vocab_size: int) -> ModelConfig:
    """The preset with the config's non-zero overrides; the vocabulary is the shards' unless set."""
    m = cfg.model
    overrides = {k: getattr(m, k) for k in ("dim", "n_layers", "n_heads", "n_kv_heads", "ffn_dim", "max_seq_len")}
    overrides = {k: v for k, v in overrides.items() if v}
    if m.tie_embeddings is not None:
        overrides["tie_embeddings"] = m.tie_embeddings
    return get_preset(m.preset, vocab_size=m.vocab_size or vocab_size, attn_impl=m.attn_impl, **overrides)


@dataclass
class Built:
    model: nn.Module  # the whole model, or this rank's pipeline stages (StageParts)
    pipeline: Pipeline | None


def build_model(
    cfg: PretrainConfig,
    model_cfg: ModelConfig,
    par: ParallelContext,
    device: torch.device,
    dtype: torch.dtype,
    loss_fn: Callable[[Tensor, Tensor], Tensor],
) -> Built:
    """This rank's part of the model for the layout; `loss_fn` is what a pipeline's last stage calls."""
    with torch.device("meta"):
        model = Transformer(model_cfg)
    dims, pc = par.dims, cfg.parallel
    if dims.pp == 1:
        return Built(_materialize(model, cfg, model_cfg, par, device, dtype), None)
    n_stages = dims.pp * dims.stages_per_rank
    own = rank_stages(par.coordinate("pp"), dims.pp, dims.stages_per_rank)
    parts = {
        i: _materialize(
            stage_model(model, i, n_stages, pc.pp_lighter_ends, par.attention), cfg, model_cfg, par, device, dtype
        )
        for i in own
    }
    tied = par.ends_group("pp") if model_cfg.tie_embeddings else None
    pipeline = Pipeline(
        parts, n_stages, par.group("pp"), device, pc.pp_schedule, pc.pp_microbatches or dims.pp, loss_fn, tied
    )
    return Built(StageParts(list(parts.values())), pipeline)


def _materialize(
    model: Transformer, cfg: PretrainConfig, model_cfg: ModelConfig, par: ParallelContext, device: torch.device,
    dtype: torch.dtype,
) -> Transformer:  # fmt: skip
    """Parallelize a meta-device model (or pipeline stage), allocate it, and give it the seed's weights."""
    rt = cfg.runtime
    par.apply(model, model_cfg, dtype, rt.activation_checkpointing, rt.compile)
    model.to_empty(device=device)
    if par.mesh is None:
        model.init_weights(seed=cfg.seed)
    else:
        # Sharded parameters get the slices of the single-process weights: every layout starts equal.
        init_parallel_weights(model, model_cfg, cfg.seed)
    return model


def make_optimizer(model: nn.Module, cfg: PretrainConfig, device: torch.device) -> torch.optim.AdamW:
    o = cfg.optim
    return torch.optim.AdamW(
        model.parameters(),
        lr=o.lr,
        betas=o.betas,
        eps=o.eps,
        weight_decay=o.weight_decay,
        # One fused CUDA kernel for the whole update on GPUs; CPUs have no fused AdamW kernel.
        **({"fused": True} if device.type == "cuda" else {"foreach": True}),
    )


def full_state(model: nn.Module, par: ParallelContext, pipelined: bool) -> dict[str, Tensor]:
    """Unsharded CPU weights under herd's names (on rank 0; other ranks get an empty dict). Collective
    under FSDP/TP/PP: every rank must call it."""
    if par.mesh is None:
        return {n: t.detach().cpu().contiguous() for n, t in model.state_dict().items()}
    from torch.distributed.checkpoint.state_dict import StateDictOptions, get_model_state_dict

    if not pipelined:
        options = StateDictOptions(full_state_dict=True, cpu_offload=True)
        return {n: t.contiguous() for n, t in get_model_state_dict(model, options=options).items()}
    # Each pipeline stage gathers its own part, then rank 0 collects the parts.
    options = StateDictOptions(full_state_dict=True)
    part = {n: t.detach().cpu().contiguous() for n, t in get_model_state_dict(model, options=options).items()}
    merged: dict[str, Tensor] = {}
    for p in par.gather_to_main(part):
        merged.update(p)
    return merged
