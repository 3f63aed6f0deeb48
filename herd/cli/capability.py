"""`herd capability NAME [CONFIG] [a.b=c ...]`: one post-training capability pipeline before/after [P §4.3]."""

from __future__ import annotations

import argparse


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "capability", help="evaluate a model, build a capability's data with it, fine-tune, evaluate again"
    )
    p.add_argument("name", help="code, math, tools, multilingual, long_context, factuality, steerability")
    p.add_argument("config", nargs="?", default=None, help="TOML MeasureConfig (optional; defaults otherwise)")
    p.add_argument("overrides", nargs="*", help="dotted overrides, e.g. model=smollm2 options.problems=40")
    p.set_defaults(func=capability_command)


def capability_command(args: argparse.Namespace) -> int:
    from herd.core.config import load_config
    from herd.posttrain.capabilities.measure import MeasureConfig, measure_capability

    config, overrides = args.config, list(args.overrides)
    if config is not None and "=" in config:  # no config file: the first positional is an override
        config, overrides = None, [config, *overrides]
    cfg = load_config(MeasureConfig, config, overrides)
    r = measure_capability(args.name, cfg)
    b, a = r["before"], r["after"]
    print(f"{args.name}: {b['metric']} {100 * b['value']:.1f} ± {100 * b['ci95']:.1f} → "
          f"{100 * a['value']:.1f} ± {100 * a['ci95']:.1f} (n={a['n']}); data {r['data']}")  # fmt: skip
    print(f"wrote {cfg.out}/{args.name}/result.json")
    return 0
