"""`herd experiment CONFIG [a.b=c ...]`: arms × seeds of a herd command, with means, CIs and paired tests."""

from __future__ import annotations

import argparse

from herd.cli.common import add_config_args, load_args_config


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("experiment", help="a grid of runs (arms × seeds) and its analysis with 95%% CIs")
    add_config_args(p, "configs/experiments/*.toml")
    p.add_argument("--plan", action="store_true", help="print the runs' commands and exit")
    p.set_defaults(func=experiment_command)


def experiment_command(args: argparse.Namespace) -> int:
    import shlex

    from herd.core.config import read_toml
    from herd.experiment import ExperimentConfig, experiment, run_experiment

    if args.config != "/dev/null" and "mix_selection" in read_toml(args.config):  # [P §3.1.2]
        return mix_selection_command(args)
    cfg = load_args_config(ExperimentConfig, args)
    if args.plan:
        for r in run_experiment(cfg, only_plan=True):
            print(f"{r['arm']} seed {r['seed']}: {shlex.join(r['command'])}")
        return 0
    result = experiment(cfg)
    for a in result["arms"]:
        print(f"{a['arm']:16s} {result['metric']} {a['mean']:.4g} ± {a['ci95']:.2g} (n={a['n']})")
    for c in result["comparisons"]:
        print(
            f"{c['arm']} − {c['baseline']}: {c['diff']:+.4g} ± {c['ci95']:.2g}, p={c['p_value']:.3g} → {c['verdict']}"
        )
    print(f"wrote {cfg.out}/results.json, index.html, report.md")
    return 0


def mix_selection_command(args: argparse.Namespace) -> int:
    from herd.experiment.mix_selection import MixSelectionConfig, mix_selection, report_markdown, small_sizes

    cfg = load_args_config(MixSelectionConfig, args)
    if args.plan:
        m = cfg.mix_selection
        print(f"small runs: mixes {list(cfg.mixes)} × sizes {small_sizes(cfg)} × tokens {m.budgets} × seeds {m.seeds}")
        print(f"held-out runs: the chosen mix and {m.heuristic!r} at size {m.target!r} on {m.target_tokens} tokens")
        return 0
    print(report_markdown(mix_selection(cfg)))
    return 0
