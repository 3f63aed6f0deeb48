"""`herd eval CONFIG [a.b=c ...]`: benchmarks, robustness and contamination → JSON + Markdown/HTML tables."""

from __future__ import annotations

import argparse


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("eval", help="evaluate a model: benchmarks (± 95%% CI), robustness, contamination")
    p.add_argument("config", help="a TOML file under configs/eval/")
    p.add_argument("overrides", nargs="*", help="dotted overrides, e.g. model.path=smollm2 robustness.limit=50")
    p.set_defaults(func=eval_command)


def eval_command(args: argparse.Namespace) -> int:
    from pathlib import Path

    from herd.core.config import load_config
    from herd.eval.config import EvalConfig
    from herd.eval.run import run_eval

    cfg = load_config(EvalConfig, args.config, args.overrides)
    run_eval(cfg)
    print((Path(cfg.out) / "results.md").read_text(encoding="utf-8"))
    print(f"wrote {cfg.out}/results.json, results.md, results.html")
    return 0
