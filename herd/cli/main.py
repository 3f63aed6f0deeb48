"""`herd <command> ...`: parse arguments, load config, call one function.

Each command lives in its own module under herd/cli/ and exposes `register(subparsers)`, which adds a
parser whose `func(args) -> int` does the work. Modules import heavy packages inside `func`, so
`herd --help` stays fast.
"""

from __future__ import annotations

import argparse
import importlib
import sys

from herd.core.stage import StageFailed

COMMANDS = (
    "model",
    "generate",
    "chat",
    "serve",
    "convert",
    "tokenizer",
    "tokenize",
    "pretrain",
    "average",
    "curate",
    "eval",
    "posttrain",
    "demo",
    "scaling",
    "recipe",
    "sandbox",
    "safety",
    "speech",
)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="herd", description="The Llama 3 recipe end to end.")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name in COMMANDS:
        try:
            module = importlib.import_module(f"herd.cli.{name}")
        except ModuleNotFoundError as e:
            if e.name != f"herd.cli.{name}":
                raise
            continue
        module.register(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args, extra = parser.parse_known_args(argv)
    # argparse stops a `nargs="*"` positional at the first flag: `CONFIG --stage X a.b=c` leaves `a.b=c`
    # over. Dotted overrides may come anywhere; anything else left over is an error, as before.
    if extra and hasattr(args, "overrides") and all("=" in e and not e.startswith("-") for e in extra):
        args.overrides = [*args.overrides, *extra]
    elif extra:
        parser.error(f"unrecognized arguments: {' '.join(extra)}")
    try:
        return int(args.func(args) or 0)
    except (ValueError, FileNotFoundError, KeyError, StageFailed) as e:
        # Bad input is reported as one line; tracebacks are for bugs.
        msg = e.args[0] if isinstance(e, KeyError) and e.args else e
        print(f"herd {args.command}: error: {msg}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
