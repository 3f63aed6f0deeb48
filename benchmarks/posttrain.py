"""Post-training throughput on this machine, each against its peer measured in the same run:

- SFT trained tokens/s (non-padding tokens) with packing + document mask vs one dialog per row padded;
- rejection sampling generated tokens/s with the shared prompt prefill (prefill once, copy KV rows K
  times) vs naive generation where every sample prefills its own copy of the prompt [P §4.2.2].

    .venv/bin/python benchmarks/posttrain.py [--threads 1]

Writes benchmarks/results/posttrain-DATE.json. Uses the bundled post-training data (built if missing).
"""

from __future__ import annotations

import argparse
import json
import platform
import time
from datetime import date
from pathlib import Path

import torch

from herd.model import build_model, get_preset
from herd.posttrain.bundle import BundleConfig, build_bundle
from herd.posttrain.common import adamw, step
from herd.posttrain.data import read_dialogs
from herd.posttrain.rejection import sample_k, sample_naive
from herd.posttrain.sft import SFTConfig, batch_loss, encode_dialogs, make_batches
from herd.tokenizer import load_tokenizer
from herd.tokenizer.chat import load_chat_format


def sft_throughput(model, examples, pack: bool, batch_rows: int, seq_len: int) -> float:
    cfg = SFTConfig(pack=pack, batch_rows=batch_rows, seq_len=seq_len)
    batches = make_batches(examples, cfg, seed=0, pad_id=0)
    optim = adamw(model, 1e-4)
    step(optim, model, batch_loss(model, batches[0]))  # warm up
    start = time.perf_counter()
    for b in batches:
        step(optim, model, batch_loss(model, b))
    real_tokens = sum(len(e.tokens) for e in examples)
    return real_tokens / (time.perf_counter() - start)


def rs_throughput(model, prompts, k: int, new_tokens: int, shared: bool) -> float:
    sampler = sample_k if shared else sample_naive
    sampler(model, prompts[:1], k, max_new_tokens=2, temperature=1.0, seed=0)  # warm up
    start = time.perf_counter()
    out = sampler(model, prompts, k, max_new_tokens=new_tokens, temperature=1.0, seed=0)
    return sum(len(s) for per in out for s in per) / (time.perf_counter() - start)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--k", type=int, default=16)
    ap.add_argument("--prompt-tokens", type=int, default=256)
    ap.add_argument("--new-tokens", type=int, default=16)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    bundle = BundleConfig()
    build_bundle(bundle)
    tok = load_tokenizer(str(Path(bundle.out) / "tokenizer.model"))
    chat = load_chat_format(tok)
    cfg = get_preset("debug", vocab_size=tok.vocab_size, dim=256, n_layers=4, n_heads=8, n_kv_heads=4, ffn_dim=768)
    dialogs = read_dialogs(Path(bundle.out) / "sft.jsonl")[:400]
    examples = encode_dialogs(chat, [d.messages for d in dialogs], 256)

    model = build_model(cfg, seed=0)
    packed = sft_throughput(model, examples, True, 8, 512)
    model = build_model(cfg, seed=0)
    unpacked = sft_throughput(model, examples, False, 8, 512)

    model = build_model(cfg, seed=0).eval()
    g = torch.Generator().manual_seed(0)
    prompts = torch.randint(0, tok.vocab_size - 256, (4, args.prompt_tokens), generator=g).tolist()
    shared = rs_throughput(model, prompts, args.k, args.new_tokens, True)
    naive = rs_throughput(model, prompts, args.k, args.new_tokens, False)

    result = {
        "date": date.today().isoformat(),
        "machine": platform.platform(),
        "processor": platform.processor(),
        "python": platform.python_version(),
        "torch": torch.__version__,
        "threads": args.threads,
        "model": {"dim": cfg.dim, "n_layers": cfg.n_layers, "vocab_size": cfg.vocab_size},
        "sft": {"examples": len(examples), "packed_tokens_per_s": packed, "unpacked_tokens_per_s": unpacked,
                "ratio": packed / unpacked},
        "rejection_sampling": {"prompts": len(prompts), "k": args.k, "prompt_tokens": args.prompt_tokens,
                               "new_tokens": args.new_tokens, "shared_prefill_tokens_per_s": shared,
                               "naive_tokens_per_s": naive, "ratio": shared / naive},
    }  # fmt: skip
    print(f"SFT trained tokens/s: packed {packed:,.0f} vs unpacked {unpacked:,.0f} → {packed / unpacked:.2f}×")
    print(f"RS generated tokens/s (K={args.k}, {args.prompt_tokens}-token prompts): shared prefill {shared:,.0f} "
          f"vs naive {naive:,.0f} → {shared / naive:.2f}×")  # fmt: skip
    out = Path("benchmarks/results") / f"posttrain-{result['date']}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2) + "\n")
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
