"""`herd safety CONFIG [a.b=c ...]`: violation and false refusal rates of a model, with and without the guard."""

from __future__ import annotations

import argparse

from herd.cli.common import add_config_args, load_args_config


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "safety",
        help="VR / FRR (± 95%% CI) of a model alone and behind the guard + Code Shield; "
        "`sweep CONFIG`: the VR–FRR trade-off by share of safety data in SFT; "
        "`train-guard CONFIG`: a Llama Guard 3-style LM guard",
    )
    add_config_args(p, "configs/safety/*.toml, or `sweep configs/safety/sweep.toml`")
    p.set_defaults(func=safety_command)


def safety_command(args: argparse.Namespace) -> int:
    if args.config in SUBCOMMANDS:
        if not args.overrides:
            raise SystemExit(f"herd safety {args.config}: give a TOML config (configs/safety/*.toml)")
        name, args.config, args.overrides = args.config, args.overrides[0], args.overrides[1:]
        return SUBCOMMANDS[name](args)
    from herd.safety.stage import SafetyConfig, run_safety

    cfg = load_args_config(SafetyConfig, args)
    m = run_safety(cfg)
    for system in ("model", "guarded"):
        vr, frr = m[system]["vr"]["all"], m[system]["frr"]["all"]
        print(f"{system:8s} VR {100 * vr['rate']:5.1f} ± {100 * vr['ci95']:4.1f} (n={vr['n']})   "
              f"FRR {100 * frr['rate']:5.1f} ± {100 * frr['ci95']:4.1f} (n={frr['n']})")  # fmt: skip
    print(f"blocked by the guard: {m['blocked']}; wrote {cfg.out}/metrics.json, responses.jsonl")
    return 0


def sweep_command(args: argparse.Namespace) -> int:
    from herd.safety.sweep import SweepConfig, run_sweep

    cfg = load_args_config(SweepConfig, args)
    r = run_sweep(cfg)
    b = r["base"]
    print(f"base (no safety SFT) VR {100 * b['value']:5.1f} ± {100 * b['ci95']:4.1f}   "
          f"FRR {100 * b['frr']:5.1f} ± {100 * b['frr_ci95']:4.1f}")  # fmt: skip
    for p in r["points"]:
        print(f"share {p['share']:4.2f} (seed {p['seed']}) VR {100 * p['vr']:5.1f} ± {100 * p['vr_ci95']:4.1f}   "
              f"FRR {100 * p['frr']:5.1f} ± {100 * p['frr_ci95']:4.1f}")  # fmt: skip
    print(f"wrote {cfg.out}/sweep.json, {r['figure']}")
    return 0


def train_guard_command(args: argparse.Namespace) -> int:
    from herd.safety.guard_lm import GuardLMConfig, run_train_guard

    cfg = load_args_config(GuardLMConfig, args)
    m = run_train_guard(cfg)
    for name in ("lm_guard", "minilm_guard"):
        for side, s in m.get(name, {}).items():
            print(f"{name:12s} {side:6s} binary macro-F1 {s['binary']['macro_f1']:.3f} (majority "
                  f"{s['majority_binary']:.3f})   categories macro-F1 {s['categories']['macro_f1']:.3f} "
                  f"(majority {s['majority_categories']:.3f})   n={s['n']}")  # fmt: skip
    print(f"trained in {m['train']['train_s']} s; guard at {cfg.out}/model (herd chat MODEL --guard {cfg.out}/model)")
    return 0


SUBCOMMANDS = {"sweep": sweep_command, "train-guard": train_guard_command}
