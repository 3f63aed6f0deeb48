"""Building the model for a layout: meta device → parallelize from outside → allocate → seed's weights,
pipeline stages wired when parallel.pp > 1; the optimizer; and the unsharded weights back out."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import Tensor, nn

from herd.core.config import ConfigError
from herd.model import Transformer, get_preset
from herd.model.config import ModelConfig
from herd.parallel.init import copy_full_weights, init_parallel_weights
from herd.parallel.parallelize import ParallelContext
from herd.parallel.pp import Pipeline, StageParts, rank_stages, stage_model
from herd.train.config import PretrainConfig

# What a model's tensors depend on (RoPE and lengths change between phases and do not): a checkpoint or
# `model.init_from`'s weights fit a config only where these agree.
SHAPE_FIELDS = ("dim", "n_layers", "n_heads", "n_kv_heads", "ffn_dim", "vocab_size", "tie_embeddings")


def model_config(cfg: PretrainConfig, vocab_size: int, loaded: ModelConfig | None = None) -> ModelConfig:
    """The preset with the config's non-zero overrides; the vocabulary is the shards' unless set.
    With `loaded` (the config of `model.init_from`'s weights) that config, which must hold the shards' ids."""
    m = cfg.model
    if loaded is not None:
        return _continued(cfg, vocab_size, loaded)
    overrides = {k: getattr(m, k) for k in ("dim", "n_layers", "n_heads", "n_kv_heads", "ffn_dim", "max_seq_len")}
    overrides = {k: v for k, v in overrides.items() if v}
    if m.tie_embeddings is not None:
        overrides["tie_embeddings"] = m.tie_embeddings
    return get_preset(m.preset, vocab_size=m.vocab_size or vocab_size, attn_impl=m.attn_impl, **overrides)


def _continued(cfg: PretrainConfig, vocab_size: int, loaded: ModelConfig) -> ModelConfig:
    m = cfg.model
    for key in SHAPE_FIELDS:
        if getattr(m, key) not in (0, None, getattr(loaded, key)):  # set, and not what the weights say
            raise ConfigError(
                f"model.{key}={getattr(m, key)}: model.init_from={m.init_from} has {key}={getattr(loaded, key)} "
                "(its weights decide the shape: leave the model keys unset)"
            )
    if loaded.vocab_size < vocab_size:
        raise ConfigError(
            f"model.init_from={m.init_from}: its vocabulary ({loaded.vocab_size}) is smaller than the shards' "
            f"({vocab_size}); tokenize with that model's tokenizer"
        )
    return dataclasses.replace(loaded, attn_impl=m.attn_impl, max_seq_len=max(loaded.max_seq_len, m.max_seq_len))


def initial_weights(path: str) -> tuple[ModelConfig, dict[str, Tensor]]:
    """`model.init_from`'s config and fp32 weights. A herd pretraining run stands for its product: the
    annealed average in `base/`, else its last weights in `final/`."""
    from herd.model import load_model

    run = Path(path)
    folder = next((run / d for d in ("base", "final") if (run / d / "config.json").is_file()), None)
    try:
        model = load_model(folder or path, dtype=torch.float32)
    except (FileNotFoundError, ValueError, KeyError) as e:
        raise ConfigError(f"model.init_from={path}: {str(e).removeprefix(f'{path}: ')}") from None
    return model.cfg, {name: t.detach() for name, t in model.state_dict().items()}


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
    weights: dict[str, Tensor] | None = None,
) -> Built:
    """This rank's part of the model for the layout; `loss_fn` is what a pipeline's last stage calls.
    `weights` (unsharded, herd's names) replace the seed's initialization (continued pretraining)."""
    with torch.device("meta"):
        model = Transformer(model_cfg)
    dims, pc = par.dims, cfg.parallel
    if dims.pp == 1:
        return Built(_materialize(model, cfg, model_cfg, par, device, dtype, weights), None)
    n_stages = dims.pp * dims.stages_per_rank
    own = rank_stages(par.coordinate("pp"), dims.pp, dims.stages_per_rank)
    parts = {
        i: _materialize(
            stage_model(model, i, n_stages, pc.pp_lighter_ends, par.attention),
            cfg,
            model_cfg,
            par,
            device,
            dtype,
            weights,
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
    dtype: torch.dtype, weights: dict[str, Tensor] | None = None,
) -> Transformer:  # fmt: skip
    """Parallelize a meta-device model (or pipeline stage), allocate it, and give it the seed's weights
    (or `weights`, its part of them)."""
    rt = cfg.runtime
    par.apply(model, model_cfg, dtype, rt.activation_checkpointing, rt.compile)
    model.to_empty(device=device)
    if weights is not None:
        copy_full_weights(model, weights)
    elif par.mesh is None:
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
