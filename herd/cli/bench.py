"""`herd bench serve MODEL`: serving throughput and latency under load, against a peer in the same run."""

from __future__ import annotations

import argparse

from herd.cli.common import add_model_args

QUESTIONS = [
    "The capital of France is", "Three tips for sleeping better:", "Photosynthesis is", "A haiku about the sea:",
    "17 times 23 equals", "A famous painting is", "The sky is blue because", "A good name for a turtle is",
]  # fmt: skip


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("bench", help="benchmarks: `herd bench serve MODEL`")
    what = p.add_subparsers(dest="what", required=True, metavar="WHAT")
    s = what.add_parser("serve", help="throughput, TTFT, ITL, p50/p99 of herd serve vs a peer under load")
    add_model_args(s)
    s.add_argument("--concurrency", type=int, default=8)
    s.add_argument("--requests", type=int, default=32)
    s.add_argument("--peer-url", default="", help="another OpenAI-compatible server (default: herd, unbatched)")
    s.add_argument("--peer-model", default="", help="the model name the peer expects")
    s.add_argument("--out", default="", help="also write the result as JSON here")
    s.set_defaults(func=bench_serve_command)


def bench_serve_command(args: argparse.Namespace) -> int:
    import json
    from pathlib import Path

    from herd.cli.common import load_model_and_tokenizer
    from herd.serve.bench import bench_serve

    model, tok = load_model_and_tokenizer(args)
    prompts = [QUESTIONS[i % len(QUESTIONS)] for i in range(args.requests)]
    r = bench_serve(model, tok, prompts, args.concurrency, args.max_new_tokens, args.peer_url, args.peer_model)
    for name, row in r["rows"].items():
        print(f"{name:24s} {row['output_tokens_per_s']:7.1f} tok/s  {row['requests_per_s']:5.2f} req/s  "
              f"TTFT p50/p99 {row['ttft_ms']['p50']:.0f}/{row['ttft_ms']['p99']:.0f} ms  "
              f"ITL p50/p99 {row['itl_ms']['p50']:.0f}/{row['itl_ms']['p99']:.0f} ms")  # fmt: skip
    for name, ratio in r["ratios"].items():
        print(f"herd / peer, {name}: {ratio:.2f}×")
    if args.out:
        Path(args.out).write_text(json.dumps(r, indent=2) + "\n")
    return 0
