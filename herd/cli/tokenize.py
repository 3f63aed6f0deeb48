"""`herd tokenize CONFIG [a.b=c ...]`: documents → token shards per source (see herd.data.tokenize)."""

from __future__ import annotations

import argparse


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("tokenize", help="documents → token shards (.bin + document index) with a manifest")
    p.add_argument("config", help="TOML config (configs/tokenize/*.toml)")
    p.add_argument("overrides", nargs="*", help="dotted overrides, e.g. out=runs/tok workers=4")
    p.set_defaults(func=tokenize_command)


def tokenize_command(args: argparse.Namespace) -> int:
    from herd.core.config import load_config
    from herd.data.tokenize import TokenizeConfig, tokenize

    m = tokenize(load_config(TokenizeConfig, args.config, args.overrides))
    print(f"{m.counts['kept']:,} documents, {sum(m.counts['tokens'].values()):,} tokens → {m.config['out']}")
    return 0
