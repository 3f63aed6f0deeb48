"""`herd posttrain CONFIG [a.b=c ...]`: rounds of RM → rejection sampling → SFT → DPO, resumable per stage."""

from __future__ import annotations

import argparse


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("posttrain", help="post-train a model: N rounds of RM → RS → SFT → DPO")
    p.add_argument("config", help="TOML under configs/posttrain/")
    p.add_argument("overrides", nargs="*", help="dotted overrides, e.g. rounds=1 dpo.beta=0.2")
    p.set_defaults(func=posttrain_command)


def posttrain_command(args: argparse.Namespace) -> int:
    import json

    from herd.core.config import load_config
    from herd.posttrain.rounds import PosttrainConfig, run_posttrain

    cfg = load_config(PosttrainConfig, args.config, args.overrides)
    summary = run_posttrain(cfg)
    print(json.dumps(summary, indent=2))
    return 0
