"""`herd tokenize CONFIG [a.b=c ...]`: documents → token shards per source (see herd.data.tokenize)."""

from __future__ import annotations

import argparse

from herd.cli.common import add_config_args, load_args_config


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("tokenize", help="documents → token shards (.bin + document index) with a manifest")
    add_config_args(p, "configs/tokenize/*.toml")
    p.set_defaults(func=tokenize_command)


def tokenize_command(args: argparse.Namespace) -> int:
    from herd.core.stage import run_stage
    from herd.data.tokenize import TokenizeConfig, TokenizeStage

    m = run_stage(TokenizeStage(load_args_config(TokenizeConfig, args)))
    print(f"{m.counts['kept']:,} documents, {sum(m.counts['tokens'].values()):,} tokens → {m.config['out']}")
    return 0
