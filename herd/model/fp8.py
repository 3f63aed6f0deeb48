"""FP8 row-wise quantization for inference [P §6.2], following Meta's reference rules (llama-models'
`convert_to_fp8_quantized_model`):

- only the feed-forward weights (w1, w3, w2) of each block are quantized; attention is not (the paper:
  quantizing attention hurt quality for little gain);
- the first and last transformer blocks are left in high precision;
- weights are scaled per output row and activations per token (row), both to `float8_e4m3fn`
  (max 448), the activation scale computed dynamically from each row's max |x|;
- that max is capped at 1200 before the scale is computed, so one token with an enormous activation (the
  paper saw them corrupt outputs) is clipped instead of crushing its row's other values to zero.

The matmul is torch's `_scaled_mm` (fp8 × fp8 → the activation dtype, per-row and per-column scales),
which runs on CUDA (H100) and on CPU; `Fp8Linear.reference` is the same computation written out in fp32
for tests.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from herd.model.transformer import Transformer

FP8 = torch.float8_e4m3fn
FP8_MAX = float(torch.finfo(FP8).max)  # 448
ACTIVATION_SCALE_UB = 1200.0  # upper bound on a row's dynamic activation max [P §6.2]


def quantize_rows(x: Tensor, scale_ub: float | None = None) -> tuple[Tensor, Tensor]:
    """(fp8 codes, fp32 scale (rows, 1)) with x ≈ codes · scale; a row's max |x| is capped at `scale_ub`
    first (values beyond it saturate at ±448 · scale)."""
    amax = x.abs().amax(dim=-1, keepdim=True).float()
    if scale_ub is not None:
        amax = amax.clamp(max=scale_ub)
    scale = amax.clamp(min=1e-12) / FP8_MAX
    codes = (x.float() / scale).clamp(-FP8_MAX, FP8_MAX).to(FP8)
    return codes, scale


class Fp8Linear(nn.Module):
    """y = x Wᵀ in fp8: W per output row, x per token, both scaled back after the fp8 matmul."""

    def __init__(self, weight: Tensor, scale_ub: float | None = ACTIVATION_SCALE_UB) -> None:
        super().__init__()
        codes, scale = quantize_rows(weight.detach())
        self.register_buffer("weight", codes)  # (N, K) float8_e4m3fn
        self.register_buffer("scale", scale)  # (N, 1) fp32
        self.scale_ub = scale_ub
        self.out_features, self.in_features = codes.shape

    def forward(self, x: Tensor) -> Tensor:
        flat = x.reshape(-1, self.in_features)
        xq, xs = quantize_rows(flat, self.scale_ub)
        y = torch._scaled_mm(xq, self.weight.T, scale_a=xs, scale_b=self.scale.T, out_dtype=x.dtype)
        return y.reshape(*x.shape[:-1], self.out_features)

    def reference(self, x: Tensor) -> Tensor:
        """The same fp8 computation dequantized and multiplied in fp32 (for tests)."""
        xq, xs = quantize_rows(x.reshape(-1, self.in_features), self.scale_ub)
        y = (xq.float() * xs) @ (self.weight.float() * self.scale).T
        return y.reshape(*x.shape[:-1], self.out_features)


def quantize_fp8(
    model: Transformer, scale_ub: float | None = ACTIVATION_SCALE_UB, skip_ends: bool = True
) -> Transformer:
    """Swap the feed-forward linears of every block (but the first and last when `skip_ends`) for
    Fp8Linear, in place; returns the model. For inference: the fp8 codes hold no gradient."""
    n = model.cfg.n_layers
    for i, block in model.layers.items():
        if skip_ends and int(i) in (0, n - 1):
            continue
        ffn = block.feed_forward
        for name in ("w1", "w3", "w2"):
            setattr(ffn, name, Fp8Linear(getattr(ffn, name).weight, scale_ub))
    return model
