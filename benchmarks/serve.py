"""Rejection-sampling throughput [P §4.2.2]: K samples per prompt from SmolLM2-135M-Instruct (the bundled GGUF).

Four ways to draw the same number of samples, in one run on this machine:
- engine: herd.model.engine, continuous batching over a paged KV cache; each prompt is prefilled once and
  its blocks are shared by its K samples; a finished sample leaves the batch at once;
- engine, GGUF quantized: the same with the file's Q4_1/Q8_0 weights (herd.model.quant, bf16 activations);
- sample_k: today's rejection-sampling path (herd.posttrain.rejection.sample_k → herd.model.generate with
  num_samples): one prefill per prompt, all B·K rows in a static cache until the longest row ends;
- one at a time: herd.model.generate on one sample at a time (measured on the first prompt only);
- HF generate: transformers' `generate(num_return_sequences=K, do_sample=True)` per prompt, same weights.

Throughput is generated tokens (up to and including the end-of-turn token) per wall second.

    .venv/bin/python benchmarks/serve.py            # 8 prompts × 16 samples × ≤48 tokens, ~6 min on 2 shared cores
    .venv/bin/python benchmarks/serve.py --quick    # 4 prompts × 16 samples × ≤16 tokens
"""

from __future__ import annotations

import argparse
import json
import platform
import time
from collections.abc import Callable
from datetime import date
from pathlib import Path

import torch
from machine import cpu_name

from herd.model import generate, load_model
from herd.model.engine import Engine, EngineConfig, SamplingParams
from herd.posttrain.rejection import sample_k
from herd.tokenizer import load_tokenizer
from herd.tokenizer.chat import load_chat_format

RESULTS = Path(__file__).parent / "results"
QUESTIONS = [
    "What is the capital of France?",
    "Give me three tips for sleeping better.",
    "Explain photosynthesis to a child.",
    "Write a haiku about the sea.",
    "What is 17 times 23?",
    "Name a famous painting and its painter.",
    "Why is the sky blue?",
    "Suggest a name for a pet turtle.",
]


def timed(fn: Callable[[], list[list[int]]]) -> tuple[float, int]:
    """(wall seconds, generated tokens) of one call returning the samples' token lists."""
    start = time.perf_counter()
    samples = fn()
    return time.perf_counter() - start, sum(len(s) for s in samples)


def hf_model(path: Path):
    from transformers import AutoModelForCausalLM

    return AutoModelForCausalLM.from_pretrained(path.parent, gguf_file=path.name, dtype=torch.float32).eval()


def hf_samples(model, prompts: list[list[int]], k: int, n_new: int, temperature: float, top_p: float, stop: set[int]):
    out = []
    for i, p in enumerate(prompts):
        torch.manual_seed(i)
        ids = model.generate(
            torch.tensor([p]), do_sample=True, temperature=temperature, top_p=top_p, top_k=0,
            max_new_tokens=n_new, num_return_sequences=k, eos_token_id=sorted(stop), pad_token_id=sorted(stop)[0],
        )  # fmt: skip
        for row in ids[:, len(p) :].tolist():
            cut = next((j + 1 for j, t in enumerate(row) if t in stop), len(row))  # keep the end token, as herd counts
            out.append(row[:cut])
    return out


def with_end(samples: list[list[int]], n_new: int) -> list[list[int]]:
    """herd returns samples cut before the stop token: count that token too, when one was produced."""
    return [[*s, 0] if len(s) < n_new else s for s in samples]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--k", type=int, default=16)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    n_prompts, n_new = (4, 16) if args.quick else (8, 48)
    temperature, top_p, k = 0.7, 0.9, args.k

    from herd.model import bundled_path

    model = load_model("smollm2").eval()
    tok = load_tokenizer("smollm2")
    chat = load_chat_format(tok)
    prompts = [chat.encode_prompt([{"role": "user", "content": q}]) for q in QUESTIONS[:n_prompts]]
    stop = set(tok.stop_ids)
    params = SamplingParams(n_new, temperature, top_p, n=k, seed=0, stop_ids=frozenset(stop))
    engine = Engine(model, EngineConfig(kv_tokens=n_prompts * k * (max(map(len, prompts)) + n_new), max_batch=512))

    def run_engine() -> list[list[int]]:
        return with_end([s for per in engine.generate(prompts, params) for s in per], n_new)

    quant = load_model("smollm2", quantized=True).eval()
    engine_q = Engine(quant, engine.cfg)

    def run_engine_quantized() -> list[list[int]]:
        return with_end([s for per in engine_q.generate(prompts, params) for s in per], n_new)

    def run_sample_k() -> list[list[int]]:
        per = sample_k(model, prompts, k, n_new, temperature, top_p, sorted(stop), seed=0)
        return with_end([s for p in per for s in p], n_new)

    def run_one_at_a_time() -> list[list[int]]:
        one = [generate(model, [prompts[0]], n_new, temperature, top_p, sorted(stop), seed=j)[0] for j in range(k)]
        return with_end(one, n_new)

    hf = hf_model(bundled_path("smollm2"))
    rows = {}
    for name, fn in [
        ("engine (paged, continuous)", run_engine),
        ("engine, GGUF quantized", run_engine_quantized),
        ("sample_k (static cache)", run_sample_k),
        ("one at a time (prompt 1)", run_one_at_a_time),
        ("HF generate", lambda: hf_samples(hf, prompts, k, n_new, temperature, top_p, stop)),
    ]:
        with torch.inference_mode():
            seconds, tokens = timed(fn)
        rows[name] = {"seconds": seconds, "tokens": tokens, "tok_s": tokens / seconds}
        print(f"{name:30s} {tokens:6d} tokens in {seconds:7.1f} s = {tokens / seconds:7.1f} tok/s", flush=True)
    ratios = {}
    for mine in ("engine (paged, continuous)", "engine, GGUF quantized"):
        for name, r in rows.items():
            if not name.startswith("engine"):
                ratios[f"{mine} / {name}"] = rows[mine]["tok_s"] / r["tok_s"]
    for name, ratio in ratios.items():
        print(f"{name:40s} {ratio:5.2f}×")
    import transformers

    result = {
        "benchmark": "serve",
        "date": date.today().isoformat(),
        "machine": {"cpu": cpu_name(), "platform": platform.platform(), "torch_threads": torch.get_num_threads()},
        "versions": {"torch": torch.__version__, "transformers": transformers.__version__},
        "setup": {"prompts": n_prompts, "k": k, "max_new_tokens": n_new, "temperature": temperature, "top_p": top_p},
        "engine_stats": vars(engine.stats),
        "rows": rows,
        "ratios": ratios,
    }
    print(json.dumps(result["machine"]), json.dumps(result["versions"]), result["date"])
    RESULTS.mkdir(exist_ok=True)
    out = RESULTS / f"serve{'-quick' if args.quick else ''}-{result['date']}.json"
    out.write_text(json.dumps(result, indent=2) + "\n")
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
