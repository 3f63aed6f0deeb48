"""`herd generate MODEL --prompt TEXT`: raw continuation of one or more prompts.

Under torchrun (`torchrun --nproc_per_node=N -m herd.cli generate ...`) the model's layers are split over
the N ranks and the prompts run through them in `--micro-batches` micro-batches [P §6.1]."""

from __future__ import annotations

import argparse
import os

from herd.cli.common import Streamer, add_model_args, load_model_and_tokenizer


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("generate", help="continue text prompts with a model (KV cache, batched)")
    add_model_args(p)
    p.add_argument("--prompt", action="append", required=True, help="a prompt; repeat for a batch")
    p.add_argument("--bos", action="store_true", help="prepend the begin-of-text token")
    p.add_argument("--micro-batches", type=int, default=2, help="under torchrun: micro-batches in the pipeline")
    p.set_defaults(func=generate_command)


def generate_command(args: argparse.Namespace) -> int:
    from herd.model import generate

    model, tok = load_model_and_tokenizer(args)
    prompts = [tok.encode(p, bos=args.bos) for p in args.prompt]
    if int(os.environ.get("WORLD_SIZE", "1")) > 1:
        return _pipelined(model, tok, prompts, args)
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


def _pipelined(model, tok, prompts: list[list[int]], args: argparse.Namespace) -> int:
    import torch.distributed as dist

    from herd.parallel.pp_infer import pipeline_generate, pipeline_stage

    dist.init_process_group("nccl" if next(model.parameters()).is_cuda else "gloo")
    stage, _ = pipeline_stage(model, dist.get_rank(), dist.get_world_size())
    kw = dict(temperature=args.temperature, top_p=args.top_p, stop_ids=sorted(tok.stop_ids), seed=args.seed)
    outs = pipeline_generate(stage, prompts, args.max_new_tokens, args.micro_batches, **kw)
    if outs is not None:
        for prompt, out in zip(args.prompt, outs):
            print(f"--- {prompt}{tok.decode(out)}")
    dist.destroy_process_group()
    return 0
