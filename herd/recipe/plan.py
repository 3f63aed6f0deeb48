"""The dry-run plan of a real-scale recipe: stages, parallel layout, model size, tokens, memory, time.

`herd recipe CONFIG --dry-run` prints `plan(cfg.pretrain, cfg.cluster).table()` instead of training.
Every number is arithmetic on the config, so it can be checked against the paper's own sanity numbers:

- 405B on 16,384 H100s as TP8 · CP1 · PP16 · DP128 at 8K, and CP16 at 128K [P §3.3.2, Table 4];
- 6·N·D = 6 × 405B × 15.6T ≈ 3.8e25 training FLOPs [P §1, §3.2.1];
- wall time = FLOPs / (GPUs × peak × MFU), with the paper's 38–43% BF16 MFU [P Table 4].

The time is pure compute at a fixed MFU: no interruptions (the paper's 54-day snapshot had 466 of them,
with effective training time above 90% [P §3.3.4]), no evaluation and no checkpointing.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field, replace

from herd.model.config import ModelConfig, flops_per_token, param_count, training_memory_bytes
from herd.parallel.dims import ParallelConfig, ParallelDims
from herd.train.config import PretrainConfig
from herd.train.loop import model_config

GIB = 2**30


@dataclass
class ClusterSection:
    gpus: int = 16_384
    gpu: str = "H100-80GB"
    peak_flops: float = 989e12  # dense bf16 per GPU
    mfu: float = 0.40  # [P §3.3.4, Table 4: 38–43% BF16 MFU on the 405B run]
    gpu_memory_gib: float = 80.0


@dataclass
class StagePlan:
    """One row of the plan. Compute stages (pretraining phases) carry tokens, FLOPs, memory and time;
    the others (data, post-training, evaluation) are listed with what they do."""

    name: str
    kind: str  # data | pretrain | long_context | anneal | posttrain | eval
    tokens: int = 0
    seq_len: int = 0
    batch_tokens: int = 0
    steps: int = 0
    flops: float = 0.0
    flops_6nd: float = 0.0  # 6·N·D, the paper's accounting (no attention term)
    layout: ParallelDims | None = None
    memory: dict[str, float] = field(default_factory=dict)  # bytes per GPU by part, with "total"
    seconds: float = 0.0
    note: str = ""

    @property
    def memory_gib(self) -> float:
        return self.memory.get("total", 0.0) / GIB


@dataclass
class Plan:
    preset: str
    model: ModelConfig
    cluster: ClusterSection
    layout: ParallelDims  # the main phase's
    stages: list[StagePlan]
    flags: list[str] = field(default_factory=list)  # over-memory stages, uneven splits, herd limitations

    @property
    def params(self) -> int:
        return param_count(self.model)

    @property
    def compute(self) -> list[StagePlan]:
        return [s for s in self.stages if s.flops]

    @property
    def tokens(self) -> int:
        return sum(s.tokens for s in self.compute)

    @property
    def flops(self) -> float:
        return sum(s.flops for s in self.compute)

    @property
    def flops_6nd(self) -> float:
        return sum(s.flops_6nd for s in self.compute)

    @property
    def seconds(self) -> float:
        return sum(s.seconds for s in self.compute)

    @property
    def gpu_hours(self) -> float:
        return self.seconds * self.cluster.gpus / 3600

    def table(self) -> str:
        return format_plan(self)


def plan(pretrain: PretrainConfig, cluster: ClusterSection, posttrain_rounds: int = 6) -> Plan:
    """The whole recipe for `pretrain` on `cluster`; a layout that cannot be built raises one line."""
    cfg = model_config(pretrain, pretrain.model.vocab_size or 128_256)  # 0: Llama 3's 128,256 [P Table 3]
    layout = _resolve(pretrain.parallel, cluster.gpus)
    try:
        layout.check_model(cfg, [s.seq_len for s in pretrain.ramp.stages])
    except ValueError as e:
        raise ValueError(f"plan: {e}") from None
    ctx = _Ctx(pretrain, cfg, cluster)
    compute = _pretrain_phases(ctx, layout)
    over = [f"{s.name} ({s.memory_gib:.0f})" for s in compute if s.memory_gib > cluster.gpu_memory_gib]
    if over:
        ctx.flag(
            f"GiB per GPU over {cluster.gpu_memory_gib:.0f}; more TP/PP/CP, activation checkpointing or "
            "a smaller micro-batch would fit",
            *over,
        )
    rounds = f"{posttrain_rounds} rounds of RM → rejection sampling → SFT → DPO → average [P §4.1.6]"
    stages = [*_data_stages(cfg.vocab_size), *compute, StagePlan("posttrain", "posttrain", note=rounds), _EVAL]
    flags = [f"{problem}: {', '.join(where)}" for problem, where in ctx.flags.items()]
    return Plan(pretrain.model.preset, cfg, cluster, layout, stages, flags)


def _data_stages(vocab_size: int) -> list[StagePlan]:
    vocab = f"{vocab_size:,} ids"
    if vocab_size == 128_256:
        vocab += ": 100K tiktoken ranks + 28K non-English merges + 256 specials [P §3.2]"
    return [
        StagePlan("curate", "data", note="extract → URL/MinHash/line dedup → heuristics → quality → mix [P §3.1]"),
        StagePlan("tokenizer", "data", note=vocab),
        StagePlan("tokenize", "data", note="token shards per source"),
    ]


_EVAL = StagePlan("eval", "eval", note="benchmarks with 95% CIs, robustness, contamination [P §5]")


def _resolve(parallel: ParallelConfig, gpus: int) -> ParallelDims:
    try:
        return ParallelDims.resolve(parallel, gpus)
    except ValueError as e:
        raise ValueError(f"plan on {gpus:,} GPUs: {e}") from None


# ---------------------------------------------------------------------------------------------- phases


@dataclass
class _Ctx:
    pre: PretrainConfig
    cfg: ModelConfig
    cluster: ClusterSection
    flags: dict[str, list[str]] = field(default_factory=dict)  # a problem → where (one table line each)

    def flag(self, problem: str, *where: str) -> None:
        self.flags.setdefault(problem, []).extend(where)


def _pretrain_phases(ctx: _Ctx, layout: ParallelDims) -> list[StagePlan]:
    """Main phase (one row per ramp stage) → long-context stages → annealing, as the loop runs them."""
    pre = ctx.pre
    rows = [
        _compute_row(ctx, f"pretrain {i + 1}", "pretrain", tokens, seq, batch, layout)
        for i, (tokens, seq, batch) in enumerate(_main_tokens(pre))
        if tokens > 0
    ]
    last = pre.ramp.stages[-1]
    seq, batch = last.seq_len, last.batch_tokens
    for i, lc in enumerate(pre.long_context):
        # The loop's rule: the last ramp batch rounded to whole sequences of the new length.
        seq = lc.seq_len
        batch = lc.batch_tokens or max(1, round(last.batch_tokens / seq)) * seq
        row = _compute_row(ctx, f"long {i + 1}", "long_context", lc.tokens, seq, batch, _long_layout(ctx, seq, layout))
        row.note = "≥ tokens: until loss recovers and the needle passes [P §3.4.2]"
        rows.append(row)
    if pre.anneal.tokens:
        row = _compute_row(ctx, "anneal", "anneal", pre.anneal.tokens, seq, batch, rows[-1].layout or layout)
        row.note = f"LR linearly to 0; Polyak average of {pre.anneal.checkpoints} snapshots [P §3.4.3]"
        rows.append(row)
    return rows


def _main_tokens(pre: PretrainConfig) -> list[tuple[int, int, int]]:
    """(tokens, seq_len, batch_tokens) per ramp stage up to the main phase's end: `schedule.tokens`,
    else `schedule.max_steps` steps, else the cosine horizon `schedule.total_steps`."""
    stages = pre.ramp.stages
    ends = [s.after_tokens for s in stages[1:]] + [math.inf]
    budget_tokens = pre.schedule.tokens or math.inf
    budget_steps = pre.schedule.max_steps or (math.inf if pre.schedule.tokens else pre.schedule.total_steps)
    seen, steps, out = 0, 0, []
    for s, end in zip(stages, ends):
        stop = min(end, budget_tokens)
        # Whole steps: the loop moves to the next stage at the first step that has seen `after_tokens`.
        n = min(math.ceil((stop - seen) / s.batch_tokens) if stop < math.inf else math.inf, budget_steps - steps)
        out.append((int(n * s.batch_tokens), s.seq_len, s.batch_tokens))
        seen, steps = seen + n * s.batch_tokens, steps + n
        if steps >= budget_steps or seen >= budget_tokens:
            break
    return out


def _long_layout(ctx: _Ctx, seq: int, main: ParallelDims) -> ParallelDims:
    """The paper grows CP with the context so each rank keeps an 8K chunk (CP16 at 128K) while DP shrinks
    [P Table 4]. herd has one [parallel] section, so this layout is the plan's suggestion."""
    parallel, gpus = ctx.pre.parallel, ctx.cluster.gpus
    base_seq = ctx.pre.ramp.stages[-1].seq_len
    cp = parallel.cp if parallel.cp > 1 else 1 << max(0, math.ceil(math.log2(seq / base_seq)))
    if cp == main.cp:
        return main
    try:
        dims = ParallelDims.resolve(replace(parallel, cp=cp, dp_shard=-1), gpus)
    except ValueError:
        ctx.flag(f"CP does not fit {gpus:,} GPUs, planned with the main layout", f"seq {seq:,} (CP{cp})")
        return main
    try:
        dims.check_model(ctx.cfg, [seq])
    except ValueError as e:
        ctx.flag(f"herd cannot run this layout yet ({e})", f"seq {seq:,} (CP{cp})")
    return dims


def _compute_row(ctx: _Ctx, name: str, kind: str, tokens: int, seq: int, batch: int, dims: ParallelDims) -> StagePlan:
    cfg, cluster = ctx.cfg, ctx.cluster
    flops = flops_per_token(cfg, seq) * tokens
    n_seqs = batch // seq
    if n_seqs % dims.dp:
        ctx.flag("sequences per step do not split evenly over DP", f"{name} ({n_seqs:,} over {dims.dp})")
    return StagePlan(
        name=name,
        kind=kind,
        tokens=tokens,
        seq_len=seq,
        batch_tokens=batch,
        steps=math.ceil(tokens / batch),
        flops=flops,
        flops_6nd=6 * param_count(cfg) * tokens,
        layout=dims,
        memory=memory_per_gpu(cfg, dims, ctx.pre, seq),
        seconds=flops / (cluster.gpus * cluster.peak_flops * cluster.mfu),
    )


def memory_per_gpu(cfg: ModelConfig, dims: ParallelDims, pre: PretrainConfig, seq: int) -> dict[str, float]:
    """Per-GPU bytes from `training_memory_bytes`, with the layout's sharding:

    - parameters, gradients and AdamW state are split over TP × PP and FSDP's dp_shard × cp group;
    - activations: one micro-batch of `micro_batch_size` sequences, split by CP (sequence chunks) and
      TP (sequence parallel splits the rest); under 1F1B the first pipeline stage holds up to PP
      micro-batches of its L/PP layers, i.e. the whole model's layers for one micro-batch;
    - without resharding after forward (the paper's FSDP mode [P §3.3.2]) the stage's bf16 weights
      stay gathered from forward to backward.
    """
    p = pre.parallel
    in_flight = min(dims.pp, p.pp_microbatches or dims.pp) / dims.pp
    tokens = pre.ramp.micro_batch_size * seq / (dims.cp * dims.tp) * in_flight
    shards = dims.tp * dims.pp * dims.dp_shard * dims.cp
    mem = training_memory_bytes(cfg, int(tokens), shards, pre.runtime.activation_checkpointing)
    if not p.reshard_after_forward and dims.dp_shard * dims.cp > 1:
        mem["gathered weights"] = param_count(cfg) * 2 / (dims.tp * dims.pp)
        mem["total"] += mem["gathered weights"]
    return mem


# ---------------------------------------------------------------------------------------------- table


def _count(n: float) -> str:
    return f"{n / 1e9:.2f}B" if n >= 1e9 else f"{n / 1e6:.2f}M"


def format_plan(p: Plan) -> str:
    """A plain-text table (fixed width, so it reads the same in a terminal, a log and a test)."""
    c = p.cluster
    lines = [
        f"herd recipe plan: {p.preset} ({_count(p.params)} parameters, "
        f"{_count(param_count(p.model, embeddings=False))} without embeddings) on {c.gpus:,} × {c.gpu} "
        f"at {100 * c.mfu:.0f}% MFU of {c.peak_flops / 1e12:.0f} TFLOP/s",
        f"main layout: {_layout(p.layout)} = {p.layout.world_size:,} GPUs",
        "",
        f"{'stage':<14}{'seq':>9}{'batch':>8}{'tokens':>10}{'steps':>11}{'FLOPs':>10}  {'layout':<20}"
        f"{'GiB/GPU':>8}{'days':>8}  note",
    ]
    for s in p.stages:
        lines.append(_row(s))
    lines += [
        "-" * 100,
        f"{'total':<14}{'':>17}{_si(p.tokens):>10}{sum(s.steps for s in p.compute):>11,}{p.flops:>10.2e}"
        f"  {'':<20}{max((s.memory_gib for s in p.compute), default=0):>8.1f}{p.seconds / 86400:>8.1f}"
        f"  {p.gpu_hours / 1e6:.2f}M GPU-hours",
        f"6·N·D (no attention term): {p.flops_6nd:.2e} FLOPs; with attention: {p.flops:.2e} "
        f"(wall time = FLOPs / ({c.gpus:,} × {c.peak_flops:.3g} × {c.mfu:.2f}))",
    ]
    lines += [f"! {f}" for f in p.flags]
    return "\n".join(lines)


def _row(s: StagePlan) -> str:
    if not s.flops:
        return f"{s.name:<14}{'':>17}{s.note}"
    layout = _layout(s.layout) if s.layout else ""
    return (
        f"{s.name:<14}{s.seq_len:>9,}{_si(s.batch_tokens):>8}{_si(s.tokens):>10}{s.steps:>11,}{s.flops:>10.2e}"
        f"  {layout:<20}{s.memory_gib:>8.1f}{s.seconds / 86400:>8.1f}  {s.note}"
    )


def _layout(d: ParallelDims) -> str:
    dp = f"{d.dp_replicate}×{d.dp_shard}" if d.dp_replicate > 1 else f"{d.dp}"
    return f"TP{d.tp} CP{d.cp} PP{d.pp} DP{dp}"


def _si(n: float) -> str:
    for unit, scale in (("T", 1e12), ("B", 1e9), ("M", 1e6), ("K", 1e3)):
        if n >= scale:
            return f"{n / scale:.3g}{unit}"
    return f"{n:.0f}"
