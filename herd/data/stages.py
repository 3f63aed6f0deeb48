"""Curation stages 01-05 [P §3.1.1]: extraction and cleaning, the three de-duplications, heuristic filters.

Each is a CurationStage: `config` declares the sections it reads, `phases` the datatrove pipelines it runs.
Stages 06 (model-based quality) and 07 (mix) live beside their models, in herd.data.quality and herd.data.mix.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from datatrove.pipeline.dedup import (
    MinhashConfig,
    MinhashDedupBuckets,
    MinhashDedupCluster,
    MinhashDedupFilter,
    MinhashDedupSignature,
)

from herd.data.config import DedupConfig, ExtractConfig, HeuristicsConfig
from herd.data.curate_stage import CurationStage, StepConfig, stage_tail
from herd.data.dedup import (
    LineDedupFilter,
    LineFindFrequent,
    LineSignature,
    MultilingualWordTokenizer,
    UrlDedupFilter,
    UrlFindDuplicates,
    UrlSignature,
)
from herd.data.executor import Phase
from herd.data.extract import HtmlExtractor
from herd.data.filters import (
    DirtyWordsFilter,
    DupNgramFilter,
    LanguageSelectFilter,
    ReadErrorFilter,
    TokenKLFilter,
    TokenStats,
    UrlBlocklistFilter,
    load_blocklist,
    load_dirty_words,
)
from herd.data.langid import LanguageTagger
from herd.data.outputs import DroppedWriter
from herd.data.pii import PIIMasker
from herd.data.readers import Tally


@dataclass
class ExtractSettings(StepConfig):
    extract: ExtractConfig


@dataclass
class DedupSettings(StepConfig):
    dedup: DedupConfig


@dataclass
class HeuristicsSettings(StepConfig):
    heuristics: HeuristicsConfig


@dataclass
class Extract(CurationStage):
    """01: raw HTML/WARC/JSONL/Parquet/text → text, PII masking, URL blocklist, language ID."""

    name = "extract"
    config: ExtractSettings

    def phases(self, output: Path, work: Path) -> list[Phase]:
        e = self.config.extract
        steps: list[Any] = [self.reader(), Tally("in"), HtmlExtractor(e.engine)]
        steps.append(ReadErrorFilter(DroppedWriter(output, "read")))
        if e.pii:
            steps.append(PIIMasker())
        steps.append(LanguageTagger(e.min_language_score))
        if e.url_blocklist:
            steps.append(UrlBlocklistFilter(load_blocklist(e.url_blocklist), DroppedWriter(output, "blocklist")))
        if e.languages:
            steps.append(LanguageSelectFilter(e.languages, DroppedWriter(output, "language")))
        return [Phase("extract", [*steps, *stage_tail(output, check=False)], self.config.tasks)]


@dataclass
class UrlDedup(CurationStage):
    """02: URL-level de-duplication, the most recent version kept [P §3.1.1]."""

    name = "url_dedup"
    config: StepConfig

    def phases(self, output: Path, work: Path) -> list[Phase]:
        t = self.config.tasks
        drop = UrlDedupFilter(work, DroppedWriter(output, "url_dedup"))
        return [
            Phase("signature", [self.reader(), UrlSignature(work)], t),
            Phase("find", [UrlFindDuplicates(work, t)], 1),
            Phase("filter", [self.reader(), Tally("in"), drop, *stage_tail(output)], t),
        ]


@dataclass
class Minhash(CurationStage):
    """03: global document-level MinHash de-duplication (datatrove) [P §3.1.1]."""

    name = "minhash"
    config: DedupSettings

    def phases(self, output: Path, work: Path) -> list[Phase]:
        d, t = self.config.dedup, self.config.tasks
        mc = MinhashConfig(n_grams=d.n_grams, num_buckets=d.num_buckets, hashes_per_bucket=d.hashes_per_bucket)
        sigs, buckets, remove = str(work / "sigs"), str(work / "buckets"), str(work / "remove")
        drop = DroppedWriter(output, "minhash", default_reason="minhash_duplicate")
        return [
            Phase(
                "signature", [self.reader(), MinhashDedupSignature(sigs, mc, language=MultilingualWordTokenizer())], t
            ),
            Phase("buckets", [MinhashDedupBuckets(sigs, buckets, config=mc)], d.num_buckets),
            Phase("cluster", [MinhashDedupCluster(buckets, remove, config=mc)], 1),
            Phase(
                "filter",
                [self.reader(), Tally("in"), MinhashDedupFilter(remove, exclusion_writer=drop), *stage_tail(output)],
                t,
            ),
        ]


@dataclass
class LineDedup(CurationStage):
    """04: ccNet-style line de-duplication: lines seen more than `line_max_count` times per bucket of
    `line_bucket_docs` documents are removed [P §3.1.1]."""

    name = "line_dedup"
    config: DedupSettings

    def phases(self, output: Path, work: Path) -> list[Phase]:
        d, t = self.config.dedup, self.config.tasks
        filt = LineDedupFilter(work, d.line_bucket_docs, DroppedWriter(output, "line_dedup"))
        return [
            Phase("signature", [self.reader(), LineSignature(work)], t),
            Phase("find", [LineFindFrequent(work, t, d.line_max_count, d.line_bucket_docs)], 1),
            Phase("filter", [self.reader(), Tally("in"), filt, *stage_tail(output)], t),
        ]


@dataclass
class Heuristics(CurationStage):
    """05: duplicated n-gram coverage, dirty words, token-distribution KL divergence [P §3.1.1]."""

    name = "heuristics"
    config: HeuristicsSettings

    def phases(self, output: Path, work: Path) -> list[Phase]:
        h, t = self.config.heuristics, self.config.tasks
        phases = []
        steps: list[Any] = [self.reader(), Tally("in")]
        if h.dup_ngram:
            steps.append(DupNgramFilter(exclusion_writer=DroppedWriter(output, "dup_ngram")))
        if h.dirty_words_dir:
            lists = load_dirty_words(h.dirty_words_dir)
            if not lists:
                raise FileNotFoundError(f"heuristics.dirty_words_dir: no <lang>.json lists in {h.dirty_words_dir}")
            drop = DroppedWriter(output, "dirty_words")
            steps.append(DirtyWordsFilter(lists, h.dirty_max_ratio, h.dirty_min_hits, drop))
        if h.kl:
            phases.append(Phase("token_stats", [self.reader(), TokenStats(work / "kl", h.tokenizer)], t))
            drop = DroppedWriter(output, "kl")
            steps.append(TokenKLFilter(work / "kl", h.tokenizer, h.max_kl, h.kl_min_tokens, exclusion_writer=drop))
        return [*phases, Phase("filter", [*steps, *stage_tail(output)], t)]
