"""`herd convert SRC DST`: any supported checkpoint (HF dir, Meta dir, GGUF) → a HF-format directory."""

from __future__ import annotations

import argparse

DTYPES = {"fp32": "float32", "bf16": "bfloat16", "fp16": "float16"}


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("convert", help="convert HF / Meta / GGUF weights to a HF-format directory")
    p.add_argument("src", help="HF directory, Meta directory (params.json) or .gguf file")
    p.add_argument("dst", help="output directory (config.json + model*.safetensors)")
    p.add_argument("--dtype", choices=sorted(DTYPES), default=None, help="cast weights (default: keep)")
    p.add_argument("--max-shard-gb", type=float, default=5.0, help="safetensors shard size")
    p.set_defaults(func=convert_command)


def convert_command(args: argparse.Namespace) -> int:
    import torch

    from herd.model import load_model
    from herd.model.convert import save_hf

    dtype = getattr(torch, DTYPES[args.dtype]) if args.dtype else None
    model = load_model(args.src, dtype=dtype)
    out = save_hf(model, args.dst, max_shard_bytes=int(args.max_shard_gb * 2**30))
    print(f"wrote {out} ({sum(p.numel() for p in model.parameters()):,} parameters)")
    return 0
