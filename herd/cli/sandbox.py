"""`herd sandbox check`: run the hostile-program suite on this machine and print which layers hold."""

from __future__ import annotations

import argparse


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("sandbox", help="the code sandbox: check what its kernel layers stop on this machine")
    verbs = p.add_subparsers(dest="verb", required=True, metavar="VERB")
    c = verbs.add_parser("check", help="run the hostile programs (guard disarmed first) and print what held")
    c.add_argument("--mode", choices=("auto", "root", "user"), default="auto", help="root path or user-namespace path")
    c.add_argument("--python", default="", help="the interpreter that runs the programs (default: this one)")
    c.add_argument("--threat", action="append", help="only these threats (files, processes, network, signals, ...)")
    c.add_argument(
        "--without",
        action="append",
        default=[],
        choices=("seccomp", "landlock", "namespaces"),
        help="leave a layer out, to see what the others stop alone",
    )
    c.set_defaults(func=check_command)


def check_command(args: argparse.Namespace) -> int:
    from herd.sandbox import unprotected
    from herd.sandbox.hostile import quick_limits, run_guard_checks, run_suite

    limits = quick_limits(args.mode, args.python, tuple(args.without))
    for name, disarmed in run_guard_checks(limits).items():
        print(f"python guard, {name}: {'disarmed' if disarmed else 'NOT disarmed'} (the kernel layers must hold alone)")
    verdicts = run_suite(limits, lambda c: not args.threat or c.threat in args.threat)
    protections = verdicts[0].result.protections if verdicts else ""
    print(f"\nlayers that held in the child: {protections or 'none'}")
    for note in verdicts[0].result.notes if verdicts else []:
        print(f"  note: {note}")
    print(f"\n{'threat':<10} {'case':<34} {'result':<9} how")
    for v in verdicts:
        word = "held" if v.held else "ESCAPED"
        how = v.how if v.held else "; ".join(v.evidence)[:100]
        print(f"{v.case.threat:<10} {v.case.name:<34} {word:<9} {how}")
    missing = unprotected(protections)
    escaped = [v.case.name for v in verdicts if not v.held]
    print(f"\n{len(verdicts) - len(escaped)}/{len(verdicts)} held.", end=" ")
    print(f"No kernel layer for: {', '.join(missing)}." if missing else "Every threat has a kernel layer here.")
    return 1 if [v for v in verdicts if v.expected and not v.held] else 0
