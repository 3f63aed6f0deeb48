"""Pipeline parallelism with torch.distributed.pipelining [P §3.3.2].

Each pipeline rank keeps a pruned copy of the model: its own layers (under their full-model names, so
DCP checkpoints reshard between layouts), the embedding on the first stage, the final norm and output
on the last. Stages pass (hidden states, document ids) to each other so every stage can apply the
document mask. The paper's split option makes the first and last stage one layer lighter, because they
also carry the embedding and the output projection and loss.
"""

from __future__ import annotations

import copy
from collections.abc import Callable

import torch
from torch import Tensor
from torch.distributed import ProcessGroup
from torch.distributed.pipelining import PipelineStage, Schedule1F1B, ScheduleGPipe

from herd.model import Transformer

SCHEDULES = {"1F1B": Schedule1F1B, "GPipe": ScheduleGPipe}


def split_layers(n_layers: int, n_stages: int, lighter_ends: bool = False) -> list[list[int]]:
    """Contiguous layer indices per stage, as even as possible (earlier stages take the remainder).

    With `lighter_ends`, the first and last stage count as one layer each for the split and then hold
    one layer fewer (Llama 3 405B: 126 layers = 16 stages × 8 − 2 [P §3.3.2]).
    """
    slots = n_layers + (2 if lighter_ends and n_stages > 1 else 0)
    sizes = [slots // n_stages + (1 if i < slots % n_stages else 0) for i in range(n_stages)]
    if lighter_ends and n_stages > 1:
        sizes[0] -= 1
        sizes[-1] -= 1
    if min(sizes) < 1:
        raise ValueError(f"parallel.pp = {n_stages} leaves a stage without layers ({n_layers} layers)")
    starts = [sum(sizes[:i]) for i in range(n_stages)]
    return [list(range(s, s + n)) for s, n in zip(starts, sizes)]


def stage_model(model: Transformer, stage: int, n_stages: int, lighter_ends: bool = False) -> Transformer:
    """A copy of (meta-device) `model` holding only `stage`'s part."""
    keep = {str(i) for i in split_layers(model.cfg.n_layers, n_stages, lighter_ends)[stage]}
    part = copy.deepcopy(model)
    for name in list(part.layers.keys()):
        if name not in keep:
            del part.layers[name]
    if stage > 0:
        part.tok_embeddings = None
    if stage < n_stages - 1:
        part.norm = None
        part.output = None
    return part


class Pipeline:
    """One rank's stage and its schedules; schedules are built per micro-batch shape, since the batch
    and sequence ramps change shapes during training."""

    def __init__(
        self,
        part: Transformer,
        stage: int,
        n_stages: int,
        group: ProcessGroup,
        device: torch.device,
        schedule: str,
        n_microbatches: int,
        loss_fn: Callable[[Tensor, Tensor], Tensor],
    ) -> None:
        if schedule not in SCHEDULES:
            raise ValueError(f"parallel.pp_schedule '{schedule}' is not one of {sorted(SCHEDULES)}")
        self.part, self.stage, self.n_stages, self.group, self.device = part, stage, n_stages, group, device
        self.schedule_cls, self.n_micro, self.loss_fn = SCHEDULES[schedule], n_microbatches, loss_fn
        self._schedules: dict[tuple[int, ...], object] = {}

    @property
    def is_first(self) -> bool:
        return self.stage == 0

    @property
    def is_last(self) -> bool:
        return self.stage == self.n_stages - 1

    def _schedule(self, shape: tuple[int, ...]):
        if shape not in self._schedules:
            stage = PipelineStage(self.part, self.stage, self.n_stages, self.device, group=self.group)
            # scale_grads=False: the loss function already divides by the step's token count.
            self._schedules[shape] = self.schedule_cls(stage, self.n_micro, loss_fn=self.loss_fn, scale_grads=False)
        return self._schedules[shape]

    def run(self, tokens: Tensor, doc_ids: Tensor, labels: Tensor, train: bool = True) -> list[Tensor]:
        """Forward (and backward if `train`) over all micro-batches; the last stage returns the losses."""
        rows = tokens.shape[0]
        if rows % self.n_micro:
            raise ValueError(f"{rows} sequences per pipeline step cannot form {self.n_micro} micro-batches")
        schedule = self._schedule((rows, *tokens.shape[1:]))
        losses: list[Tensor] = []
        args = (tokens.to(self.device), doc_ids.to(self.device)) if self.is_first else ()
        target = labels.to(self.device) if self.is_last else None
        (schedule.step if train else schedule.eval)(*args, target=target, losses=losses)
        return losses
