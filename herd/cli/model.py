"""`herd model info PRESET`: parameter counts, FLOPs, KV-cache and training-memory accounting."""

from __future__ import annotations

import argparse


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("model", help="inspect model presets and checkpoints")
    msub = p.add_subparsers(dest="model_command", required=True, metavar="SUBCOMMAND")
    info = msub.add_parser("info", help="exact parameter count, FLOPs/token, KV cache, memory")
    info.add_argument("model", help="preset name (debug, 1B, 3B, 8B, 70B, 405B) or checkpoint path")
    info.add_argument("--seq-len", type=int, default=8192, help="sequence length for FLOPs (default 8192)")
    info.add_argument("--batch-tokens", type=int, default=8192, help="tokens per device for memory")
    info.add_argument("--shards", type=int, default=1, help="FSDP shards for the memory estimate")
    info.set_defaults(func=info_command)


def info_command(args: argparse.Namespace) -> int:
    from rich.console import Console
    from rich.table import Table

    from herd.model.config import (
        PRESETS,
        flops_per_token,
        kv_cache_bytes_per_token,
        param_count,
        training_memory_bytes,
    )

    if args.model in PRESETS:
        cfg = PRESETS[args.model]
    else:
        from herd.model import load_model

        cfg = load_model(args.model).cfg
    mem = training_memory_bytes(cfg, args.batch_tokens, shards=args.shards)
    table = Table(title=f"herd model {args.model}", show_header=False)
    rows = [
        (
            "shape",
            f"dim {cfg.dim}, layers {cfg.n_layers}, heads {cfg.n_heads}/{cfg.n_kv_heads} kv, "
            f"ffn {cfg.hidden_dim}, vocab {cfg.vocab_size}, tied {cfg.tie_embeddings}",
        ),
        ("rope", f"theta {cfg.rope_theta:g}, 3.1 scaling {cfg.rope_scaling}"),
        ("parameters", f"{param_count(cfg):,}"),
        ("parameters (no embeddings)", f"{param_count(cfg, embeddings=False):,}"),
        (f"training FLOPs/token @ {args.seq_len}", f"{flops_per_token(cfg, args.seq_len):.4e}"),
        (
            "KV cache per token (bf16)",
            f"{kv_cache_bytes_per_token(cfg):,} B ({kv_cache_bytes_per_token(cfg) / 1024:g} KiB)",
        ),
    ]
    rows += [
        (f"train memory {k} ({args.batch_tokens} tok, {args.shards} shards)", f"{v / 2**30:,.1f} GiB")
        for k, v in mem.items()
    ]
    for k, v in rows:
        table.add_row(k, v)
    Console().print(table)
    return 0
