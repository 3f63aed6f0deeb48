"""Tensor parallelism with DTensor plans by module name, sequence parallel on the norms [P §3.3.2].

Q/K/V and w1/w3 are split by output features (columns), wo and w2 by input features (rows), so each
rank computes whole heads and a slice of the SwiGLU hidden; between blocks activations are split along
the sequence (sequence parallel), which the norms run on directly. The embedding is split by vocabulary;
the output projection by vocabulary too: with `loss_parallel` its logits stay sharded by vocabulary
(a DTensor) and the cross-entropy runs under torch's `loss_parallel()`, which reduces the softmax
statistics across ranks instead of gathering the (tokens × vocab) logits; otherwise they are gathered.

Tied embeddings need no plan of their own: the embedding matrix is split by vocabulary for the lookup,
which is exactly the output projection's split, so the one matrix serves both. The final norm's output
is gathered along the sequence, the projection then yields vocabulary-sharded logits.
"""

from __future__ import annotations

from torch import Tensor, nn
from torch.distributed.device_mesh import DeviceMesh
from torch.distributed.tensor import DTensor, Replicate, Shard
from torch.distributed.tensor.parallel import (
    ColwiseParallel,
    PrepareModuleInput,
    PrepareModuleOutput,
    RowwiseParallel,
    SequenceParallel,
    parallelize_module,
)


def apply_tp(model: nn.Module, mesh: DeviceMesh, loss_parallel: bool = False) -> nn.Module:
    output = (
        ColwiseParallel(input_layouts=Shard(1), output_layouts=Shard(-1), use_local_output=False)
        if loss_parallel
        else ColwiseParallel(input_layouts=Shard(1), output_layouts=Replicate())
    )
    # A pipeline stage holds only some of these (a tied last stage: the embedding matrix, not the output).
    plan = {
        "tok_embeddings": RowwiseParallel(input_layouts=Replicate(), output_layouts=Shard(1)),
        "norm": SequenceParallel(),
        "output": output,
    }
    parallelize_module(model, mesh, {k: v for k, v in plan.items() if getattr(model, k) is not None})
    if model.norm is not None and model.output is None:
        _tie_output(model, mesh, loss_parallel)
    for block in model.layers.values():
        parallelize_module(
            block,
            mesh,
            {
                "attention_norm": SequenceParallel(),
                # Attention needs the whole sequence: gather it (cos/sin/kernel pass through as they are).
                "attention": PrepareModuleInput(
                    input_layouts=(Shard(1), None, None, None),
                    desired_input_layouts=(Replicate(), None, None, None),
                ),
                "attention.wq": ColwiseParallel(),
                "attention.wk": ColwiseParallel(),
                "attention.wv": ColwiseParallel(),
                "attention.wo": RowwiseParallel(output_layouts=Shard(1)),
                "ffn_norm": SequenceParallel(),
                "feed_forward": PrepareModuleInput(input_layouts=(Shard(1),), desired_input_layouts=(Replicate(),)),
                "feed_forward.w1": ColwiseParallel(),
                "feed_forward.w3": ColwiseParallel(),
                "feed_forward.w2": RowwiseParallel(output_layouts=Shard(1)),
            },
        )
    return model


def _tie_output(model: nn.Module, mesh: DeviceMesh, loss_parallel: bool) -> None:
    """A tied output projection multiplies the whole sequence by the vocabulary-split embedding matrix."""
    gather = PrepareModuleOutput(output_layouts=Shard(1), desired_output_layouts=Replicate(), use_local_output=False)
    parallelize_module(model.norm, mesh, gather)
    if not loss_parallel:

        def full_logits(module: nn.Module, args: tuple, out: Tensor) -> Tensor:
            return out.full_tensor() if isinstance(out, DTensor) else out

        model.register_forward_hook(full_logits)
