"""Weight-only quantized generation from a GGUF's own blocks: block decoding equals gguf's dequantize, the
int4/int8 layers multiply with exactly those weights, and the quantized SmolLM2 stays closer to the
dequantized fp32 model than a bf16 copy of it does (the activations are bf16; the weights are exact)."""

from __future__ import annotations

import pytest
import torch

from herd.model import generate
from herd.model.quant import Int4Linear, Int8Linear, quantized_bytes

gguf = pytest.importorskip("gguf")


def test_int4_layer_multiplies_with_its_grouped_weight():
    torch.manual_seed(0)
    codes, scale, zero = torch.randint(0, 16, (48, 128)), torch.rand(48, 4) / 10, torch.randn(48, 4) / 10
    layer = Int4Linear(codes, scale, zero, 32)
    w = (codes.float() - 8) * scale.repeat_interleave(32, 1) + zero.repeat_interleave(32, 1)
    torch.testing.assert_close(layer.dequantized(), w, atol=1e-6, rtol=0)
    x = torch.randn(3, 5, 128)
    # bf16 activations: the error is the activation rounding (2^-8 relative), not the weights.
    torch.testing.assert_close(layer(x), x @ w.T, atol=0.05, rtol=0.02)
    torch.testing.assert_close(layer(x), x.bfloat16().float() @ w.T, atol=0.03, rtol=0.01)


def test_int8_layer_keeps_per_group_scales():
    torch.manual_seed(0)
    codes, scale = torch.randint(-127, 128, (40, 96)), torch.rand(40, 3)
    scale[:, 1] *= 100  # one group far larger: a per-row scale would crush the other groups
    layer = Int8Linear(codes, scale, 32)
    w = codes.float() * scale.repeat_interleave(32, 1)
    torch.testing.assert_close(layer.dequantized(), w)
    x = torch.randn(4, 96)
    torch.testing.assert_close(layer(x), x.bfloat16().float() @ w.T, rtol=0.01, atol=0.5)


def test_gguf_blocks_match_the_gguf_package(smollm2_gguf):
    from gguf import GGUFReader
    from gguf.quants import dequantize

    from herd.model.convert import gguf_blocks

    reader = GGUFReader(str(smollm2_gguf))
    for name in ("blk.0.ffn_up.weight", "token_embd.weight"):  # Q4_1 and Q8_0 in this file
        t = next(t for t in reader.tensors if t.name == name)
        codes, d, m = gguf_blocks(t.data, t.tensor_type.name)
        w = codes.float() * d.repeat_interleave(32, 1) + (0 if m is None else m.repeat_interleave(32, 1))
        want = torch.from_numpy(dequantize(t.data, t.tensor_type).reshape(w.shape))
        assert torch.equal(w, want), name


def test_quantized_smollm2_is_closer_to_fp32_than_bf16_is(smollm2_gguf):
    from herd.model.convert import load_gguf

    fp32, quant = load_gguf(smollm2_gguf).eval(), load_gguf(smollm2_gguf, quantized=True).eval()
    bf16 = load_gguf(smollm2_gguf, dtype=torch.bfloat16).eval()
    assert quantized_bytes(quant) < 0.45 * quantized_bytes(fp32)
    x = torch.randint(0, fp32.cfg.vocab_size, (2, 40), generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        ref, q, b = fp32(x), quant(x), bf16(x).float()

    def kl(logits):  # mean KL(ref ‖ logits) per position
        lp, lq = torch.log_softmax(ref, -1), torch.log_softmax(logits, -1)
        return float((lp.exp() * (lp - lq)).sum(-1).mean())

    # Measured 2026-12-05: quantized KL 0.0015, max |Δlogit| 0.69–0.79; bf16 KL 0.0026–0.0038, 1.6–1.7.
    assert kl(q) < 0.004 and kl(q) < kl(b)
    assert (q - ref).abs().max() < (b - ref).abs().max()
    prompt = [[1, 504, 3458, 282, 4649, 314]]
    assert generate(quant, prompt, max_new_tokens=12) == generate(fp32, prompt, max_new_tokens=12)
