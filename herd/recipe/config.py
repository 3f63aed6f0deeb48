"""The recipe config: one TOML that names each stage's own config plus overrides, and how stages connect.

Each stage keeps its own config tree (configs/curate, configs/pretrain, ...); the recipe points at one
per stage and adds dotted overrides. Paths between stages (documents → tokenizer → shards → checkpoints
→ chat model → evaluation) are set by the recipe, under one `run_dir`, so they cannot drift apart.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from herd.recipe.plan import ClusterSection

# Stages in order; `herd recipe CONFIG --stage NAME` reruns one.
STAGES = ("corpus", "curate", "tokenizer", "tokenize", "pretrain", "posttrain", "eval", "report")


@dataclass
class StageSection:
    config: str = ""  # the stage's own TOML; "" = that stage's defaults
    overrides: list[str] = field(default_factory=list)  # dotted, as on the stage's command line


@dataclass
class CorpusSection:
    sources: str = "runs/corpus-sources"  # scripts/fetch_corpus.sh output; the bundled corpus is built from it
    documents: str = ""  # a ready folder of raw documents instead (skips the build)


@dataclass
class TokenizerSection:
    """Trained on the curated documents [P §3.1.1 → §2]; `base = "llama3"` uses Meta's 128K tokenizer."""

    base: str = ""
    vocab_size: int = 4096
    min_frequency: int = 2
    max_chars: int = 0  # read at most this many characters of the curated documents (0: all)


@dataclass
class TokenizeSection:
    val_fraction: float = 0.02
    workers: int = 2


@dataclass
class PretrainSection(StageSection):
    # Curation's annealing subset (high-quality code, math and prose) becomes its own source; its share
    # of the mix during annealing [P §3.4.3: "upsample data sources of very high quality"]. Outside
    # annealing it is not sampled on its own (its documents are in the main sources already).
    anneal_share: float = 0.5


@dataclass
class EvalSection(StageSection):
    base: bool = True  # also evaluate the pretrained base model: the before/after post-training table


@dataclass
class ReportSection:
    prompts: list[str] = field(
        default_factory=lambda: ["What is 7 plus 5?", "Say hello to a new friend.", "Name a color of the sky."]
    )
    max_new_tokens: int = 40


@dataclass
class RecipeConfig:
    run_dir: str = "runs/recipe"
    seed: int = 0
    corpus: CorpusSection = field(default_factory=CorpusSection)
    curate: StageSection = field(default_factory=StageSection)
    tokenizer: TokenizerSection = field(default_factory=TokenizerSection)
    tokenize: TokenizeSection = field(default_factory=TokenizeSection)
    pretrain: PretrainSection = field(default_factory=PretrainSection)
    posttrain: StageSection = field(default_factory=StageSection)
    eval: EvalSection = field(default_factory=EvalSection)
    report: ReportSection = field(default_factory=ReportSection)
    cluster: ClusterSection = field(default_factory=ClusterSection)  # for --dry-run plans
