"""`herd eval CONFIG [a.b=c ...]`: benchmarks, robustness and contamination → JSON + Markdown/HTML tables."""

from __future__ import annotations

import argparse

from herd.cli.common import add_config_args, load_args_config


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("eval", help="evaluate a model: benchmarks (± 95%% CI), robustness, contamination")
    add_config_args(p, "configs/eval/*.toml")
    p.set_defaults(func=eval_command)


def eval_command(args: argparse.Namespace) -> int:
    from pathlib import Path

    from herd.eval.config import EvalConfig
    from herd.eval.run import run_eval

    cfg = load_args_config(EvalConfig, args)
    run_eval(cfg)
    print((Path(cfg.out) / "results.md").read_text(encoding="utf-8"))
    print(f"wrote {cfg.out}/results.json, results.md, results.html")
    return 0
