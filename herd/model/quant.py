"""Weight-only quantized linear layers for generation on CPU: a GGUF model runs in its own precision.

llama.cpp's Q4_0/Q4_1 blocks (32 weights along the input dimension, one fp16 scale, for Q4_1 also an fp16
minimum) map exactly onto torch's grouped int4 format, whose dequantized weight is (q − 8)·scale + zero
for 4-bit codes q in 0..15 with a (scale, zero) pair per group of 32: Q4_0 (w = (q − 8)·d) is scale d,
zero 0; Q4_1 (w = q·d + m) is scale d, zero m + 8d. Q8_0 (int8 codes, one scale per 32) is computed group
by group with torch's per-channel int8 kernel, each group's partial product summed in fp32. Either way the
matmul uses exactly the file's weights.

The kernels are torch's CPU weight-only ones (`_weight_int4pack_mm_for_cpu`, `_weight_int8pack_mm`). On
this project's CPUs (AVX-512) they are fast only with bf16 activations — with fp32 activations the int4
kernel took 3.1 ms for a 1536×576 matmul that fp32 `F.linear` does in 0.14 ms, and 0.10 ms with bf16 — so
the layers compute in bf16 and return the caller's dtype: like llama.cpp, which quantizes activations for
its dot products, the weights are exact and the activations rounded. Elsewhere (GPU) the layers compute
with their dequantized weight.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn


class Int4Linear(nn.Module):
    """y = x Wᵀ with W stored as 4-bit codes, a (scale, zero) pair per `group_size` inputs of each row."""

    def __init__(self, codes: Tensor, scale: Tensor, zero: Tensor, group_size: int = 32) -> None:
        """codes (N, K) integers 0..15; scale and zero (N, K / group_size), any float dtype."""
        super().__init__()
        n, k = codes.shape
        if k % group_size or scale.shape != (n, k // group_size) or zero.shape != scale.shape:
            raise ValueError(f"int4 weight {tuple(codes.shape)}: scale/zero must be (N, K/{group_size})")
        self.in_features, self.out_features, self.group_size = k, n, group_size
        self.register_buffer("packed", torch.ops.aten._convert_weight_to_int4pack_for_cpu(codes.to(torch.int32), 1))
        # The kernel's layout: (K/group, N, 2) with scale and zero last.
        self.register_buffer("scales_zeros", torch.stack([scale.T, zero.T], dim=-1).float().contiguous())

    def forward(self, x: Tensor) -> Tensor:
        flat = x.reshape(-1, self.in_features)
        if flat.device.type != "cpu":
            return nn.functional.linear(x, self.dequantized().to(x.device, x.dtype))
        sz = self.scales_zeros.to(torch.bfloat16)
        xb = flat.to(torch.bfloat16).contiguous()
        y = torch.ops.aten._weight_int4pack_mm_for_cpu(xb, self.packed, self.group_size, sz)
        return y.to(x.dtype).reshape(*x.shape[:-1], self.out_features)

    def dequantized(self) -> Tensor:
        """The weight (N, K): (q − 8)·scale + zero, unpacked by the kernel itself (an identity times W in
        fp32, the kernel's exact path), so it is the weight the bf16 path multiplies with."""
        eye = torch.eye(self.in_features, dtype=torch.float32)
        sz = self.scales_zeros
        return torch.ops.aten._weight_int4pack_mm_for_cpu(eye, self.packed, self.group_size, sz).T.contiguous()


class Int8Linear(nn.Module):
    """y = x Wᵀ with W stored as int8 codes and one scale per `group_size` inputs of each row (Q8_0)."""

    def __init__(self, codes: Tensor, scale: Tensor, group_size: int = 32) -> None:
        """codes (N, K) integers in −127..127; scale (N, K / group_size)."""
        super().__init__()
        n, k = codes.shape
        if k % group_size or scale.shape != (n, k // group_size):
            raise ValueError(f"int8 weight {tuple(codes.shape)}: scale must be (N, K/{group_size})")
        self.in_features, self.out_features, self.group_size = k, n, group_size
        groups = codes.to(torch.int8).reshape(n, k // group_size, group_size).transpose(0, 1)
        self.register_buffer("codes", groups.contiguous())  # (G, N, group): each group's rows contiguous
        self.register_buffer("scale", scale.T.float().contiguous())  # (G, N)

    def forward(self, x: Tensor) -> Tensor:
        flat = x.reshape(-1, self.in_features)
        if flat.device.type != "cpu":
            return nn.functional.linear(x, self.dequantized().to(x.device, x.dtype))
        xb, scale = flat.to(torch.bfloat16), self.scale.to(torch.bfloat16)
        g = self.group_size
        y = torch.zeros(flat.shape[0], self.out_features, dtype=torch.float32)
        for i in range(self.codes.shape[0]):
            y += torch.ops.aten._weight_int8pack_mm(xb[:, i * g : (i + 1) * g].contiguous(), self.codes[i], scale[i])
        return y.to(x.dtype).reshape(*x.shape[:-1], self.out_features)

    def dequantized(self) -> Tensor:
        w = self.codes.float() * self.scale[..., None]  # (G, N, group)
        return w.transpose(0, 1).reshape(self.out_features, self.in_features)


def quantized_bytes(module: nn.Module) -> int:
    """Bytes of the parameters and buffers a model holds (what quantization saves)."""
    tensors = [*module.parameters(), *module.buffers()]
    return sum(t.numel() * t.element_size() for t in tensors)
