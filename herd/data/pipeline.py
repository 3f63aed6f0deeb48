"""The curation pipeline [P §3.1]: the enabled stages in order, each run by `herd.core.stage.run_stage`.

Each stage reads the previous stage's kept shards and writes into `out/<NN>_<stage>/`:
`kept/<partition>/*.jsonl.zst`, `dropped/<step>/*.jsonl.zst` (one reason per document) and
`MANIFEST.json` with the funnel (documents in = kept + dropped by reason; bytes too), the same per input
file (`files`; every record carries its `source_file` and `source_line`), and `skipped_files`: each file
of the stage's input that was not read, with its reason (hidden, bookkeeping, a FIFO, a broken symlink...).
The input is one folder or one file; one with nothing to read fails before any stage runs. Stages:

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
A stage reruns when its code version, its input or a config section it reads changes (its `config`).
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from herd.core.manifest import Manifest
from herd.core.stage import StageFailed, run_stage
from herd.data.config import (
    CurateConfig,
    DedupConfig,
    ExtractConfig,
    HeuristicsConfig,
    MixConfig,
    QualityConfig,
    ReadConfig,
)

if TYPE_CHECKING:
    from herd.data.curate_stage import CurationStage
    from herd.data.quality import DocumentJudge

__all__ = [
    "CurateConfig",
    "DedupConfig",
    "ExtractConfig",
    "HeuristicsConfig",
    "MixConfig",
    "QualityConfig",
    "ReadConfig",
    "curated_folder",
    "curation_stages",
    "run_curation",
]


def curation_stages(cfg: CurateConfig, judge: DocumentJudge | None = None) -> list[CurationStage]:
    """The enabled stages in order, each reading the folder the one before it writes."""
    # The stages import datatrove (the `curate` extra); the config above stays importable without it.
    from herd.data.mix import Mix
    from herd.data.quality import Quality
    from herd.data.stages import Extract, Heuristics, LineDedup, Minhash, UrlDedup

    kinds: list[type[CurationStage]] = [Extract]
    kinds += [UrlDedup] if cfg.dedup.url else []
    kinds += [Minhash] if cfg.dedup.minhash else []
    kinds += [LineDedup] if cfg.dedup.line else []
    kinds += [Heuristics]
    kinds += [Quality] if cfg.quality.enabled else []
    kinds += [Mix] if cfg.mix.enabled else []
    stages: list[CurationStage] = []
    source = Path(cfg.inputs[0]) if cfg.inputs else Path()
    for i, kind in enumerate(kinds, 1):
        out_dir = Path(cfg.out) / f"{i:02d}_{kind.name}"
        extra = {"judge": judge} if kind is Quality else {}
        stages.append(kind.from_config(cfg, source, out_dir, **extra))
        source = out_dir
    return stages


def curated_folder(cfg: CurateConfig) -> Path:
    """The last stage's folder (07_mix when mixing: kept/<bucket>/, anneal/, mix_weights.json)."""
    return curation_stages(cfg)[-1].out


def check_input(cfg: CurateConfig) -> None:
    """Fail in one line, naming the input, before any stage runs on nothing (or hangs on a FIFO)."""
    from herd.data.curate_stage import input_inventory

    path = Path(cfg.inputs[0])
    if not path.exists():
        raise FileNotFoundError(f"inputs: no such file or folder {path}")
    if not path.is_dir() and not path.is_file():
        raise StageFailed(f"inputs: {path} is not a regular file or a folder")
    files, skipped = input_inventory(cfg.read, path)
    if not files:
        why = ", ".join(f"{s['path']} ({s['reason']})" for s in skipped[:5]) + (", ..." if len(skipped) > 5 else "")
        raise StageFailed(f"inputs: {path} holds no file to read" + (f"; skipped: {why}" if skipped else ""))


def run_curation(cfg: CurateConfig, judge: DocumentJudge | None = None) -> list[tuple[str, Manifest]]:
    """All stages in order: (stage name, manifest) each. `judge` labels a sample for the model-based scores
    (herd.judge builds one from `quality.judge`); without one the quality stage has no judged heads."""
    if len(cfg.inputs) != 1:
        raise ValueError("inputs: give one folder or file (put several sources under one parent folder)")
    check_input(cfg)
    return [(stage.name, run_stage(stage)) for stage in curation_stages(cfg, judge)]
