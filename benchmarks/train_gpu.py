"""Training throughput and MFU on one GPU: herd's training step against torchtitan's on the same shape.

    python benchmarks/train_gpu.py [--shape 1B] [--batch 4] [--accum 1] [--seq 2048] [--steps 20] [--quick]

The step is what `herd pretrain` runs on one GPU: fp32 master weights, bf16 autocast, every block
torch.compile'd, compiled fp32 cross-entropy, `--accum` micro-batches, gradient clipping, fused AdamW.
The peer is torchtitan's Llama 3 model (PyPI `torchtitan`, installed beside herd) driven by the same
step, so the ratio compares model code, not optimizer or data plumbing. Both sides run with plain
causal attention (SDPA) and with a document mask (flex_attention; herd's per-token document ids,
torchtitan's EOS-delimited "block_causal"). The 1B shape is Llama 3.2 1B untied, because
torchtitan's model has no tied output.

MFU is reported two ways, over the GPU's dense bf16 peak (published, for H100/H200; and the matmul peak
measured in the same run): herd's accounting (herd.model.config.flops_per_token, causal attention
counted once) and the 6N + 12·L·d·T convention torchtitan logs (attention counted in full, embeddings
excluded from N).

torchtitan is not a herd dependency. On a machine without network, carry its wheel and what its model
module imports (torchtitan==0.2.2, torchdata, datasets, dill, multiprocess, tyro, docstring-parser,
typeguard) and install them with --no-deps; a missing peer is recorded as a failed row, not fatal.
"""

from __future__ import annotations

import argparse
import datetime
import gc
import json
import statistics
import time
import traceback
from collections.abc import Callable
from pathlib import Path

import torch

from herd.model import build_model, get_preset
from herd.model.config import ModelConfig, flops_per_token, param_count
from herd.model.layers import document_causal
from herd.train.loop import summed_token_loss
from herd.train.metrics import measure_peak_flops

# Dense bf16 tensor-core peaks from NVIDIA's datasheets (no sparsity).
PUBLISHED_PEAK = {"H100": 989.4e12, "H200": 989.4e12, "A100": 312e12}
EOS = 0  # the token id that ends documents in the doc-mask variant (torchtitan reads it from a tokenizer)


def batch(cfg: ModelConfig, b: int, t: int, device: torch.device) -> tuple[torch.Tensor, ...]:
    """Tokens, labels and document ids: random tokens, EOS at ~4 places a row (so ~5 documents)."""
    g = torch.Generator(device="cpu").manual_seed(0)
    tokens = torch.randint(1, cfg.vocab_size, (b, t + 1), generator=g)
    ends = torch.rand(b, t + 1, generator=g) < 4 / t
    tokens[ends] = EOS
    # A document starts after each EOS: both models then mask exactly the same pairs.
    doc_ids = torch.cumsum(torch.nn.functional.pad(ends[:, :-2], (1, 0)).long(), dim=1)
    return tokens[:, :-1].to(device), tokens[:, 1:].to(device), doc_ids.to(device)


def herd_model(cfg: ModelConfig, device: torch.device, doc_mask: bool) -> Callable:
    model = build_model(cfg, seed=0, device=device)
    for block in model.layers.values():
        block.compile()

    def forward(tokens: torch.Tensor, doc_ids: torch.Tensor) -> torch.Tensor:
        return model(tokens, *document_causal(doc_ids, cfg.attn_impl)) if doc_mask else model(tokens)

    return model, forward


def torchtitan_model(cfg: ModelConfig, device: torch.device, doc_mask: bool, seq: int) -> Callable:
    from torchtitan.models.llama3.model.args import RoPEScalingArgs, TransformerModelArgs
    from torchtitan.models.llama3.model.model import Transformer

    # Same shape: torchtitan sizes the FFN as multiple_of ⌈multiplier · 8d/3⌉; 1.5 · 2/3 · 4 · 2048 → 8192.
    multiplier = cfg.hidden_dim / (8 * cfg.dim / 3)
    args = TransformerModelArgs(
        dim=cfg.dim, n_layers=cfg.n_layers, n_heads=cfg.n_heads, n_kv_heads=cfg.n_kv_heads,
        vocab_size=cfg.vocab_size, ffn_dim_multiplier=multiplier, multiple_of=256, norm_eps=cfg.norm_eps,
        rope_theta=cfg.rope_theta, rope_scaling_args=RoPEScalingArgs(), max_seq_len=seq,
        attn_type="flex" if doc_mask else "sdpa", attn_mask_type="block_causal" if doc_mask else "causal",
        eos_id=EOS,
    )  # fmt: skip
    with torch.device("meta"):
        model = Transformer(args)
    model.to_empty(device=device)
    with torch.no_grad():
        model.init_weights(buffer_device=device)
    ffn = model.layers["0"].feed_forward.w1.weight.shape[0]
    assert ffn == cfg.hidden_dim, f"torchtitan FFN {ffn} != herd {cfg.hidden_dim}"
    for name, block in model.layers.named_children():
        model.layers.register_module(name, torch.compile(block))

    class _Tok:
        eos_id = EOS

    def forward(tokens: torch.Tensor, doc_ids: torch.Tensor) -> torch.Tensor:
        masks = model.get_attention_masks(tokens, _Tok()) if doc_mask else None
        return model(tokens, attention_masks=masks)

    return model, forward


def measure(make: Callable, cfg: ModelConfig, args: argparse.Namespace, device: torch.device, profile: bool) -> dict:
    torch.cuda.reset_peak_memory_stats(device)
    model, forward = make()
    optim = torch.optim.AdamW(model.parameters(), lr=1e-4, fused=True)
    b, t, steps = args.batch, args.seq, args.steps
    tokens, labels, doc_ids = batch(cfg, b, t, device)
    token_loss = torch.compile(summed_token_loss)  # as the trainer runs it with runtime.compile

    def step() -> torch.Tensor:
        for _ in range(args.accum):  # micro-batches of one optimizer step, gradients summed in fp32
            with torch.autocast("cuda", dtype=torch.bfloat16):
                logits = forward(tokens, doc_ids)
            loss = token_loss(logits, labels) / (b * t * args.accum)
            loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0, foreach=True)
        optim.step()
        optim.zero_grad(set_to_none=True)
        return loss.detach()

    t0 = time.perf_counter()
    for _ in range(3):  # compile, autotune, allocator warm-up
        first = step().item()
    warm = time.perf_counter() - t0
    times = []
    for _ in range(steps):
        torch.cuda.synchronize(device)
        start = time.perf_counter()
        last = step()
        torch.cuda.synchronize(device)
        times.append(time.perf_counter() - start)
    if profile:  # where a step's GPU time goes, by kernel
        with torch.profiler.profile(activities=[torch.profiler.ProfilerActivity.CUDA]) as prof:
            for _ in range(3):
                step()
            torch.cuda.synchronize(device)
        print(prof.key_averages().table(sort_by="self_cuda_time_total", row_limit=20, max_name_column_width=70))
    out = {
        "tokens_per_s": b * t * args.accum / statistics.median(times),
        "step_ms": 1e3 * statistics.median(times),
        "step_ms_min": 1e3 * min(times),
        "peak_mem_gib": torch.cuda.max_memory_allocated(device) / 2**30,
        "warmup_s": warm,
        "loss_first": first,
        "loss_last": last.item(),
    }
    return out


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--shape", default="1B")
    ap.add_argument("--batch", type=int, default=4)
    ap.add_argument("--seq", type=int, default=2048)
    ap.add_argument("--accum", type=int, default=1, help="micro-batches per optimizer step")
    ap.add_argument("--steps", type=int, default=20)
    ap.add_argument("--quick", action="store_true", help="a 2-layer slice of the shape, 5 steps")
    ap.add_argument("--profile", action="store_true", help="print the top GPU kernels of each system")
    ap.add_argument("--out", default=str(Path(__file__).parent / "results"))
    args = ap.parse_args()
    device = torch.device("cuda")
    overrides = {"tie_embeddings": False, "max_seq_len": max(args.seq, 8192)}
    if args.quick:
        overrides["n_layers"], args.steps = 2, 5
    cfg = get_preset(args.shape, **overrides)
    torch.backends.cuda.matmul.allow_tf32 = True

    name = torch.cuda.get_device_name(device)
    published = next((v for k, v in PUBLISHED_PEAK.items() if k in name), None)
    measured = measure_peak_flops(device, torch.bfloat16, n=8192, seconds=2.0)
    rows = []
    variants = [("herd", False), ("torchtitan", False), ("herd", True), ("torchtitan", True)]
    for system, doc_mask in variants:
        make = (
            (lambda dm=doc_mask: herd_model(cfg, device, dm))
            if system == "herd"
            else (lambda dm=doc_mask: torchtitan_model(cfg, device, dm, args.seq))
        )
        row = {"system": system, "attention": "flex doc-mask" if doc_mask else "sdpa causal"}
        try:
            row.update(measure(make, cfg, args, device, args.profile and not doc_mask))
        except Exception as e:  # a peer that fails to install or run is recorded, not fatal
            row["error"] = f"{type(e).__name__}: {e}"
            traceback.print_exc()
        gc.collect()  # the model and optimizer die with measure()'s frame; return their memory
        torch.cuda.empty_cache()
        rows.append(row)
        print(json.dumps(row), flush=True)

    # torchtitan logs 6N + 12·L·d·T: herd's accounting with the attention term counted in full.
    fpt_herd, fpt_titan = flops_per_token(cfg, args.seq), flops_per_token(cfg, args.seq, causal=False)
    for r in rows:
        if "tokens_per_s" in r:
            for peak_name, peak in (("published", published), ("measured", measured)):
                if peak:
                    r[f"mfu_herd_{peak_name}"] = r["tokens_per_s"] * fpt_herd / peak
                    r[f"mfu_titan_{peak_name}"] = r["tokens_per_s"] * fpt_titan / peak
    for attention in ("sdpa causal", "flex doc-mask"):
        pair = {r["system"]: r for r in rows if r["attention"] == attention and "tokens_per_s" in r}
        if len(pair) == 2:
            ratio = pair["herd"]["tokens_per_s"] / pair["torchtitan"]["tokens_per_s"]
            pair["herd"]["vs_torchtitan"] = ratio
    report(rows, cfg, args, name, published, measured, fpt_herd, fpt_titan)


def report(rows, cfg, args, name, published, measured, fpt_herd, fpt_titan) -> None:
    from rich.console import Console
    from rich.table import Table

    shape = f"batch {args.batch} × {args.seq}" + (f" × {args.accum} micro-batches" if args.accum > 1 else "")
    title = f"{args.shape} ({param_count(cfg) / 1e9:.2f}B untied), {shape}, bf16, compiled"
    table = Table(title=title)
    for col in ("system", "attention", "tokens/s", "vs torchtitan", "MFU herd", "MFU 6N+12LdT", "mem GiB", "loss"):
        table.add_column(col, justify="right")
    for r in rows:
        if "error" in r:
            table.add_row(r["system"], r["attention"], "failed: " + r["error"][:60], "", "", "", "", "")
            continue
        table.add_row(
            r["system"], r["attention"], f"{r['tokens_per_s']:,.0f}",
            f"{r['vs_torchtitan']:.3f}×" if "vs_torchtitan" in r else "",
            f"{100 * r.get('mfu_herd_published', r['mfu_herd_measured']):.1f}%",
            f"{100 * r.get('mfu_titan_published', r['mfu_titan_measured']):.1f}%",
            f"{r['peak_mem_gib']:.1f}", f"{r['loss_first']:.3f}→{r['loss_last']:.3f}",
        )  # fmt: skip
    console = Console()
    console.print(table)
    versions = {"torch": torch.__version__, "cuda": torch.version.cuda}
    try:
        from importlib.metadata import version

        versions["torchtitan"] = version("torchtitan")
    except Exception:
        versions["torchtitan"] = None
    meta = {
        "date": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
        "device": name,
        "peak_published": published,
        "peak_measured_bf16_8192": measured,
        "flops_per_token": {"herd": fpt_herd, "6N+12LdT": fpt_titan},
        "versions": versions,
        "command": "python benchmarks/train_gpu.py "
        + f"--shape {args.shape} --batch {args.batch} --accum {args.accum} --seq {args.seq} --steps {args.steps}"
        + (" --quick" if args.quick else ""),
    }
    console.print(f"peak bf16: published {published and published / 1e12} TFLOP/s, measured {measured / 1e12:.0f}")
    console.print(meta)
    out = Path(args.out) / f"train_gpu-{meta['date'][:10]}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps({"meta": meta, "rows": rows}, indent=2) + "\n")


if __name__ == "__main__":
    main()
