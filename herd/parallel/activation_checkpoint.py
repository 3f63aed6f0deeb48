"""Activation checkpointing, applied from outside: each transformer block recomputes its activations
in backward instead of storing them (memory O(layers · d) instead of O(layers · activations))."""

from __future__ import annotations

from torch import nn
from torch.distributed.algorithms._checkpoint.checkpoint_wrapper import checkpoint_wrapper


def apply_activation_checkpointing(model: nn.Module) -> nn.Module:
    """Wrap every block of `model.layers` (a ModuleDict); parameter names stay unchanged in state dicts."""
    for name, block in list(model.layers.named_children()):
        model.layers.register_module(name, checkpoint_wrapper(block, preserve_rng_state=False))
    return model


def remove_activation_checkpointing(model: nn.Module) -> nn.Module:
    """Undo `apply_activation_checkpointing`: the plain blocks back in `model.layers`."""
    for name, block in list(model.layers.named_children()):
        model.layers.register_module(name, getattr(block, "_checkpoint_wrapped_module", block))
    return model
