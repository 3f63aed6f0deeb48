"""`herd curate CONFIG [key=value ...]`: the pretraining-data pipeline [P §3.1]; `--build-corpus` assembles
the bundled corpus from downloaded registry packages."""

from __future__ import annotations

import argparse
import json

DEFAULT_SOURCES = "runs/corpus-sources"
DEFAULT_CORPUS = "runs/corpus"


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser("curate", help="curate raw pages/documents into mixed, scored shards")
    p.add_argument("config", nargs="?", help="TOML config (herd.data.config.CurateConfig)")
    p.add_argument("overrides", nargs="*", help="key=value, e.g. executor.tasks=4 quality.judge=none")
    p.add_argument("--build-corpus", action="store_true", help="assemble the bundled corpus and exit")
    p.add_argument("--sources", default=DEFAULT_SOURCES, help="downloaded packages (scripts/fetch_corpus.sh)")
    p.add_argument("--corpus", default=DEFAULT_CORPUS, help="where --build-corpus writes the corpus")
    p.set_defaults(func=curate_command)


def curate_command(args: argparse.Namespace) -> int:
    if args.build_corpus:
        from herd.data.bundle import build_corpus

        print(json.dumps(build_corpus(args.sources, args.corpus)))
        return 0
    if not args.config:
        raise ValueError("give a config (e.g. configs/curate/sample.toml) or --build-corpus")
    from herd.core.config import load_config
    from herd.data.config import CurateConfig
    from herd.data.funnel import funnel_table
    from herd.judge import curate

    cfg = load_config(CurateConfig, args.config, args.overrides)
    print(funnel_table(curate(cfg, sources=args.sources, corpus=DEFAULT_CORPUS)))
    return 0
