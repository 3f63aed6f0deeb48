"""The scaling-sweep config tree: `herd scaling sweep configs/scaling/tiny.toml budgets=[1e11,2e11]`."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal


@dataclass
class SizeSection:
    """One model size on the grid; 0 keeps the preset's value (as herd.train's model section)."""

    name: str = "s"
    preset: str = "debug"
    dim: int = 0
    n_layers: int = 0
    n_heads: int = 0
    n_kv_heads: int = 0
    ffn_dim: int = 0
    lr: float = 0.0  # 0: the sweep's lr (the paper used 2e-4 to 4e-4 depending on size [P §3.2.1])


@dataclass
class BuildSection:
    """Token shards built for the sweep: a small BPE tokenizer, then `tokenize` (into `<shards>-docs` when
    `windows`). An input named "stdlib" means this Python's top-level standard-library modules (on every
    machine)."""

    inputs: list[str] = field(default_factory=lambda: ["stdlib"])
    vocab_size: int = 1024
    val_fraction: float = 0.05
    # Cut every document into windows of seq_len + 1 tokens (remainders dropped), so each batch row comes
    # from a random file: whole files read in order make a tiny run's final loss depend on its last files.
    windows: bool = True


@dataclass
class DataSection:
    shards: str = "runs/scaling/tokens"
    build: BuildSection | None = field(default_factory=BuildSection)  # None: use `shards` as they are


@dataclass
class BenchmarkSection:
    """Normalized NLL of the correct answer and accuracy on a multiple-choice task, after each run."""

    task: str = "arc_easy"  # a herd.eval task name; "" disables
    path: str = ""  # a local JSONL task instead of a built-in one
    limit: int = 200  # first N examples (0: all)


@dataclass
class HoldoutSection:
    """A run left out of every fit; `herd scaling fit` predicts its validation loss."""

    budget: float = 0.0  # 0: no held-out run
    size: str = ""  # a size name from `sizes`


@dataclass
class ScalingConfig:
    run_dir: str = "runs/scaling"
    seed: int = 0
    budgets: list[float] = field(default_factory=lambda: [6e18, 1e19, 3e19])  # FLOPs [P §3.2.1]: 6e18 to 1e22
    sizes: list[SizeSection] = field(default_factory=list)
    seq_len: int = 128
    # Tokens per step, fixed per budget [P §3.2.1: 250K to 4M]: one value for all, or one per budget.
    batch_tokens: list[int] = field(default_factory=lambda: [4096])
    micro_batch_size: int = 32
    lr: float = 3e-4  # peak
    min_lr_ratio: float = 0.1  # cosine decays to 0.1 × peak [P §3.2.1]
    weight_decay: float = 0.1  # × the current LR (torch AdamW), as the scaling runs [P §3.2.1]
    warmup_steps: int = 2000  # [P §3.2.1] ...
    warmup_max_fraction: float = 0.1  # ... capped at this share of a run's steps, so small budgets still decay
    axis: Literal["tokens", "params"] = "tokens"  # the paper's N*(C) counts tokens (facts §0 caveat 2)
    dtype: Literal["fp32", "bf16"] = "fp32"
    device: str = "cpu"
    eval_batches: int = 8  # validation batches for the final loss
    checkpoints: int = 4  # per run, so an interrupted run resumes
    workers: int = 1  # runs trained at once, each in its own process
    target_budget: float = 3.8e25  # extrapolate the fitted law here (the flagship budget [P §3.2.1])
    data: DataSection = field(default_factory=DataSection)
    benchmark: BenchmarkSection = field(default_factory=BenchmarkSection)
    holdout: HoldoutSection = field(default_factory=HoldoutSection)

    def __post_init__(self) -> None:
        if not self.budgets or any(c <= 0 for c in self.budgets):
            raise ValueError("budgets must be a non-empty list of positive FLOP counts")
        if len(self.batch_tokens) not in (1, len(self.budgets)):
            raise ValueError(f"batch_tokens needs 1 value or one per budget ({len(self.budgets)})")
        if any(b % self.seq_len for b in self.batch_tokens):
            raise ValueError(f"every batch_tokens must be a multiple of seq_len {self.seq_len}")
        names = [s.name for s in self.sizes]
        if len(set(names)) != len(names):
            raise ValueError(f"size names must be unique, got {names}")
        if self.holdout.budget and self.holdout.size not in names:
            raise ValueError(f"holdout.size {self.holdout.size!r} is not one of the sizes {names}")

    def batch_for(self, budget: float) -> int:
        if len(self.batch_tokens) == 1:
            return self.batch_tokens[0]
        return self.batch_tokens[self.budgets.index(budget)] if budget in self.budgets else self.batch_tokens[-1]
