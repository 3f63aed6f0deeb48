"""FP8 row-wise inference [P §6.2] on CPU: quality of SmolLM2-135M-Instruct with fp8 feed-forward layers, and
the fp8 matmul's speed on an 8B-shaped FFN matrix, against fp32 and bf16 in the same run.

Quality, as the paper checks it, is the change in the model's outputs: the KL divergence of next-token
distributions from the fp32 model's, top-1 agreement and the largest logit change, over 2,048 tokens of
held-out text (this repository's docs/*.md), for fp8 with the paper's 1200 cap, fp8 without a cap, and a
bf16 copy of the model. The paper's reward-model score comparison needs a reward model for SmolLM2's
vocabulary, which herd does not bundle.

    .venv/bin/python benchmarks/fp8.py
"""

from __future__ import annotations

import copy
import json
import platform
import time
from datetime import date
from pathlib import Path

import torch
from machine import cpu_name

from herd.model import load_model
from herd.model.fp8 import Fp8Linear, quantize_fp8
from herd.tokenizer import load_tokenizer

RESULTS = Path(__file__).parent / "results"


def held_out_text() -> str:
    docs = sorted(Path(__file__).parents[1].glob("docs/*.md"))
    return "\n".join(p.read_text() for p in docs)


def compare(ref: torch.Tensor, out: torch.Tensor) -> dict[str, float]:
    lp, lq = torch.log_softmax(ref.float(), -1), torch.log_softmax(out.float(), -1)
    return {
        "kl": float((lp.exp() * (lp - lq)).sum(-1).mean()),
        "top1_agreement": float((ref.argmax(-1) == out.argmax(-1)).float().mean()),
        "max_abs_logit_diff": float((ref.float() - out.float()).abs().max()),
    }


def matmul_ms(fn, repeats: int = 5) -> float:
    fn()
    start = time.perf_counter()
    for _ in range(repeats):
        fn()
    return (time.perf_counter() - start) / repeats * 1e3


def main() -> None:
    torch.set_num_threads(2)
    tok = load_tokenizer("smollm2")
    ids = tok.encode(held_out_text())[: 8 * 256]
    x = torch.tensor(ids).view(8, 256)
    fp32 = load_model("smollm2").eval()
    models = {
        "fp8, cap 1200": quantize_fp8(copy.deepcopy(fp32)),
        "fp8, no cap": quantize_fp8(copy.deepcopy(fp32), scale_ub=None),
        "bf16": copy.deepcopy(fp32).to(torch.bfloat16),
    }
    with torch.inference_mode():
        ref = fp32(x)
        quality = {name: compare(ref, m(x)) for name, m in models.items()}
    for name, q in quality.items():
        print(
            f"{name:14s} KL {q['kl']:.4f}  top-1 {q['top1_agreement']:.3f}  max |Δlogit| {q['max_abs_logit_diff']:.2f}"
        )
    # Speed of one 8B FFN matmul (4096 → 14336) at a prefill of 512 tokens [P §6.2: up to 50% faster prefill].
    w, a = torch.randn(14336, 4096) * 0.02, torch.randn(512, 4096)
    layer = Fp8Linear(w)
    speed = {
        "fp32 F.linear ms": matmul_ms(lambda: torch.nn.functional.linear(a, w)),
        "bf16 F.linear ms": matmul_ms(lambda: torch.nn.functional.linear(a.bfloat16(), w.bfloat16())),
        "fp8 scaled_mm ms (incl. activation quantization)": matmul_ms(lambda: layer(a)),
    }
    for name, ms in speed.items():
        print(f"{name:50s} {ms:8.1f}")
    result = {
        "benchmark": "fp8",
        "date": date.today().isoformat(),
        "machine": {"cpu": cpu_name(), "platform": platform.platform(), "torch_threads": 2},
        "versions": {"torch": torch.__version__},
        "setup": {
            "tokens": x.numel(),
            "fp8_layers": sum(isinstance(m, Fp8Linear) for m in models["fp8, cap 1200"].modules()),
        },
        "quality_vs_fp32": quality,
        "speed_8b_ffn_prefill_512": speed,
    }
    RESULTS.mkdir(exist_ok=True)
    out = RESULTS / f"fp8-{result['date']}.json"
    out.write_text(json.dumps(result, indent=2) + "\n")
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
