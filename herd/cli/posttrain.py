"""`herd posttrain CONFIG [a.b=c ...]`: rounds of RM → rejection sampling → SFT → DPO, resumable per stage."""

from __future__ import annotations

import argparse

from herd.cli.common import add_config_args, load_args_config


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("posttrain", help="post-train a model: N rounds of RM → RS → SFT → DPO")
    add_config_args(p, "configs/posttrain/*.toml")
    p.set_defaults(func=posttrain_command)


def posttrain_command(args: argparse.Namespace) -> int:
    import json

    from herd.posttrain.rounds import PosttrainConfig, run_posttrain

    cfg = load_args_config(PosttrainConfig, args)
    summary = run_posttrain(cfg)
    print(json.dumps(summary, indent=2))
    return 0
