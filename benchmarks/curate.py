"""Curation throughput, herd against datatrove on identical work: the same documents through the same filters.

Both chains read the bundled corpus with herd's reader (datatrove has no reader for a folder of HTML, WARC,
JSONL and text that loses nothing), drop unreadable records, turn HTML into text (herd's extractor; datatrove's
Trafilatura step on HTML documents only, text documents passed through), run datatrove's Gopher repetition,
Gopher quality, C4 and FineWeb quality filters with the same word tokenizer, then MinHash de-duplication
(datatrove's four steps, the same settings). herd runs them as its stages (kept/dropped shards, funnel,
manifests); datatrove as its FineWeb example does (JSONL between phases). The chains alternate, several
repeats; the ratio is herd docs/s over datatrove docs/s (> 1: herd faster), median and spread.

herd's extra steps (PII, language ID, URL and line dedup, duplicated n-grams, dirty words, KL, quality
scores) are timed separately from one full `run_curation`, not in the ratio. Also scores HTML extraction
(herd vs trafilatura) on python3.11-doc.

    python benchmarks/curate.py [--corpus runs/corpus] [--sources runs/corpus-sources] [--repeats 5]

Writes benchmarks/results/curate.json. Needs the bundled corpus (herd curate --build-corpus).
"""

from __future__ import annotations

import argparse
import gzip
import json
import os
import platform
import resource
import shutil
import statistics
import tempfile
import time
from datetime import UTC, datetime
from importlib.metadata import version
from pathlib import Path
from typing import Any

from machine import cpu_name

TASKS = 2  # the machine's cores; both chains split the input files the same way


def quality_filters(drop: Any = None) -> list[Any]:
    """The filters of datatrove's FineWeb example, with a word tokenizer that needs no NLTK download.

    `drop(step)` gives herd's exclusion writer for a step (herd keeps every dropped document with its reason).
    """
    from datatrove.pipeline.filters import (
        C4QualityFilter,
        FineWebQualityFilter,
        GopherQualityFilter,
        GopherRepetitionFilter,
    )

    from herd.data.dedup import MultilingualWordTokenizer

    tok = MultilingualWordTokenizer()
    w = drop or (lambda step: None)
    return [
        GopherRepetitionFilter(language=tok, exclusion_writer=w("gopher_repetition")),
        GopherQualityFilter(language=tok, exclusion_writer=w("gopher_quality")),
        C4QualityFilter(filter_no_terminal_punct=False, language=tok, exclusion_writer=w("c4")),
        FineWebQualityFilter(language=tok, exclusion_writer=w("fineweb_quality")),
    ]


# ---------------------------------------------------------------- herd


def run_herd(corpus: Path, out: Path) -> dict[str, Any]:
    """herd's stages on the common work: extract + the four filters, then MinHash."""
    from herd.core.config import from_dict
    from herd.core.stage import run_stage
    from herd.data.curate_stage import CurationStage, stage_tail
    from herd.data.executor import Phase
    from herd.data.extract import HtmlExtractor
    from herd.data.filters import ReadErrorFilter
    from herd.data.outputs import DroppedWriter
    from herd.data.pipeline import CurateConfig
    from herd.data.readers import Tally
    from herd.data.stages import Minhash

    cfg = from_dict(
        CurateConfig,
        {
            "inputs": [str(corpus)],
            "out": str(out),
            "executor": {"tasks": TASKS, "workers": TASKS, "start_method": "fork"},
        },
    )

    class BenchExtract(CurationStage):
        """herd's HTML extraction and the four datatrove filters, as one curation stage."""

        name = "extract"  # its config is CurationStage's StepConfig: reading and the task split

        def phases(self, output: Path, work: Path) -> list[Phase]:
            steps = [self.reader(), Tally("in"), HtmlExtractor("herd")]
            steps += [ReadErrorFilter(DroppedWriter(output, "read"))]
            steps += quality_filters(lambda s: DroppedWriter(output, s))
            return [Phase("extract", [*steps, *stage_tail(output, check=False)], self.config.tasks)]

    start, cpu0 = time.perf_counter(), _cpu_s()
    extract = run_stage(BenchExtract.from_config(cfg, corpus, out / "01_extract"))
    minhash = run_stage(Minhash.from_config(cfg, out / "01_extract", out / "02_minhash"))
    wall, cpu = time.perf_counter() - start, _cpu_s() - cpu0
    return {
        "docs_in": extract.counts["in"],
        "mb_in": extract.counts["in_bytes"] / 1e6,
        "into_filters": _stat(out / "_logs" / "extract" / "0-extract", "total", "Gopher Repetition"),
        "after_filters": extract.counts["kept"],
        "kept": minhash.counts["kept"],
        "wall_s": wall,
        "cpu_s": cpu,
        "stages_s": {"extract+filters": extract.wall_time_s, "minhash": minhash.wall_time_s},
    }


# ---------------------------------------------------------------- datatrove


def trafilatura_on_html(timeout: float = 1.0) -> Any:
    """datatrove's Trafilatura step (its timeout sandbox included) applied to HTML documents only."""
    from datatrove.pipeline.extractors import Trafilatura
    from datatrove.pipeline.extractors.base import ExtractorSandbox

    class TrafilaturaOnHtml(Trafilatura):
        def run(self, data: Any, rank: int = 0, world_size: int = 1) -> Any:
            with ExtractorSandbox(timeout=self.timeout, warmup_text="") as sandbox:
                for doc in data:
                    if doc.metadata.get("raw_format") != "html":
                        yield doc  # text and code: nothing to extract
                        continue
                    with self.track_time():
                        try:
                            doc.text = sandbox.process_document(doc.text, self.extract)
                        except TimeoutError:  # datatrove skips a page that takes longer than `timeout`
                            self.stat_update("timeout")
                            continue
                        except Exception:  # ... and one whose worker died or raised
                            self.stat_update("clean_error")
                            continue
                    if doc.text:
                        yield doc

    return TrafilaturaOnHtml(favour_precision=True, timeout=timeout)


def run_datatrove(corpus: Path, out: Path) -> dict[str, Any]:
    """datatrove's FineWeb example chain on the same documents: extract + filters → JSONL, then MinHash."""
    from datatrove.executor import LocalPipelineExecutor
    from datatrove.pipeline.dedup import (
        MinhashConfig,
        MinhashDedupBuckets,
        MinhashDedupCluster,
        MinhashDedupFilter,
        MinhashDedupSignature,
    )
    from datatrove.pipeline.filters import LambdaFilter
    from datatrove.pipeline.readers import JsonlReader
    from datatrove.pipeline.writers import JsonlWriter

    from herd.data.dedup import MultilingualWordTokenizer
    from herd.data.executor import quiet_datatrove
    from herd.data.readers import READ_ERROR, HerdReader

    quiet_datatrove()
    mc = MinhashConfig()  # herd's defaults are the same: 5-grams, 14 buckets × 8 hashes
    tok = MultilingualWordTokenizer()
    filtered, sigs, buckets, remove = (str(out / d) for d in ("filtered", "sigs", "buckets", "remove"))
    readable = LambdaFilter(lambda doc: READ_ERROR not in doc.metadata and bool(doc.text.strip()))
    first = [HerdReader(str(corpus)), readable, trafilatura_on_html(), *quality_filters(), JsonlWriter(filtered)]
    phases = [
        (first, TASKS),
        ([JsonlReader(filtered), MinhashDedupSignature(sigs, mc, language=tok)], TASKS),
        ([MinhashDedupBuckets(sigs, buckets, config=mc)], mc.num_buckets),
        ([MinhashDedupCluster(buckets, remove, config=mc)], 1),
        ([JsonlReader(filtered), MinhashDedupFilter(remove), JsonlWriter(str(out / "dedup"))], TASKS),
    ]
    start, cpu0 = time.perf_counter(), _cpu_s()
    for i, (steps, tasks) in enumerate(phases):
        LocalPipelineExecutor(
            steps, tasks=tasks, workers=min(TASKS, tasks), logging_dir=str(out / f"logs{i}"), start_method="fork"
        ).run()
    wall, cpu = time.perf_counter() - start, _cpu_s() - cpu0
    return {
        "extraction_timeouts": _stat(out / "logs0", "timeout"),
        "into_filters": _stat(out / "logs0", "total", "Gopher Repetition"),
        "after_filters": _jsonl_docs(out / "filtered"),
        "kept": _jsonl_docs(out / "dedup"),
        "wall_s": wall,
        "cpu_s": cpu,
    }


def _stat(logging_dir: Path, label: str, step: str = "") -> int:
    """One datatrove counter summed over the steps of a phase (those whose name contains `step`)."""
    from herd.data.executor import step_stats

    return int(sum(v.get(label, 0) for name, v in step_stats(logging_dir).items() if step in name))


def _jsonl_docs(folder: Path) -> int:
    return sum(sum(1 for _ in gzip.open(f, "rb")) for f in folder.rglob("*.jsonl.gz"))


def _cpu_s() -> float:
    """CPU seconds of this process and its finished workers (the executors join theirs)."""
    own, kids = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + kids.ru_utime + kids.ru_stime


# ---------------------------------------------------------------- herd's extra steps


def herd_extras(corpus: Path, resources: Path, out: Path, quality: bool) -> dict[str, float]:
    """Seconds per extra step from one full `run_curation` (the sample config): whole stages for the
    dedups, heuristics and quality; datatrove's per-step timers for PII and language ID in the extract stage."""
    from herd.core.config import from_dict
    from herd.data.pipeline import CurateConfig, run_curation

    dirty = resources / "ldnoobw"
    cfg = from_dict(
        CurateConfig,
        {
            "inputs": [str(corpus)],
            "out": str(out),
            "executor": {"tasks": TASKS, "workers": TASKS, "start_method": "fork"},
            "dedup": {"line_bucket_docs": 2000},
            "heuristics": {"dirty_words_dir": str(dirty) if dirty.is_dir() else "", "max_kl": 4.5},
            "quality": {
                "enabled": quality,
                "positive_sources": ["sotu", "moby-dick", "web"],
                "negative_sources": ["email", "chat", "fortunes"],
            },
            "mix": {"enabled": False},
        },
    )
    stages = {name: m.wall_time_s for name, m in run_curation(cfg)}
    steps: dict[str, float] = {}
    for phase in sorted((out / "_logs" / "extract").iterdir()):
        for name, label in (("pii mask", "pii"), ("lid.176", "language_id")):
            for f in sorted((phase / "stats").glob("*.json")):
                for s in json.loads(f.read_text()):
                    if s["name"].endswith(name) and isinstance(s.get("time_stats"), dict):
                        steps[label] = steps.get(label, 0.0) + s["time_stats"]["total"]
    extras = {k: round(v, 2) for k, v in steps.items()}  # CPU-side step time, summed over tasks
    for name in ("url_dedup", "line_dedup", "heuristics", "quality"):
        if name in stages:
            extras[name] = round(stages[name], 2)
    extras["full_run_s"] = round(sum(stages.values()), 2)
    return extras


def extraction_scores(sources: Path, pages: int) -> dict:
    from herd.data.bundle import _deb_members, _find
    from herd.data.extract_eval import default_engines, doc_pairs, score_engines

    tmp = Path(tempfile.mkdtemp())
    try:
        for name, body in _deb_members(_find(sources, "python3.11-doc_*_all.deb"), "usr/share/doc/python3.11/html/"):
            path = tmp / name
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_bytes(body)
        pairs = doc_pairs(tmp / "usr/share/doc/python3.11/html")
        pairs = pairs[:: max(1, len(pairs) // pages)][:pages]
        return score_engines(pairs, default_engines())
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


# ---------------------------------------------------------------- main


def main() -> int:
    p = argparse.ArgumentParser()
    p.add_argument("--corpus", default="runs/corpus")
    p.add_argument("--resources", default="", help="dirty-word lists (default: <corpus>-resources)")
    p.add_argument("--sources", default="runs/corpus-sources")
    p.add_argument("--repeats", type=int, default=5)
    p.add_argument("--pages", type=int, default=100, help="extraction-quality pages (0: skip)")
    p.add_argument("--no-extras", action="store_true", help="skip timing herd's extra steps")
    p.add_argument("--quality", action="store_true", help="include model-based quality scoring in the extras")
    p.add_argument("--keep", default="", help="keep herd's outputs of the last repeat here")
    p.add_argument("--out", default="benchmarks/results/curate.json")
    args = p.parse_args()
    corpus = Path(args.corpus).resolve()
    if not corpus.is_dir():
        raise FileNotFoundError(f"--corpus: no such folder {corpus} (herd curate --build-corpus)")
    if args.pages and not Path(args.sources).is_dir():
        raise FileNotFoundError(f"--sources: no such folder {args.sources} (or --pages 0 to skip extraction scores)")

    tmp = Path(tempfile.mkdtemp(prefix="herd-bench-"))
    runs: list[dict[str, Any]] = []
    load = [os.getloadavg()[0]]
    try:
        for r in range(args.repeats):
            order = ("herd", "datatrove") if r % 2 == 0 else ("datatrove", "herd")
            rep: dict[str, Any] = {}
            for chain in order:
                out = tmp / f"{chain}-{r}"
                rep[chain] = run_herd(corpus, out) if chain == "herd" else run_datatrove(corpus, out)
                if chain == "herd" and args.keep and r == args.repeats - 1:
                    shutil.rmtree(args.keep, ignore_errors=True)
                    shutil.copytree(out, args.keep)
                shutil.rmtree(out, ignore_errors=True)
                load.append(os.getloadavg()[0])
            rep["ratio"] = rep["datatrove"]["wall_s"] / rep["herd"]["wall_s"]
            rep["ratio_cpu"] = rep["datatrove"]["cpu_s"] / rep["herd"]["cpu_s"]
            runs.append(rep)
            print(
                f"repeat {r + 1}/{args.repeats} ({' then '.join(order)}): herd {rep['herd']['wall_s']:.1f} s, "
                f"datatrove {rep['datatrove']['wall_s']:.1f} s, ratio {rep['ratio']:.3f} "
                f"(CPU {rep['ratio_cpu']:.3f}), load {load[-1]:.1f}",
                flush=True,
            )
        resources = Path(args.resources) if args.resources else corpus.with_name(corpus.name + "-resources")
        extras = {} if args.no_extras else herd_extras(corpus, resources, tmp / "extras", args.quality)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)

    first = runs[0]["herd"]
    chains: dict[str, Any] = {}
    for chain in ("herd", "datatrove"):
        walls = [r[chain]["wall_s"] for r in runs]
        wall = statistics.median(walls)
        chains[chain] = {
            "docs_in": first["docs_in"],
            "into_filters": runs[-1][chain]["into_filters"],
            "after_filters": runs[-1][chain]["after_filters"],
            "kept": runs[-1][chain]["kept"],
            "wall_s_median": round(wall, 2),
            "wall_s": [round(w, 2) for w in walls],
            "cpu_s_median": round(statistics.median(r[chain]["cpu_s"] for r in runs), 2),
            "docs_per_s": round(first["docs_in"] / wall, 1),
            "mb_per_s": round(first["mb_in"] / wall, 3),
        }
    chains["herd"]["stages_s"] = runs[-1]["herd"]["stages_s"]
    chains["datatrove"]["extraction_timeouts"] = [r["datatrove"]["extraction_timeouts"] for r in runs]
    ratios = [r["ratio"] for r in runs]
    cpu_ratios = [r["ratio_cpu"] for r in runs]
    result = {
        "machine": platform.platform(),
        "processor": cpu_name(),
        "cpus": os.cpu_count(),
        "load_avg_1m": {"min": min(load), "max": max(load), "samples": [round(x, 2) for x in load]},
        "python": platform.python_version(),
        "versions": {k: version(k) for k in ("datatrove", "trafilatura", "lxml", "zstandard", "orjson")},
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
        "corpus_mb": round(first["mb_in"], 3),
        "work": "read → drop unreadable → HTML to text (HTML only) → Gopher repetition, Gopher quality, C4, "
        "FineWeb quality → MinHash (5-grams, 14×8)",
        "repeats": args.repeats,
        "chains": chains,
        "ratio_docs_per_s_herd_over_datatrove": {
            "median": round(statistics.median(ratios), 3),
            "min": round(min(ratios), 3),
            "max": round(max(ratios), 3),
            "all": [round(x, 3) for x in ratios],
        },
        "ratio_cpu_s_datatrove_over_herd": {
            "median": round(statistics.median(cpu_ratios), 3),
            "min": round(min(cpu_ratios), 3),
            "max": round(max(cpu_ratios), 3),
        },
        "herd_extra_steps_s": extras,
    }
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(result, indent=2) + "\n")  # the timings are safe before scoring
    if args.pages:
        result["extraction"] = extraction_scores(Path(args.sources), args.pages)

    for chain, c in chains.items():
        print(
            f"{chain:9s} docs in {c['docs_in']}, into filters {c['into_filters']}, after filters "
            f"{c['after_filters']}, kept {c['kept']}: "
            f"{c['docs_per_s']} docs/s, {c['mb_per_s']} MB/s (median {c['wall_s_median']} s of {c['wall_s']})"
        )
    rr = result["ratio_docs_per_s_herd_over_datatrove"]
    print(f"herd/datatrove docs/s: median {rr['median']}× (min {rr['min']}, max {rr['max']}, {args.repeats} repeats)")
    print(f"CPU-time ratio (datatrove/herd): median {result['ratio_cpu_s_datatrove_over_herd']['median']}×")
    print(f"load average during the run: {min(load):.1f}–{max(load):.1f} on {os.cpu_count()} CPUs")
    for name, s in extras.items():
        print(f"herd extra {name:12s} {s} s")
    for name, r in result.get("extraction", {}).items():
        print(
            f"extraction {name:12s} P={r['precision']:.3f} R={r['recall']:.3f} F1={r['f1']:.3f} "
            f"{r['pages_per_s']} pages/s"
        )
    print(f"{result['machine']}, {result['processor']}, Python {result['python']}, {result['versions']}")
    Path(args.out).write_text(json.dumps(result, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
