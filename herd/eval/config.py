"""The eval stage's config tree (configs/eval/*.toml), loaded by herd.core.config."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal


@dataclass
class ModelSpec:
    path: str = "smollm2"  # bundled name, herd/HF checkpoint folder, or .gguf
    backend: Literal["herd", "hf"] = "herd"  # herd's Transformer, or transformers (the reference)
    tokenizer: str | None = None  # default: the model's own
    device: str = "auto"
    dtype: str = "fp32"
    batch_tokens: int = 4096  # padded tokens per forward pass
    add_bos: bool | None = None  # default: what the model's tokenizer does


@dataclass
class TaskSpec:
    name: str
    path: str | None = None  # a local JSONL task file (docs/evaluation.md)
    kind: Literal["mc", "gen", "code", "bpb"] | None = None
    limit: int | None = None  # first N examples
    shots: int = 0
    mode: Literal["cloze", "letter"] | None = None  # multiple choice; default: the task's own
    samples: int = 1  # code: completions per problem
    k: list[int] = field(default_factory=lambda: [1])  # code: pass@k reported
    temperature: float = 0.0  # code sampling when samples > 1
    max_new_tokens: int | None = None

    def __post_init__(self) -> None:
        if self.limit is not None and self.limit <= 0:
            raise ValueError(f"task {self.name}: limit must be positive")
        if self.shots < 0:
            raise ValueError(f"task {self.name}: shots must be >= 0")


@dataclass
class RobustnessSpec:
    enabled: bool = False
    task: str = "mmlu"
    limit: int = 100
    shots: int = 0  # for the label-variant, permutation and format axes (label bias always uses 4)


@dataclass
class ContaminationSpec:
    enabled: bool = False
    shards: str = ""  # folder of pretraining token shards
    tokenizer: str = "llama3"  # the tokenizer the shards were written with
    index: str = ""  # where the 8-gram index lives; default <out>/ngram-index (built when missing)
    report_threshold: float = 0.8  # % contaminated shown at this T when no T gives a significant gain


@dataclass
class SandboxSpec:
    cpu_s: int = 10
    wall_s: float = 20.0
    memory_mb: int = 1024
    workers: int = 2


@dataclass
class EvalConfig:
    out: str = "runs/eval"
    seed: int = 1234
    # torch CPU threads for the run; 0 leaves torch's default. On a shared 2-core machine 1 thread ran an
    # eval in 137 s where 2 threads (competing with other jobs) took 899 s.
    threads: int = 0
    model: ModelSpec = field(default_factory=ModelSpec)
    tasks: list[TaskSpec] = field(default_factory=list)
    robustness: RobustnessSpec = field(default_factory=RobustnessSpec)
    contamination: ContaminationSpec = field(default_factory=ContaminationSpec)
    sandbox: SandboxSpec = field(default_factory=SandboxSpec)

    def __post_init__(self) -> None:
        if self.threads < 0:
            raise ValueError(f"threads must be >= 0 (0: torch's default), got {self.threads}")
