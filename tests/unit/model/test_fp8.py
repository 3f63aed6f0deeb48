"""FP8 row-wise inference [P §6.2]: scaled-mm equals the written-out fp8 computation, the rules of Meta's
reference (FFN only, first and last blocks skipped), and the 1200 cap on a planted high-magnitude row."""

from __future__ import annotations

import copy

import torch

from herd.model import build_model
from herd.model.fp8 import ACTIVATION_SCALE_UB, FP8_MAX, Fp8Linear, quantize_fp8, quantize_rows
from tests.helpers import tiny_config


def test_row_quantization_error_is_within_e4m3_precision():
    x = torch.randn(8, 256) * torch.logspace(-2, 2, 8)[:, None]  # rows of very different magnitude
    codes, scale = quantize_rows(x)
    assert codes.dtype == torch.float8_e4m3fn and scale.shape == (8, 1)
    assert torch.allclose(codes.float().abs().amax(-1), torch.full((8,), FP8_MAX))  # each row uses the range
    back = codes.float() * scale
    big = x.abs() > scale * 2**-6  # normal fp8 numbers: 3 mantissa bits, relative error ≤ 2^-4
    assert ((back - x).abs()[big] <= x.abs()[big] * 2**-4 + 1e-12).all()


def test_scaled_mm_equals_the_written_out_computation():
    torch.manual_seed(0)
    layer = Fp8Linear(torch.randn(48, 64))
    x = torch.randn(5, 7, 64)
    torch.testing.assert_close(layer(x), layer.reference(x), rtol=1e-5, atol=1e-5)
    exact = x @ (layer.weight.float() * layer.scale).T  # the fp8 weights, unquantized activations
    assert (layer(x) - exact).abs().max() < 0.1 * exact.abs().max()


def test_the_cap_keeps_a_row_with_one_huge_activation_usable():
    """A token whose row holds one activation of 1e7: scaled by that max, its ordinary values (≈1) fall below
    fp8's smallest step and vanish; capped at 1200, they survive and only the outlier saturates."""
    torch.manual_seed(0)
    w = torch.randn(16, 64)
    w[:, 0] = 0.0  # the outlier's column does not contribute: the right answer ignores it
    x = torch.randn(1, 64)
    x[0, 0] = 1e7
    want = x @ w.T
    capped, uncapped = Fp8Linear(w, ACTIVATION_SCALE_UB), Fp8Linear(w, None)
    assert (uncapped(x) - want).abs().max() > 0.9 * want.abs().max()  # the row's values flushed to 0
    assert (capped(x) - want).abs().max() < 0.1 * want.abs().max()


def test_only_middle_feed_forward_layers_are_quantized():
    model = build_model(tiny_config(n_layers=4), seed=0).eval()
    fp8 = quantize_fp8(copy.deepcopy(model))
    kinds = {
        (i, name): type(getattr(b.feed_forward, name)).__name__
        for i, b in fp8.layers.items()
        for name in ("w1", "w2", "w3")
    }
    assert {k for k, v in kinds.items() if v == "Fp8Linear"} == {(i, n) for i in ("1", "2") for n in ("w1", "w2", "w3")}
    assert all(type(m).__name__ != "Fp8Linear" for b in fp8.layers.values() for m in b.attention.modules())
    x = torch.randint(0, model.cfg.vocab_size, (2, 16))
    with torch.no_grad():
        ref, out = torch.log_softmax(model(x), -1), torch.log_softmax(fp8(x), -1)
    assert float((ref.exp() * (ref - out)).sum(-1).mean()) < 1e-3
