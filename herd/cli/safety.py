"""`herd safety CONFIG [a.b=c ...]`: violation and false refusal rates of a model, with and without the guard."""

from __future__ import annotations

import argparse

from herd.cli.common import add_config_args, load_args_config


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("safety", help="VR / FRR (± 95%% CI) of a model alone and behind the guard + Code Shield")
    add_config_args(p, "configs/safety/*.toml")
    p.set_defaults(func=safety_command)


def safety_command(args: argparse.Namespace) -> int:
    from herd.safety.stage import SafetyConfig, run_safety

    cfg = load_args_config(SafetyConfig, args)
    m = run_safety(cfg)
    for system in ("model", "guarded"):
        vr, frr = m[system]["vr"]["all"], m[system]["frr"]["all"]
        print(f"{system:8s} VR {100 * vr['rate']:5.1f} ± {100 * vr['ci95']:4.1f} (n={vr['n']})   "
              f"FRR {100 * frr['rate']:5.1f} ± {100 * frr['ci95']:4.1f} (n={frr['n']})")  # fmt: skip
    print(f"blocked by the guard: {m['blocked']}; wrote {cfg.out}/metrics.json, responses.jsonl")
    return 0
