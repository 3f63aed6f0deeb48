"""Greedy decode speed of SmolLM2-135M-Instruct (the bundled Q4_1 GGUF) at batch 1 and batch 8, one thread.

Rows, in one run on this machine, each the best of `--repeats` runs, all interleaved round by round:
- herd fp32: the GGUF dequantized to fp32 (herd's default load);
- herd quantized: the GGUF's own Q4_1/Q8_0 blocks (herd.model.quant: torch int4 / grouped int8 kernels
  with bf16 activations);
- HF fp32: transformers' generate on the same file (dequantized by transformers);
- llama.cpp: llama-cpp-python on the same file, when it is installed (batch 1 only; build it from its source
  package: `pip install llama-cpp-python`).

Tokens per second = new tokens / wall seconds for a 128-token greedy continuation (batch 8: all rows).

    .venv/bin/python benchmarks/decode.py            # 128 new tokens, 3 repeats, ~5 min on 2 shared cores
    .venv/bin/python benchmarks/decode.py --quick    # 32 new tokens, 1 repeat
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

from herd.model import bundled_path, generate, load_model
from herd.tokenizer import load_tokenizer

RESULTS = Path(__file__).parent / "results"
PROMPT = "The history of the printing press begins"


def herd_run(model, prompts: list[list[int]], n_new: int) -> Callable[[], int]:
    def run() -> int:
        with torch.inference_mode():
            out = generate(model, prompts, max_new_tokens=n_new)
        return sum(len(o) for o in out)

    return run


def hf_run(path: Path, prompts: list[list[int]], n_new: int) -> Callable[[], int]:
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(path.parent, gguf_file=path.name, dtype=torch.float32).eval()
    ids = torch.tensor(prompts)

    def run() -> int:
        with torch.inference_mode():
            mask = torch.ones_like(ids)
            out = model.generate(ids, attention_mask=mask, max_new_tokens=n_new, min_new_tokens=n_new, do_sample=False)
        return (out.shape[1] - ids.shape[1]) * out.shape[0]

    return run


def llama_cpp_run(path: Path, prompt: list[int], n_new: int) -> Callable[[], int] | None:
    try:
        from llama_cpp import Llama
    except ImportError:
        return None
    llm = Llama(str(path), n_threads=1, n_batch=64, verbose=False, n_ctx=512)

    def run() -> int:
        llm.reset()
        n = 0
        for _token in llm.generate(prompt, temp=0.0, top_k=1):
            n += 1
            if n == n_new:
                break
        return n

    return run


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--repeats", type=int, default=3)
    args = ap.parse_args()
    torch.set_num_threads(1)
    n_new, repeats = (32, 1) if args.quick else (128, args.repeats)
    path = bundled_path("smollm2")
    tok = load_tokenizer("smollm2")
    prompt = [tok.bos_id, *tok.encode(PROMPT)] if tok.bos_id is not None else tok.encode(PROMPT)
    fp32, quant = load_model("smollm2").eval(), load_model("smollm2", quantized=True).eval()
    runs: dict[str, Callable[[], int]] = {}
    for batch in (1, 8):
        prompts = [prompt] * batch
        runs[f"herd fp32, batch {batch}"] = herd_run(fp32, prompts, n_new)
        runs[f"herd quantized, batch {batch}"] = herd_run(quant, prompts, n_new)
        runs[f"HF fp32, batch {batch}"] = hf_run(path, prompts, n_new)
    if (cpp := llama_cpp_run(path, prompt, n_new)) is not None:
        runs["llama.cpp, batch 1"] = cpp
    same = generate(quant, [prompt], max_new_tokens=16) == generate(fp32, [prompt], max_new_tokens=16)
    best: dict[str, float] = {}
    for r in range(repeats):  # interleaved: every row sees the same machine load in each round
        for name, run in runs.items():
            start = time.perf_counter()
            tokens = run()
            tok_s = tokens / (time.perf_counter() - start)
            best[name] = max(best.get(name, 0.0), tok_s)
            print(f"round {r + 1} {name:28s} {tok_s:7.1f} tok/s", flush=True)
    ratios = {}
    for batch in (1, 8):
        q = best[f"herd quantized, batch {batch}"]
        for peer in (f"herd fp32, batch {batch}", f"HF fp32, batch {batch}", f"llama.cpp, batch {batch}"):
            if peer in best:
                ratios[f"herd quantized / {peer}"] = q / best[peer]
    for name, ratio in ratios.items():
        print(f"{name:45s} {ratio:5.2f}×")
    import transformers

    result = {
        "benchmark": "decode",
        "date": date.today().isoformat(),
        "machine": {"cpu": cpu_name(), "platform": platform.platform(), "torch_threads": 1},
        "versions": {"torch": torch.__version__, "transformers": transformers.__version__},
        "setup": {"new_tokens": n_new, "repeats": repeats, "prompt_tokens": len(prompt)},
        "same_first_16_greedy_tokens_quantized_vs_fp32": same,
        "best_tok_s": best,
        "ratios": ratios,
    }
    print(json.dumps(result["machine"]), json.dumps(result["versions"]), result["date"])
    RESULTS.mkdir(exist_ok=True)
    out = RESULTS / f"decode{'-quick' if args.quick else ''}-{result['date']}.json"
    out.write_text(json.dumps(result, indent=2) + "\n")
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
