"""Pipeline parallelism with torch.distributed.pipelining [P §3.3.2].

The model is cut into `pp × stages_per_rank` stages of contiguous layers. Rank r holds stages
r, r + pp, r + 2·pp, … (the looped placement of interleaved schedules, which shrinks the pipeline
bubble by the number of stages per rank). Each stage is a pruned copy of the model: its own layers
(under their full-model names, so DCP checkpoints reshard between layouts), the embedding on the first
stage, the final norm and output on the last. Stages pass (hidden states, document ids) to each other and
each builds its positions and attention kernel from the document ids (`StageTransformer`): the model
itself never sees document ids. The paper's split option makes the first and last stage one layer
lighter, because they also carry the embedding and the output projection and loss.

With tied embeddings the last stage keeps its own copy of the embedding matrix for the output
projection; the two copies start equal and stay equal because their gradients are summed over the
pair of end ranks before every update (as Megatron-LM's embedding group does).
"""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.distributed as dist
from torch import Tensor, nn
from torch.distributed import ProcessGroup
from torch.distributed.pipelining import (
    PipelineStage,
    Schedule1F1B,
    ScheduleGPipe,
    ScheduleInterleaved1F1B,
    ScheduleInterleavedZeroBubble,
    ScheduleLoopedBFS,
)
from torch.distributed.tensor import DTensor

from herd.model import ModelConfig, Transformer
from herd.model.layers import AttentionKernel, document_causal

SINGLE = {"1F1B": Schedule1F1B, "GPipe": ScheduleGPipe}  # one stage per rank
# Several stages per rank (they also run with one).
MULTI = {
    "Interleaved1F1B": ScheduleInterleaved1F1B,
    "LoopedBFS": ScheduleLoopedBFS,
    "InterleavedZeroBubble": ScheduleInterleavedZeroBubble,
}
SCHEDULES = SINGLE | MULTI


def split_layers(n_layers: int, n_stages: int, lighter_ends: bool = False) -> list[list[int]]:
    """Contiguous layer indices per stage, as even as possible (earlier stages take the remainder).

    With `lighter_ends`, the first and last stage count as one layer each for the split and then hold
    one layer fewer (Llama 3 405B: 126 layers = 16 stages × 8 − 2 [P §3.3.2]). With one slot per stage
    (126 layers on 128 interleaved stages) the first stage holds only the embedding and the last only
    the final norm and output, as the paper describes.
    """
    slots = n_layers + (2 if lighter_ends and n_stages > 1 else 0)
    sizes = [slots // n_stages + (1 if i < slots % n_stages else 0) for i in range(n_stages)]
    if lighter_ends and n_stages > 1:
        sizes[0] -= 1
        sizes[-1] -= 1
    if min(sizes) < 0 or min(sizes[1:-1], default=1) < 1 or (not lighter_ends and min(sizes) < 1):
        raise ValueError(f"{n_stages} pipeline stages leave a stage without layers ({n_layers} layers)")
    starts = [sum(sizes[:i]) for i in range(n_stages)]
    return [list(range(s, s + n)) for s, n in zip(starts, sizes)]


def rank_stages(rank: int, pp: int, stages_per_rank: int) -> list[int]:
    """The stages pipeline rank `rank` holds: rank, rank + pp, … (looped placement)."""
    return [rank + k * pp for k in range(stages_per_rank)]


# Positions and attention of a stage's tokens from the whole sequence's document ids and the model's
# attn_impl: herd.model.layers.document_causal, or ParallelContext.attention under context parallelism.
AttentionInputs = Callable[[Tensor, str], tuple[Tensor, AttentionKernel]]


class StageTransformer(Transformer):
    """One pipeline stage as the schedule runs it: (token ids or hidden states, document ids) in, and
    out the same pair for the next stage, or logits from the last. A subclass rather than a wrapper module
    so that FSDP, applied to the stage, is what the pipeline schedule sees."""

    def __init__(self, cfg: ModelConfig, attention: AttentionInputs = document_causal) -> None:
        super().__init__(cfg)
        self.attention_inputs = attention

    def forward(self, x: Tensor, doc_ids: Tensor) -> Tensor | tuple[Tensor, Tensor]:
        h = super().forward(x, *self.attention_inputs(doc_ids, self.cfg.attn_impl))
        return h if self.norm is not None else (h, doc_ids)  # a stage before the last has no final norm


def stage_model(
    model: Transformer,
    stage: int,
    n_stages: int,
    lighter_ends: bool = False,
    attention: AttentionInputs = document_causal,
) -> StageTransformer:
    """Meta-device `model`'s `stage` as a stage of its own, building positions and attention with
    `attention`."""
    if not model.output_weight().is_meta:
        raise ValueError("stage_model: build pipeline stages from a meta-device model, then allocate them")
    keep = {str(i) for i in split_layers(model.cfg.n_layers, n_stages, lighter_ends)[stage]}
    with torch.device("meta"):
        part = StageTransformer(model.cfg, attention)
    for name in list(part.layers.keys()):
        if name not in keep:
            del part.layers[name]
    last = stage == n_stages - 1
    if stage > 0 and not (last and model.cfg.tie_embeddings):
        part.tok_embeddings = None
    if not last:
        part.norm = None
        part.output = None
    return part


class StageParts(nn.Module):
    """A rank's stages seen as one model under full-model names: what the optimizer, gradient clipping,
    checkpoints and exports use. The stages themselves (`parts`) run in the schedule; the modules are
    shared, not copied, so this holds the same parameters."""

    def __init__(self, parts: list[Transformer]) -> None:
        super().__init__()
        self.cfg = parts[0].cfg
        self.parts = tuple(parts)  # a tuple is not registered: names stay free of a "parts." prefix
        self.layers = nn.ModuleDict({n: b for p in parts for n, b in p.layers.items()})
        for attr in ("tok_embeddings", "norm", "output"):
            modules = [getattr(p, attr) for p in parts if getattr(p, attr) is not None]
            setattr(self, attr, modules[0] if modules else None)

    def init_buffers(self) -> None:
        for part in self.parts:
            part.cfg = self.cfg
            part.init_buffers()


class Pipeline:
    """One rank's stages and their schedules; schedules are built per micro-batch shape, since the batch
    and sequence ramps change shapes during training."""

    def __init__(
        self,
        parts: dict[int, Transformer],
        n_stages: int,
        group: ProcessGroup,
        device: torch.device,
        schedule: str,
        n_microbatches: int,
        loss_fn: Callable[[Tensor, Tensor], Tensor],
        ends_group: ProcessGroup | None = None,
    ) -> None:
        if schedule not in SCHEDULES:
            raise ValueError(f"parallel.pp_schedule '{schedule}' is not one of {sorted(SCHEDULES)}")
        if len(parts) > 1 and schedule in SINGLE:
            raise ValueError(f"parallel.pp_schedule '{schedule}' runs one stage per rank; use one of {sorted(MULTI)}")
        self.parts, self.n_stages, self.group, self.device = parts, n_stages, group, device
        self.schedule_cls, self.n_micro, self.loss_fn = SCHEDULES[schedule], n_microbatches, loss_fn
        self.ends_group, self.tied = ends_group, next(iter(parts.values())).cfg.tie_embeddings
        self._schedules: dict[tuple[int, ...], object] = {}

    @property
    def is_first(self) -> bool:
        return 0 in self.parts

    @property
    def is_last(self) -> bool:
        return self.n_stages - 1 in self.parts

    def tied_weights(self) -> list[nn.Parameter]:
        """This rank's copy of a tied embedding matrix (first and last stage), or nothing."""
        if not self.tied or not (self.is_first or self.is_last):
            return []
        end = self.parts[0] if self.is_first else self.parts[self.n_stages - 1]
        return [end.tok_embeddings.weight]

    def duplicate_weights(self) -> list[nn.Parameter]:
        """Parameters another rank also holds (the last stage's tied copy): counted once in the norm."""
        return self.tied_weights() if self.is_last else []

    @torch.no_grad()
    def sync_tied_grads(self) -> None:
        """Sum the tied embedding's gradient over the first and last stage: both copies then take the
        single-model gradient (embedding lookup + output projection) and the same update."""
        for w in self.tied_weights():
            grad = w.grad.to_local() if isinstance(w.grad, DTensor) else w.grad
            summed = grad.contiguous()  # gloo mis-reduces non-contiguous buffers
            dist.all_reduce(summed, group=self.ends_group)
            grad.copy_(summed)

    def _schedule(self, shape: tuple[int, ...]):
        if shape not in self._schedules:
            stages = [PipelineStage(p, i, self.n_stages, self.device, group=self.group) for i, p in self.parts.items()]
            # scale_grads=False: the loss function already divides by the step's token count.
            arg = stages if self.schedule_cls in MULTI.values() else stages[0]
            self._schedules[shape] = self.schedule_cls(arg, self.n_micro, loss_fn=self.loss_fn, scale_grads=False)
        return self._schedules[shape]

    def run(self, tokens: Tensor, doc_ids: Tensor, labels: Tensor, train: bool = True) -> list[Tensor]:
        """Forward (and backward if `train`) over all micro-batches; the last stage returns the losses.
        `doc_ids` cover the whole sequence even when `tokens` are a context-parallel rank's chunks."""
        rows = tokens.shape[0]
        if rows % self.n_micro:
            raise ValueError(f"{rows} sequences per pipeline step cannot form {self.n_micro} micro-batches")
        schedule = self._schedule((rows, *tokens.shape[1:]))
        losses: list[Tensor] = []
        args = (tokens.to(self.device), doc_ids.to(self.device)) if self.is_first else ()
        target = labels.to(self.device) if self.is_last else None
        (schedule.step if train else schedule.eval)(*args, target=target, losses=losses)
        if train:
            self.sync_tied_grads()
        return losses
