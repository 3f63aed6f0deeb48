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

    from herd.core.stage import run_stage
    from herd.train.config import PretrainConfig
    from herd.train.stage import PretrainStage

    # fresh=False: a run folder left by another config is resumed, not cleared (its checkpoints are checked).
    manifest = run_stage(PretrainStage(load_args_config(PretrainConfig, args)), fresh=False)
    print(json.dumps(manifest.counts, indent=2))
    return 0
