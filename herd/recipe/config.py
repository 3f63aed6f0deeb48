"""The recipe config: one typed tree that embeds every stage's own config dataclass.

Each stage table (`[curate]`, `[tokenizer]`, `[tokenize]`, `[pretrain]`, `[posttrain]`, `[eval]`) is that
stage's config. Its keys are merged key by key from three layers, later winning:

1. the stage's own TOML, named by the table's `config` key (e.g. `configs/pretrain/debug.toml`);
2. the keys written in the recipe's table (`[pretrain.optim] lr = 1e-3`);
3. dotted overrides on the command line (`pretrain.optim.lr=1e-3`), like any other key.

A typo anywhere names the nearest valid key with its full path (`pretrain.optim.lrr` → `pretrain.optim.lr`).
The paths between stages (documents → tokenizer → shards → checkpoints → chat model → evaluation) are
wired by the recipe under one `run_dir`; setting one of them in the recipe is an error, so they cannot
drift apart. What depends on earlier outputs (the data mix, the chat model) is wired when the stage runs.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from herd.core.config import (
    ConfigError,
    apply_overrides,
    from_dict,
    load_config,
    merge_tables,
    parse_override,
    read_toml,
)
from herd.data.pipeline import CurateConfig, curated_folder
from herd.data.tokenize import TokenizeConfig
from herd.data.tokenizer_stage import TokenizerTrainConfig
from herd.eval.config import EvalConfig
from herd.posttrain.rounds import PosttrainConfig
from herd.recipe.plan import ClusterSection
from herd.safety.recipe import RecipeSafetySection
from herd.speech.recipe import RecipeSpeechSection
from herd.train.config import PretrainConfig
from herd.vision.recipe import RecipeVisionSection

# Stages in order; `herd recipe CONFIG --stage NAME` runs one.
STAGES = (
    "corpus",
    "curate",
    "tokenizer",
    "tokenize",
    "pretrain",
    "posttrain",
    "eval",
    "safety",
    "vision",
    "speech",
    "report",
)

# The recipe tables that are a stage's own config dataclass; `config` in such a table names its base TOML.
EMBEDDED: dict[str, type] = {
    "curate": CurateConfig,
    "tokenizer": TokenizerTrainConfig,
    "tokenize": TokenizeConfig,
    "pretrain": PretrainConfig,
    "posttrain": PosttrainConfig,
    "eval": EvalConfig,
}
BASE_KEY = "config"

# Keys the recipe wires itself (paths between stages, the run-wide seed).
WIRED: dict[str, tuple[str, ...]] = {
    "curate": ("inputs", "out"),
    "tokenizer": ("inputs", "out"),
    "tokenize": ("tokenizer", "sources", "out"),
    "pretrain": ("run_dir", "seed", "data.shards", "data.tokenizer"),
    "posttrain": ("out", "seed", "base.model", "base.tokenizer", "bundle.out"),
    "eval": ("out", "model.path", "model.tokenizer", "contamination.shards", "contamination.tokenizer"),
}


@dataclass
class CorpusSection:
    sources: str = "runs/corpus-sources"  # scripts/fetch_corpus.sh output; the bundled corpus is built from it
    documents: str = ""  # a ready folder of raw documents instead (skips the build)


@dataclass
class ReportSection:
    prompts: list[str] = field(
        default_factory=lambda: ["What is 7 plus 5?", "Say hello to a new friend.", "Name a color of the sky."]
    )
    max_new_tokens: int = 40


@dataclass
class RecipeConfig:
    run_dir: str = "runs/recipe"
    seed: int = 0  # the run-wide seed: pretraining and post-training use it
    # Curation's annealing subset (high-quality code, math and prose) becomes its own source; its share
    # of the mix during annealing [P §3.4.3: "upsample data sources of very high quality"]. Outside
    # annealing it is not sampled on its own (its documents are in the main sources already).
    anneal_share: float = 0.5
    eval_base: bool = True  # also evaluate the pretrained base model: the before/after post-training table
    corpus: CorpusSection = field(default_factory=CorpusSection)
    # `base = "llama3"` with no extra merges uses Meta's 128K tokenizer instead of training one [P §3.1.1 → §2].
    curate: CurateConfig = field(default_factory=lambda: CurateConfig(inputs=[], out=""))
    tokenizer: TokenizerTrainConfig = field(default_factory=TokenizerTrainConfig)
    tokenize: TokenizeConfig = field(default_factory=TokenizeConfig)
    pretrain: PretrainConfig = field(default_factory=PretrainConfig)
    posttrain: PosttrainConfig = field(default_factory=PosttrainConfig)
    eval: EvalConfig = field(default_factory=EvalConfig)
    safety: RecipeSafetySection = field(default_factory=RecipeSafetySection)  # VR/FRR ± guard, memorization
    vision: RecipeVisionSection = field(default_factory=RecipeVisionSection)  # image adapter, VQA [P §7]
    speech: RecipeSpeechSection = field(default_factory=RecipeSpeechSection)  # ASR WER ± CI [P §8]
    report: ReportSection = field(default_factory=ReportSection)
    cluster: ClusterSection = field(default_factory=ClusterSection)  # for --dry-run plans

    @property
    def meta_tokenizer(self) -> bool:
        """The run uses Meta's tokenizer as it is (no tokenizer training)."""
        return self.tokenizer.base == "llama3" and self.tokenizer.extra_merges == 0


def load_recipe(path: str | Path | None, overrides: Sequence[str] = ()) -> RecipeConfig:
    """The recipe at `path` with every stage's base TOML, the recipe's own keys and `overrides` merged."""
    data: dict[str, Any] = read_toml(path) if path is not None else {}
    bases, rest = _split_bases(overrides)
    for name, cls in EMBEDDED.items():
        table = data.get(name, {})
        if not isinstance(table, Mapping):
            raise ConfigError(f"{path}: '{name}' must be a table")
        table = dict(table)
        base = bases.get(name, table.pop(BASE_KEY, ""))
        if base:
            load_config(cls, base)  # check the stage's own file alone: its errors name that file
            table = merge_tables(read_toml(base), table)
        data[name] = table
    _refuse_wired(data, rest, path)
    data["curate"] = {"inputs": [], "out": ""} | data["curate"]  # required there; wired below
    apply_overrides(RecipeConfig, data, rest)
    cfg = from_dict(RecipeConfig, data, where=str(path) if path is not None else "")
    wire(cfg)
    return cfg


def _split_bases(overrides: Sequence[str]) -> tuple[dict[str, str], list[str]]:
    """`pretrain.config=FILE` overrides name a stage's base TOML; every other override is a key."""
    bases, rest = {}, []
    for text in overrides:
        key, value = parse_override(text)
        stage, _, leaf = key.partition(".")
        if stage in EMBEDDED and leaf == BASE_KEY:
            bases[stage] = str(value)
        else:
            rest.append(text)
    return bases, rest


def _refuse_wired(data: dict[str, Any], overrides: list[str], path: Any) -> None:
    """A wired key set in the recipe or on the command line would be silently replaced: say so instead."""
    set_here = {parse_override(t)[0] for t in overrides}
    recipe_tables = read_toml(path) if path is not None else {}
    for name, keys in WIRED.items():
        for key in keys:
            dotted = f"{name}.{key}"
            if dotted in set_here or _has(recipe_tables.get(name, {}), key.split(".")):
                raise ConfigError(f"{dotted} is wired by the recipe (from run_dir and the stages before it); remove it")


def _has(table: Any, parts: list[str]) -> bool:
    for part in parts:
        if not isinstance(table, Mapping) or part not in table:
            return False
        table = table[part]
    return True


def wire(cfg: RecipeConfig) -> None:
    """Set the paths between stages under `run_dir` (and the run-wide seed) on the embedded configs."""
    root = Path(cfg.run_dir)
    documents = cfg.corpus.documents or str(root / "corpus" / "documents")
    cur = cfg.curate
    cur.inputs, cur.out = [documents], str(root / "curate")
    if not cfg.corpus.documents and cur.heuristics.dirty_words_dir:
        # The bundled corpus brings its own dirty-word lists (npm naughty-words) beside the documents.
        cur.heuristics.dirty_words_dir = str(root / "corpus" / "documents-resources" / "ldnoobw")
    tok = cfg.tokenizer
    tok.inputs, tok.out = [str(mix_dir(cfg) / "kept")], str(root / "tokenizer")
    tokenizer = tok.base if cfg.meta_tokenizer else str(root / "tokenizer" / "tokenizer.model")
    cfg.tokenize.tokenizer, cfg.tokenize.out = tokenizer, str(root / "tokens")
    pre = cfg.pretrain
    pre.run_dir, pre.seed, pre.data.shards = str(root / "pretrain"), cfg.seed, str(root / "tokens")
    pre.data.tokenizer = tokenizer
    post = cfg.posttrain
    post.out, post.seed, post.bundle.out = str(root / "posttrain"), cfg.seed, str(root / "posttrain-data")
    post.base.model, post.base.tokenizer = str(root / "pretrain" / "base"), tokenizer
    ev = cfg.eval
    ev.out, ev.model.tokenizer = str(root / "eval"), tokenizer
    ev.contamination.shards, ev.contamination.tokenizer = str(root / "tokens"), tokenizer


def mix_dir(cfg: RecipeConfig) -> Path:
    """The last curation step's folder: kept/<bucket>/, anneal/, mix_weights.json."""
    return curated_folder(cfg.curate)
