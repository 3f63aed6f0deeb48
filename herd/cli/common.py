"""Shared CLI plumbing (not a command): load a model with the tokenizer that belongs to it."""

from __future__ import annotations

import argparse
from pathlib import Path


def add_model_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("model", help="bundled name (smollm2), checkpoint path (HF dir, Meta dir, .gguf) or preset")
    p.add_argument("--tokenizer", default=None, help="tokenizer name or path (default: the model's own)")
    p.add_argument("--max-new-tokens", type=int, default=256)
    p.add_argument("--temperature", type=float, default=0.0, help="0 = greedy")
    p.add_argument("--top-p", type=float, default=0.9)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--device", default="auto")
    p.add_argument("--quantized", action="store_true", help="a GGUF runs in its own Q4/Q8 precision (CPU, faster)")


def load_model_and_tokenizer(args: argparse.Namespace):
    from herd.core.runtime import pick_device
    from herd.model import load_model, resolve
    from herd.tokenizer import load_tokenizer

    source = resolve(args.model)
    tok_source = args.tokenizer or (args.model if args.model == "smollm2" else source)
    if isinstance(tok_source, str) and not Path(tok_source).exists() and tok_source not in ("llama3", "smollm2"):
        raise ValueError(f"{args.model}: a preset has no tokenizer; pass --tokenizer NAME_OR_PATH")
    tokenizer = load_tokenizer(tok_source)
    quantized = getattr(args, "quantized", False)
    model = load_model(source, device=pick_device(args.device), quantized=quantized).eval()
    if tokenizer.vocab_size > model.cfg.vocab_size:
        raise ValueError(f"tokenizer has {tokenizer.vocab_size} ids but the model only {model.cfg.vocab_size}")
    return model, tokenizer


class Streamer:
    """Print a row's text as tokens arrive; re-decoding the whole tail keeps multi-byte characters whole."""

    def __init__(self, tokenizer, print_fn=print) -> None:
        self.tokenizer, self.print = tokenizer, print_fn
        self.ids: list[int] = []
        self.shown = ""

    def __call__(self, row: int, token: int) -> None:
        self.ids.append(token)
        text = self.tokenizer.decode(self.ids)
        if not text.endswith("\ufffd"):  # an incomplete UTF-8 sequence decodes to U+FFFD: wait
            self.print(text[len(self.shown) :], end="", flush=True)
            self.shown = text


def add_config_args(p: argparse.ArgumentParser, example: str) -> None:
    """A stage command's arguments: one TOML config and dotted overrides (`optim.lr=3e-4 parallel.tp=2`)."""
    p.add_argument("config", help=f"TOML config ({example}); /dev/null for defaults")
    p.add_argument("overrides", nargs="*", help="dotted overrides, e.g. a.b=c (unknown keys are errors)")


def load_args_config(cls: type, args: argparse.Namespace):
    from herd.core.config import load_config

    return load_config(cls, args.config, args.overrides)
