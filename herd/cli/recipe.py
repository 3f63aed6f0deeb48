"""`herd recipe CONFIG [a.b=c ...] [--stage NAME] [--dry-run]`: the whole Llama 3 recipe, then a report."""

from __future__ import annotations

import argparse

from herd.cli.common import add_config_args


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("recipe", help="curate → tokenizer → pretrain → posttrain → eval → report, resumable")
    add_config_args(p, "configs/recipe/*.toml")
    p.add_argument("--stage", default=None, help="run only this stage on the outputs already in run_dir")
    p.add_argument("--dry-run", action="store_true", help="check every stage's config and print the plan")
    p.set_defaults(func=recipe_command)


def recipe_command(args: argparse.Namespace) -> int:
    from rich.console import Console

    from herd.recipe.config import load_recipe
    from herd.recipe.run import dry_run, run_recipe

    cfg = load_recipe(args.config, args.overrides)
    if args.dry_run:
        print(dry_run(cfg))  # a fixed-width table: plain print, not wrapped to the terminal
        return 0
    index = run_recipe(cfg, args.stage)
    Console().print(f"report: {index}")
    return 0
