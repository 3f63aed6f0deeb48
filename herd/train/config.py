"""The pretraining config tree: `herd pretrain configs/pretrain/debug.toml optim.lr=1e-3 ...`."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from herd.core.config import at_least
from herd.data.loader import MixSchedule, MixStage
from herd.parallel.dims import ParallelConfig
from herd.train.schedules import LRSchedule, Ramp, RampStage


@dataclass
class ModelSection:
    preset: str = "debug"
    vocab_size: int = 0  # 0: the token shards' vocabulary
    dim: int = 0  # 0 keeps the preset's value (same for the fields below)
    n_layers: int = 0
    n_heads: int = 0
    n_kv_heads: int = 0
    ffn_dim: int = 0
    max_seq_len: int = 0
    tie_embeddings: bool | None = None  # None keeps the preset's (Llama 3.2 1B/3B tie, the others do not)
    attn_impl: Literal["auto", "sdpa", "flex"] = "auto"
    # Continued pretraining: start from these weights (a herd run folder, an HF or Meta folder, a GGUF
    # file, or a bundled model name such as "smollm2") instead of the seed's. Their config decides the
    # shape (the fields above stay 0); the optimizer starts fresh and the schedule is this config's.
    init_from: str = ""


@dataclass
class MixStageSection:
    after_tokens: int = 0
    weights: dict[str, float] = field(default_factory=dict)


@dataclass
class DataSection:
    shards: str = "runs/tokens"  # a `herd tokenize` output folder: <source>/{train,val}/*.bin
    # The tokenizer the shards were made with: a tokenizer.model path (or its folder) or "llama3" (Meta's).
    # Empty: <shards>/tokenizer.model if the tokenize stage left one there, else none (no needle probe,
    # exports without a tokenizer).
    tokenizer: str = ""
    mix: dict[str, float] = field(default_factory=dict)  # empty: every source weighted by its tokens
    mix_stages: list[MixStageSection] = field(default_factory=list)  # later changes [P §3.4.1]
    seed: int = 0
    # Shuffle documents in pieces of at most this many tokens (0: whole documents). A small run on long
    # documents otherwise spends whole steps on consecutive windows of one document.
    chunk_tokens: int = 0


@dataclass
class OptimSection:
    lr: float = 3e-4  # peak LR (8B: 3e-4, 70B: 1.5e-4, 405B: 8e-5 [P Table 3])
    betas: tuple[float, float] = (0.9, 0.95)
    eps: float = 1e-8
    # torch's AdamW decays by lr_t × weight_decay per step, so 0.1 here is the scaling runs'
    # "weight decay 0.1 × the current learning rate" [P §3.2.1].
    weight_decay: float = 0.1
    grad_clip: float = 1.0

    def __post_init__(self) -> None:
        at_least(self, lr=1e-30, eps=0.0, weight_decay=0.0, grad_clip=0.0)


@dataclass
class ScheduleSection:
    warmup_steps: int = 2000
    total_steps: int = 100_000  # cosine horizon
    min_lr: float = 0.0  # the floor (405B: 8e-7)
    max_steps: int = 0  # stop the main phase after this many steps (0: run to `tokens`)
    tokens: int = 0  # stop the main phase after this many tokens (0: run to `max_steps`)

    def __post_init__(self) -> None:
        at_least(self, warmup_steps=0, total_steps=1, min_lr=0.0, max_steps=0, tokens=0)


@dataclass
class RampStageSection:
    after_tokens: int = 0
    batch_tokens: int = 4096
    seq_len: int = 512


@dataclass
class RampSection:
    stages: list[RampStageSection] = field(default_factory=lambda: [RampStageSection()])
    micro_batch_size: int = 8  # sequences per forward; the rest is gradient accumulation

    def __post_init__(self) -> None:
        at_least(self, micro_batch_size=1)


@dataclass
class GuardSection:
    """Loss-spike/NaN guard: skip an update whose loss is non-finite or above spike_factor × its EMA."""

    spike_factor: float = 3.0
    ema: float = 0.98
    warmup_steps: int = 20  # no spike test until the EMA has settled
    max_skips: int = 5  # consecutive skips before rolling back to the last checkpoint
    # Rollbacks to one checkpoint before trying the one before it; when none is left the run fails (a fault
    # that survives every rollback, e.g. a learning rate that always diverges, must not loop forever).
    max_rollbacks: int = 3


@dataclass
class CheckpointSection:
    every: int = 100
    keep: int = 3
    verify: bool = True  # hash checkpoint files on load and fall back to the previous on mismatch
    # When the run folder holds checkpoints and none of them can be trusted, training stops with one line;
    # true starts over from step 0 instead (the unusable checkpoints are then replaced).
    start_over: bool = False


@dataclass
class EvalSection:
    every: int = 50
    batches: int = 4
    batch_size: int = 8
    seq_len: int = 0  # 0: the first ramp stage's
    # Benchmarks inside the loop: tasks (herd eval names, e.g. "arc_easy", or a task .jsonl) scored zero-shot
    # on their first `benchmark_limit` examples every `benchmark_every` steps and at the end, logged beside
    # the loss as kind "bench" (metrics.jsonl, TensorBoard bench/<task>), so runs compare on downstream
    # numbers, not loss alone. Needs the tokenizer beside the shards.
    benchmarks: list[str] = field(default_factory=list)
    benchmark_every: int = 0  # 0: with every held-out evaluation (`every`)
    benchmark_limit: int = 50
    # The held-out set: a `herd tokenize` folder whose <source>/val/ shards are scored ("": data.shards).
    # Experiments that change the training data (filtering, mixes) score every arm on the same held-out set.
    shards: str = ""
    # Also record the final model's held-out loss on each source alone (summary `held_out_loss_by_source`):
    # a dataset's own-domain loss when valuing it by annealing [P §3.1.3].
    by_source: bool = False


@dataclass
class LongContextStage:
    """One long-context stage [P §3.4.2]: train at `seq_len` for at least `tokens`; the stage ends once
    short-context held-out loss is back within `loss_tolerance` of its value before the stage and (if
    `needle`) a needle-in-a-haystack probe passes at this length, or at `max_tokens` regardless (logged)."""

    seq_len: int = 8192
    tokens: int = 0
    max_tokens: int = 0  # 0: twice `tokens`
    batch_tokens: int = 0  # 0: the last ramp stage's batch, rounded to whole sequences
    rope_theta: float = 0.0  # 0: keep
    rope_scaling_factor: float = 0.0  # 0: keep; else Llama 3.1 scaling with this factor
    loss_tolerance: float = 0.02
    needle: bool = True


@dataclass
class AnnealSection:
    """Annealing: LR linear to 0 over `tokens` with high-quality sources up-sampled, then a Polyak
    average of the checkpoints taken during it is the base model [P §3.4.3]."""

    tokens: int = 0  # 0: no annealing
    mix: dict[str, float] = field(default_factory=dict)  # empty: keep the main mix
    checkpoints: int = 4  # evenly spaced over the annealing phase, averaged at the end


@dataclass
class RuntimeSection:
    device: str = "auto"
    dtype: Literal["fp32", "bf16"] = "fp32"  # bf16 = autocast; weights, grads and AdamW stay fp32
    compile: bool = False
    activation_checkpointing: bool = False
    peak_flops: float = 0.0  # for MFU; 0 measures a matmul peak on this device at start
    tensorboard: bool = True
    log_every: int = 1


@dataclass
class PretrainConfig:
    run_dir: str = "runs/pretrain"
    seed: int = 0
    model: ModelSection = field(default_factory=ModelSection)
    data: DataSection = field(default_factory=DataSection)
    optim: OptimSection = field(default_factory=OptimSection)
    schedule: ScheduleSection = field(default_factory=ScheduleSection)
    ramp: RampSection = field(default_factory=RampSection)
    guard: GuardSection = field(default_factory=GuardSection)
    checkpoint: CheckpointSection = field(default_factory=CheckpointSection)
    eval: EvalSection = field(default_factory=EvalSection)
    long_context: list[LongContextStage] = field(default_factory=list)
    anneal: AnnealSection = field(default_factory=AnnealSection)
    runtime: RuntimeSection = field(default_factory=RuntimeSection)
    parallel: ParallelConfig = field(default_factory=ParallelConfig)

    def lr_schedule(self) -> LRSchedule:
        s = self.schedule
        return LRSchedule(peak=self.optim.lr, warmup_steps=s.warmup_steps, total_steps=s.total_steps, floor=s.min_lr)

    def ramp_schedule(self) -> Ramp:
        return Ramp(tuple(RampStage(s.after_tokens, s.batch_tokens, s.seq_len) for s in self.ramp.stages))

    def mix_schedule(self, default: dict[str, float]) -> MixSchedule:
        stages = [MixStage(0, self.data.mix or default)]
        stages += [MixStage(s.after_tokens, s.weights) for s in self.data.mix_stages]
        return MixSchedule(tuple(stages))


TOKENIZER_FILES = ("tokenizer.model", "tokenizer.json")  # a tiktoken ranks file; an HF vocabulary


def _tokenizer_in(folder: Path) -> Path | None:
    return next((folder / name for name in TOKENIZER_FILES if (folder / name).is_file()), None)


def tokenizer_file(data: DataSection) -> Path | None:
    """The tokenizer file that `data.tokenizer` names, else the one beside the shards (`tokenizer.model`,
    or `tokenizer.json` for an HF/GGUF vocabulary), else None."""
    if not data.tokenizer:
        return _tokenizer_in(Path(data.shards))
    if data.tokenizer == "llama3":
        from herd.tokenizer.load import llama3_path

        return llama3_path()
    path = Path(data.tokenizer)
    if path.is_dir():
        path = _tokenizer_in(path) or path / TOKENIZER_FILES[0]
    if not path.is_file():
        raise FileNotFoundError(f"data.tokenizer: {path} is not a tokenizer.model or tokenizer.json file")
    return path
