"""`herd pretrain CONFIG [a.b=c ...]`: train (or resume) a Llama 3 model on token shards."""

from __future__ import annotations

import argparse

from herd.cli.common import add_config_args, load_args_config


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("pretrain", help="pretrain with the paper's schedules; resumes from the last checkpoint")
    add_config_args(p, "configs/pretrain/*.toml")
    p.set_defaults(func=pretrain_command)


def pretrain_command(args: argparse.Namespace) -> int:
    import json

    from herd.train.config import PretrainConfig
    from herd.train.loop import pretrain

    summary = pretrain(load_args_config(PretrainConfig, args))
    print(json.dumps(summary, indent=2))
    return 0
