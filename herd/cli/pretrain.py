"""`herd pretrain CONFIG [a.b=c ...]`: train (or resume) a Llama 3 model on token shards."""

from __future__ import annotations

import argparse


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("pretrain", help="pretrain with the paper's schedules; resumes from the last checkpoint")
    p.add_argument("config", help="TOML config (configs/pretrain/*.toml)")
    p.add_argument("overrides", nargs="*", help="dotted overrides, e.g. optim.lr=1e-3 schedule.max_steps=50")
    p.set_defaults(func=pretrain_command)


def pretrain_command(args: argparse.Namespace) -> int:
    import json

    from herd.core.config import load_config
    from herd.train.config import PretrainConfig
    from herd.train.loop import pretrain

    summary = pretrain(load_config(PretrainConfig, args.config, args.overrides))
    print(json.dumps(summary, indent=2))
    return 0
