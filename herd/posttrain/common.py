"""Pieces the post-training stages share: optimizer steps, batching, model files, variant averaging."""

from __future__ import annotations

import copy
import random
import shutil
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar

import torch
from torch import nn

from herd.model import Transformer
from herd.model.convert import save_hf
from herd.train.averaging import average_state_dicts

T = TypeVar("T")
M = TypeVar("M", bound=nn.Module)


@dataclass
class Variant:
    """One run of a stage; a stage with several variants averages them [P §4.1.5]."""

    seed: int = 0  # data order and dropout-free init of new heads
    lr_scale: float = 1.0
    weight: float = 1.0  # weight in the average


def shuffled_batches(items: Sequence[T], batch_size: int, epochs: int, seed: int) -> Iterator[list[T]]:
    rng = random.Random(seed)
    for _ in range(epochs):
        order = list(range(len(items)))
        rng.shuffle(order)
        for i in range(0, len(order), batch_size):
            yield [items[j] for j in order[i : i + batch_size]]


def adamw(model: nn.Module, lr: float, weight_decay: float = 0.0) -> torch.optim.Optimizer:
    params = [p for p in model.parameters() if p.requires_grad]
    return torch.optim.AdamW(params, lr=lr, betas=(0.9, 0.95), weight_decay=weight_decay)


def step(optim: torch.optim.Optimizer, model: nn.Module, loss: torch.Tensor, clip: float = 1.0) -> float:
    optim.zero_grad(set_to_none=True)
    loss.backward()
    return clip_and_step(optim, model, clip)


def clip_and_step(optim: torch.optim.Optimizer, model: nn.Module, clip: float = 1.0) -> float:
    """Clip the accumulated gradients' global norm to `clip` and step; returns the norm before clipping."""
    norm = torch.nn.utils.clip_grad_norm_(model.parameters(), clip)
    optim.step()
    return float(norm)


def train_variants(init: M, variants: Sequence[Variant], train: Callable[[M, Variant], dict]) -> tuple[M, list[dict]]:
    """Train a copy of `init` per variant and average the results (uniform or weighted by `weight`)."""
    if len(variants) == 1:
        return init, [train(init, variants[0])]
    states, metrics = [], []
    for v in variants:
        model = copy.deepcopy(init)
        metrics.append(train(model, v))
        states.append(model.state_dict())
    init.load_state_dict(average_state_dicts(states, [v.weight for v in variants]))
    return init, metrics


def save_model(model: Transformer, out: Path, tokenizer_file: Path | None) -> Path:
    """HF-format weights plus the tokenizer beside them, so `herd generate DIR` works."""
    save_hf(model, out)
    if tokenizer_file is not None and tokenizer_file.is_file():
        shutil.copyfile(tokenizer_file, out / "tokenizer.model")
    return out
