"""The Llama 3 building blocks: RMSNorm, RoPE with 3.1 scaling, GQA attention, SwiGLU [P §3.2].

RoPE uses the half-split layout (rotate the first half of each head against the second), the layout of
HF-format checkpoints. Meta's consolidated checkpoints and GGUF files store Q/K rows for the
interleaved-pair layout; herd.model.convert permutes them on load, so one layout lives in the model.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from herd.model.config import ModelConfig, RopeScaling


class RMSNorm(nn.Module):
    def __init__(self, dim: int, eps: float = 1e-5) -> None:
        super().__init__()
        self.eps = eps
        self.weight = nn.Parameter(torch.ones(dim))

    def reset_parameters(self) -> None:
        nn.init.ones_(self.weight)

    def forward(self, x: Tensor) -> Tensor:
        # Normalize in fp32 even under bf16 autocast: the mean of squares loses precision in bf16.
        h = x.float()
        h = h * torch.rsqrt(h.pow(2).mean(-1, keepdim=True) + self.eps)
        return self.weight * h.to(x.dtype)


def rope_inv_freq(head_dim: int, theta: float, scaling: RopeScaling | None) -> Tensor:
    """Per-pair inverse frequencies θ^(-2i/d), rescaled as Llama 3.1 does when `scaling` is set."""
    inv_freq = 1.0 / (theta ** (torch.arange(0, head_dim, 2, dtype=torch.int64).float() / head_dim))
    if scaling is None:
        return inv_freq
    wavelen = 2 * math.pi / inv_freq
    low_wavelen = scaling.original_max_seq_len / scaling.low_freq_factor  # 8192: longer → divide by s
    high_wavelen = scaling.original_max_seq_len / scaling.high_freq_factor  # 2048: shorter → keep
    scaled = torch.where(wavelen > low_wavelen, inv_freq / scaling.factor, inv_freq)
    gamma = (scaling.original_max_seq_len / wavelen - scaling.low_freq_factor) / (
        scaling.high_freq_factor - scaling.low_freq_factor
    )
    blended = (1 - gamma) * scaled / scaling.factor + gamma * scaled
    medium = (wavelen >= high_wavelen) & (wavelen <= low_wavelen)
    return torch.where(medium, blended, scaled)


def rope_cos_sin(inv_freq: Tensor, positions: Tensor) -> tuple[Tensor, Tensor]:
    """cos/sin tables for integer positions [..., T] → [..., T, head_dim], computed in fp32."""
    with torch.autocast(device_type=positions.device.type, enabled=False):
        angles = positions.float()[..., None] * inv_freq.float()  # (..., T, Dh/2)
        angles = torch.cat((angles, angles), dim=-1)  # (..., T, Dh): half-split layout
        return angles.cos(), angles.sin()


def apply_rope(x: Tensor, cos: Tensor, sin: Tensor) -> Tensor:
    """Rotate x (B, H, T, Dh) by position; cos/sin broadcast as (T, Dh) or (B, 1, T, Dh)."""
    x1, x2 = x.chunk(2, dim=-1)
    rotated = torch.cat((-x2, x1), dim=-1)
    return (x * cos + rotated * sin).to(x.dtype)


class Attention(nn.Module):
    """Grouped-query attention: n_heads query heads share n_kv_heads K/V heads (8 in Llama 3)."""

    def __init__(self, cfg: ModelConfig, layer_id: int) -> None:
        super().__init__()
        self.layer_id = layer_id
        self.n_heads, self.n_kv_heads, self.head_dim = cfg.n_heads, cfg.n_kv_heads, cfg.head_dim
        self.wq = nn.Linear(cfg.dim, cfg.n_heads * cfg.head_dim, bias=False)
        self.wk = nn.Linear(cfg.dim, cfg.n_kv_heads * cfg.head_dim, bias=False)
        self.wv = nn.Linear(cfg.dim, cfg.n_kv_heads * cfg.head_dim, bias=False)
        self.wo = nn.Linear(cfg.n_heads * cfg.head_dim, cfg.dim, bias=False)

    def forward(self, x: Tensor, cos: Tensor, sin: Tensor, attention: AttentionKernel) -> Tensor:
        B, T, _ = x.shape
        # Head counts are inferred (-1): under tensor parallelism each rank holds a slice of the heads.
        q = self.wq(x).view(B, T, -1, self.head_dim).transpose(1, 2)  # (B, H, T, Dh)
        k = self.wk(x).view(B, T, -1, self.head_dim).transpose(1, 2)  # (B, Hkv, T, Dh)
        v = self.wv(x).view(B, T, -1, self.head_dim).transpose(1, 2)
        q, k = apply_rope(q, cos, sin), apply_rope(k, cos, sin)
        out = attention(q, k, v, self.layer_id)  # (B, H, T, Dh)
        return self.wo(out.transpose(1, 2).reshape(B, T, -1))


class FeedForward(nn.Module):
    """SwiGLU: w2(silu(w1 x) · w3 x), no biases."""

    def __init__(self, dim: int, hidden_dim: int) -> None:
        super().__init__()
        self.w1 = nn.Linear(dim, hidden_dim, bias=False)
        self.w2 = nn.Linear(hidden_dim, dim, bias=False)
        self.w3 = nn.Linear(dim, hidden_dim, bias=False)

    def forward(self, x: Tensor) -> Tensor:
        return self.w2(F.silu(self.w1(x)) * self.w3(x))


class TransformerBlock(nn.Module):
    """Pre-norm block: h = x + attn(norm(x)); out = h + ffn(norm(h))."""

    def __init__(self, cfg: ModelConfig, layer_id: int) -> None:
        super().__init__()
        self.attention = Attention(cfg, layer_id)
        self.feed_forward = FeedForward(cfg.dim, cfg.hidden_dim)
        self.attention_norm = RMSNorm(cfg.dim, cfg.norm_eps)
        self.ffn_norm = RMSNorm(cfg.dim, cfg.norm_eps)

    def forward(self, x: Tensor, cos: Tensor, sin: Tensor, attention: AttentionKernel) -> Tensor:
        h = x + self.attention(self.attention_norm(x), cos, sin, attention)
        return h + self.feed_forward(self.ffn_norm(h))


class AttentionKernel:
    """Attention itself, softmax(q·kᵀ/√Dh)·v over the keys each query may see. The caller builds one per
    forward from how its tokens are laid out (`document_causal`, a KV cache, context-parallel chunks) and
    every layer calls it; the model never decides.

    Which keys a query sees, cheapest first:
    - causal (the default): SDPA's is_causal, which skips the tiles above the diagonal and makes a
      1,024-token prefill 1.6× faster on CPU than the same mask passed explicitly;
    - everything (`causal=False`): one new token per row, unpadded, after a KV cache's filled slots;
    - `mask`, boolean (B, 1, T, S): document masks on CPU, padded/cached generation, reward rows;
    - `block_mask`, a flex_attention BlockMask: document masks on CUDA, never materializing T×T.
    Subclasses change where K/V come from: a KV cache (herd.model.cache), other context-parallel ranks.
    """

    def __init__(self, mask: Tensor | None = None, block_mask: object | None = None, causal: bool = True) -> None:
        self.mask, self.block_mask, self.causal = mask, block_mask, causal

    def __call__(self, q: Tensor, k: Tensor, v: Tensor, layer: int) -> Tensor:
        """q (B, H, T, Dh), k/v (B, Hkv, S, Dh) → (B, H, T, Dh). `layer` is the calling block's index:
        a KV cache keeps K/V per layer."""
        if self.block_mask is not None:
            return _flex_attention()(q, k, v, block_mask=self.block_mask, enable_gqa=True)
        if self.mask is None:
            return F.scaled_dot_product_attention(q, k, v, is_causal=self.causal, enable_gqa=True)
        return F.scaled_dot_product_attention(q, k, v, attn_mask=self.mask, enable_gqa=True)


def document_causal(doc_ids: Tensor, impl: str = "auto") -> tuple[Tensor, AttentionKernel]:
    """Positions and attention of packed sequences: a token sees only earlier tokens of its own document
    [P §3.2]. doc_ids (B, T); positions run on across documents (RoPE is relative). `impl` is
    ModelConfig.attn_impl: "auto" takes flex_attention on CUDA, SDPA with a dense mask elsewhere."""
    device = doc_ids.device
    if impl == "flex" and device.type == "cpu" and torch.is_grad_enabled():
        raise ValueError("attn_impl='flex' cannot train on CPU (flex_attention has no CPU backward)")
    positions = torch.arange(doc_ids.shape[1], device=device)
    if impl == "flex" or (impl == "auto" and device.type == "cuda"):
        return positions, AttentionKernel(block_mask=flex_document_mask(doc_ids))
    return positions, AttentionKernel(mask=document_mask(doc_ids))


def document_mask(doc_ids: Tensor) -> Tensor:
    """Block-causal mask (B, 1, T, T) from per-token document ids (B, T): same document and not ahead."""
    T = doc_ids.shape[-1]
    same_doc = doc_ids[:, :, None] == doc_ids[:, None, :]  # (B, T, T)
    causal = torch.ones(T, T, dtype=torch.bool, device=doc_ids.device).tril()
    return (same_doc & causal)[:, None]


def flex_document_mask(doc_ids: Tensor) -> object:
    """The same block-causal mask as a flex_attention BlockMask (sparse 128×128 tiles)."""
    from torch.nn.attention.flex_attention import create_block_mask

    B, T = doc_ids.shape

    def block_causal(b: Tensor, h: Tensor, q: Tensor, kv: Tensor) -> Tensor:
        return (doc_ids[b, q] == doc_ids[b, kv]) & (kv <= q)

    return create_block_mask(block_causal, B, None, T, T, device=doc_ids.device)


_FLEX = None


def _flex_attention():
    # Compiled once per process: uncompiled flex_attention is a slow reference loop.
    global _FLEX
    if _FLEX is None:
        from torch.nn.attention.flex_attention import flex_attention

        _FLEX = torch.compile(flex_attention, dynamic=False)
    return _FLEX
