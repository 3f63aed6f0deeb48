"""Training throughput and MFU of herd's training step on this machine.

    .venv/bin/python benchmarks/train_cpu.py [--quick]

A step is what `herd pretrain` runs: forward with a document mask, fp32 cross-entropy, backward,
gradient clipping and AdamW. MFU = model FLOPs per token (herd.model.config.flops_per_token) × tokens/s
÷ the dense matmul peak measured in the same run and dtype (CPUs have no published bf16 peak).
Variants: fp32 vs bf16 autocast, eager vs torch.compile (per block, as the trainer does).
"""

from __future__ import annotations

import argparse
import datetime
import json
import platform
import statistics
import time
from pathlib import Path

import torch
import torch.nn.functional as F
from machine import cpu_name

from herd.core.runtime import autocast
from herd.model import build_model, get_preset
from herd.model.config import flops_per_token
from herd.model.layers import document_causal
from herd.train.metrics import measure_peak_flops

# The CPU demo shape from platform-notes.md: 15.7M parameters.
SHAPE = dict(dim=384, n_layers=6, n_heads=6, n_kv_heads=2, ffn_dim=1024, vocab_size=8192, max_seq_len=2048)


def step_fn(model, optim, tokens, labels, doc_ids, dtype):
    def step() -> float:
        with autocast(torch.device("cpu"), dtype):
            logits = model(tokens, *document_causal(doc_ids, model.cfg.attn_impl))
        loss = F.cross_entropy(logits.float().flatten(0, 1), labels.flatten())
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optim.step()
        optim.zero_grad(set_to_none=True)
        return loss.item()

    return step


def measure(dtype: torch.dtype, compiled: bool, batch: int, seq: int, steps: int) -> dict:
    cfg = get_preset("debug", **SHAPE)
    model = build_model(cfg, seed=0)
    if compiled:
        for block in model.layers.values():
            block.compile()
    optim = torch.optim.AdamW(model.parameters(), lr=1e-4, foreach=True)
    g = torch.Generator().manual_seed(0)
    tokens = torch.randint(0, cfg.vocab_size, (batch, seq + 1), generator=g)
    doc_ids = torch.cumsum(torch.rand(batch, seq, generator=g) < 1 / 256, dim=1)  # ~2 documents a row
    step = step_fn(model, optim, tokens[:, :-1], tokens[:, 1:], doc_ids, dtype)
    t0 = time.perf_counter()
    step()
    step()  # warm-up (and compilation)
    warm = time.perf_counter() - t0
    times = []
    for _ in range(steps):
        t = time.perf_counter()
        step()
        times.append(time.perf_counter() - t)
    tps = batch * seq / statistics.median(times)
    return {"tokens_per_s": tps, "flops_per_token": flops_per_token(cfg, seq), "warmup_s": warm}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--quick", action="store_true")
    args = ap.parse_args()
    batch, seq, steps = (4, 256, 3) if args.quick else (8, 512, 6)
    from rich.console import Console
    from rich.table import Table

    peaks = {
        "fp32": measure_peak_flops(torch.device("cpu"), torch.float32, seconds=1.0),
        "bf16": measure_peak_flops(torch.device("cpu"), torch.bfloat16, seconds=1.0),
    }
    rows = []
    for name, dtype in (("fp32", torch.float32), ("bf16", torch.bfloat16)):
        for compiled in (False, True):
            r = measure(dtype, compiled, batch, seq, steps)
            r.update(dtype=name, compiled=compiled, mfu=r["tokens_per_s"] * r["flops_per_token"] / peaks[name])
            rows.append(r)
    base = rows[0]["tokens_per_s"]
    table = Table(title=f"herd training step, {SHAPE['dim']}d × {SHAPE['n_layers']} layers, batch {batch} × {seq}")
    for col in ("variant", "tokens/s", "vs fp32 eager", "MFU", "warm-up s"):
        table.add_column(col, justify="right")
    for r in rows:
        variant = f"{r['dtype']} {'compiled' if r['compiled'] else 'eager'}"
        table.add_row(variant, f"{r['tokens_per_s']:,.0f}", f"{r['tokens_per_s'] / base:.2f}×",
                      f"{100 * r['mfu']:.1f}%", f"{r['warmup_s']:.1f}")  # fmt: skip
    console = Console()
    console.print(table)
    meta = {
        "date": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
        "machine": platform.processor() or platform.machine(),
        "cpu": cpu_name(),
        "threads": torch.get_num_threads(),
        "torch": torch.__version__,
        "peak_flops": peaks,
        "command": "python benchmarks/train_cpu.py" + (" --quick" if args.quick else ""),
    }
    console.print(f"matmul peak: fp32 {peaks['fp32'] / 1e9:.0f} GFLOP/s, bf16 {peaks['bf16'] / 1e9:.0f} GFLOP/s")
    console.print(meta)
    out = Path(__file__).parent / "results" / f"train_cpu-{meta['date'][:10]}.json"
    out.parent.mkdir(exist_ok=True)
    out.write_text(json.dumps({"meta": meta, "rows": rows}, indent=2) + "\n")


if __name__ == "__main__":
    main()
