"""`herd serve MODEL`: an OpenAI-compatible HTTP server (completions, chat, models) over the batching engine."""

from __future__ import annotations

import argparse
from pathlib import Path


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("serve", help="serve a model over an OpenAI-compatible HTTP API (needs herd[serve])")
    p.add_argument("model", help="bundled name (smollm2), checkpoint path (HF dir, Meta dir, .gguf) or preset")
    p.add_argument("--tokenizer", default=None, help="tokenizer name or path (default: the model's own)")
    p.add_argument("--device", default="auto")
    p.add_argument("--quantized", action="store_true", help="a GGUF runs in its own Q4/Q8 precision (CPU, faster)")
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=8000)
    p.add_argument("--name", default=None, help="the model id clients send (default: the model's file name)")
    p.add_argument("--kv-tokens", type=int, default=16384, help="KV cache capacity in tokens (all sequences)")
    p.add_argument("--block-size", type=int, default=16, help="tokens per KV block")
    p.add_argument("--max-batch", type=int, default=64, help="sequences decoded together at most")
    p.add_argument("--max-pending", type=int, default=256, help="prompts in flight before answering 429")
    p.add_argument("--timeout", type=float, default=600.0, help="seconds a request may take, queueing included")
    p.set_defaults(func=serve_command)


def serve_command(args: argparse.Namespace) -> int:
    try:
        from herd.serve.app import ServeConfig, serve
    except ModuleNotFoundError as e:
        raise ValueError(f"herd serve needs the serve extra (pip install 'herd[serve]'): {e}") from None
    from herd.cli.common import load_model_and_tokenizer
    from herd.model.engine import EngineConfig

    model, tokenizer = load_model_and_tokenizer(args)
    engine = EngineConfig(block_size=args.block_size, kv_tokens=args.kv_tokens, max_batch=args.max_batch)
    name = args.name or Path(str(args.model)).name
    cfg = ServeConfig(args.host, args.port, name, args.max_pending, args.timeout, engine=engine)
    serve(model, tokenizer, cfg)
    return 0
