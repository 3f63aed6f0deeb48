"""Curation throughput on the bundled corpus: docs/s and MB/s per herd stage and end to end, against
datatrove's own FineWeb-style example chain (trafilatura → Gopher/C4/FineWeb filters → MinHash) run on
the same input in the same process. Also scores HTML extraction (herd vs trafilatura) on python3.11-doc.

    python benchmarks/curate.py [--corpus runs/corpus] [--sources runs/corpus-sources]

Writes benchmarks/results/curate.json. Needs the bundled corpus (herd curate --build-corpus).
"""

from __future__ import annotations

import argparse
import json
import platform
import shutil
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path


def run_herd(corpus: Path, out: Path) -> dict:
    from herd.core.config import from_dict
    from herd.data.pipeline import CurateConfig, run_curation

    cfg = from_dict(
        CurateConfig,
        {
            "inputs": [str(corpus)],
            "out": str(out),
            "executor": {"tasks": 2, "workers": 2, "start_method": "fork"},
            "dedup": {"line_bucket_docs": 2000},
            "heuristics": {"max_kl": 4.5},
            "quality": {"enabled": False},  # model scoring is not part of datatrove's chain
            "mix": {"enabled": False},
        },
    )
    start = time.perf_counter()
    results = run_curation(cfg)
    wall = time.perf_counter() - start
    keys = ("in", "kept", "docs_per_s", "mb_per_s")
    stages = {name: {k: m.counts[k] for k in keys} | {"wall_s": m.wall_time_s} for name, m in results}
    first = results[0][1].counts
    return {"stages": stages, "wall_s": round(wall, 2), "docs_in": first["in"], "mb_in": first["in_bytes"] / 1e6,
            "kept": results[-1][1].counts["kept"]}  # fmt: skip


def run_datatrove(corpus: Path, out: Path) -> dict:
    """datatrove's FineWeb example chain, adapted to read the same files (its WarcReader for the WARCs,
    herd's reader for the rest, since datatrove has no plain-directory HTML/text reader that loses nothing)."""
    from datatrove.executor import LocalPipelineExecutor
    from datatrove.pipeline.dedup import (
        MinhashConfig,
        MinhashDedupBuckets,
        MinhashDedupCluster,
        MinhashDedupFilter,
        MinhashDedupSignature,
    )
    from datatrove.pipeline.extractors import Trafilatura
    from datatrove.pipeline.filters import C4QualityFilter, FineWebQualityFilter, GopherRepetitionFilter
    from datatrove.pipeline.writers import JsonlWriter

    from herd.data.dedup import MultilingualWordTokenizer
    from herd.data.readers import HerdReader

    class RawHtml(HerdReader):  # datatrove's Trafilatura step expects raw HTML in doc.text, as herd's reader gives
        pass

    tok = MultilingualWordTokenizer()
    mc = MinhashConfig()
    start = time.perf_counter()
    steps = [
        RawHtml(str(corpus)),
        Trafilatura(favour_precision=True, timeout=1.0),
        GopherRepetitionFilter(language=tok),
        C4QualityFilter(filter_no_terminal_punct=False, language=tok),
        FineWebQualityFilter(language=tok),
        JsonlWriter(str(out / "filtered")),
    ]
    LocalPipelineExecutor(steps, tasks=2, workers=2, logging_dir=str(out / "logs1"), start_method="fork").run()
    phases = [
        ([JsonlReaderSafe(str(out / "filtered")), MinhashDedupSignature(str(out / "sigs"), mc, language=tok)], 2),
        ([MinhashDedupBuckets(str(out / "sigs"), str(out / "buckets"), config=mc)], mc.num_buckets),
        ([MinhashDedupCluster(str(out / "buckets"), str(out / "remove"), config=mc)], 1),
        (
            [
                JsonlReaderSafe(str(out / "filtered")),
                MinhashDedupFilter(str(out / "remove")),
                JsonlWriter(str(out / "dedup")),
            ],
            2,
        ),
    ]
    for i, (p, t) in enumerate(phases):
        LocalPipelineExecutor(
            p, tasks=t, workers=min(2, t), logging_dir=str(out / f"logs{i + 2}"), start_method="fork"
        ).run()
    return {"wall_s": round(time.perf_counter() - start, 2)}


def JsonlReaderSafe(folder: str):
    from datatrove.pipeline.readers import JsonlReader

    return JsonlReader(folder)


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


def main() -> int:
    p = argparse.ArgumentParser()
    p.add_argument("--corpus", default="runs/corpus")
    p.add_argument("--sources", default="runs/corpus-sources")
    p.add_argument("--pages", type=int, default=100)
    args = p.parse_args()
    import datatrove

    out = Path(tempfile.mkdtemp(prefix="herd-bench-"))
    try:
        herd = run_herd(Path(args.corpus), out / "herd")
        dt = run_datatrove(Path(args.corpus), out / "datatrove")
    finally:
        shutil.rmtree(out, ignore_errors=True)
    result = {
        "machine": platform.platform(),
        "processor": platform.processor(),
        "python": platform.python_version(),
        "datatrove": datatrove.__version__ if hasattr(datatrove, "__version__") else "",
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
        "herd": herd,
        "datatrove_fineweb_chain": dt,
        "ratio_wall_herd_over_datatrove": round(herd["wall_s"] / max(dt["wall_s"], 1e-9), 2),
        "extraction": extraction_scores(Path(args.sources), args.pages),
    }
    for name, s in herd["stages"].items():
        print(f"herd {name:12s} {s['docs_per_s']:>8.1f} docs/s {s['mb_per_s']:>7.2f} MB/s  ({s['wall_s']} s)")
    print(f"herd end to end: {herd['docs_in'] / herd['wall_s']:.1f} docs/s, {herd['mb_in'] / herd['wall_s']:.2f} MB/s, "
          f"{herd['wall_s']} s")  # fmt: skip
    print(
        f"datatrove FineWeb-style chain: {dt['wall_s']} s; "
        f"herd/datatrove wall-time ratio {result['ratio_wall_herd_over_datatrove']}"
    )
    for name, r in result["extraction"].items():
        print(
            f"extraction {name:12s} P={r['precision']:.3f} R={r['recall']:.3f} F1={r['f1']:.3f} "
            f"{r['pages_per_s']} pages/s"
        )
    Path("benchmarks/results").mkdir(parents=True, exist_ok=True)
    Path("benchmarks/results/curate.json").write_text(json.dumps(result, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
