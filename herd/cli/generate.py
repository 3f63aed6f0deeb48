"""`herd generate MODEL --prompt TEXT`: raw continuation of one or more prompts."""

from __future__ import annotations

import argparse

from herd.cli.common import Streamer, add_model_args, load_model_and_tokenizer


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("generate", help="continue text prompts with a model (KV cache, batched)")
    add_model_args(p)
    p.add_argument("--prompt", action="append", required=True, help="a prompt; repeat for a batch")
    p.add_argument("--bos", action="store_true", help="prepend the begin-of-text token")
    p.set_defaults(func=generate_command)


def generate_command(args: argparse.Namespace) -> int:
    from herd.model import generate

    model, tok = load_model_and_tokenizer(args)
    prompts = [tok.encode(p, bos=args.bos) for p in args.prompt]
    stream = Streamer(tok) if len(prompts) == 1 else None
    if stream:
        print(args.prompt[0], end="", flush=True)
    outs = generate(
        model,
        prompts,
        max_new_tokens=args.max_new_tokens,
        temperature=args.temperature,
        top_p=args.top_p,
        stop_ids=sorted(tok.stop_ids),
        seed=args.seed,
        on_token=stream,
    )
    if stream:
        print()
    else:
        for prompt, out in zip(args.prompt, outs):
            print(f"--- {prompt}{tok.decode(out)}")
    return 0
