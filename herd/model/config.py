"""Model shapes, named presets, and the accounting that follows from a shape.

Shapes for 8B/70B/405B are the paper's Table 3 [P §3.2]; the FFN size rule, RMSNorm eps and the
3.1 RoPE scaling constants come from Meta's reference code (llama-models `model.py`, `args.py`).
1B and 3B are the Llama 3.2 shapes (tied embeddings, RoPE scale factor 32).
"""

from __future__ import annotations

import difflib
import math
from dataclasses import dataclass, field, replace
from typing import Literal


@dataclass(frozen=True)
class RopeScaling:
    """Llama 3.1 RoPE frequency scaling (llama-models `apply_scaling`).

    High-frequency pairs (wavelength < original_max_seq_len / high_freq_factor) are kept, low-frequency
    pairs (wavelength > original_max_seq_len / low_freq_factor) are divided by `factor`, and those in
    between are blended linearly in 1/wavelength.
    """

    factor: float = 8.0
    low_freq_factor: float = 1.0
    high_freq_factor: float = 4.0
    original_max_seq_len: int = 8192


@dataclass(frozen=True)
class ModelConfig:
    dim: int = 4096
    n_layers: int = 32
    n_heads: int = 32
    n_kv_heads: int = 8
    vocab_size: int = 128_256  # 128,000 BPE ranks + 256 special tokens [P §3.2, Table 3 note]
    ffn_dim: int | None = None  # None: derive with Meta's rule from the two fields below
    ffn_dim_multiplier: float | None = 1.3
    multiple_of: int = 1024
    norm_eps: float = 1e-5
    rope_theta: float = 500_000.0  # [P §3.2]
    rope_scaling: RopeScaling | None = field(default_factory=RopeScaling)
    max_seq_len: int = 131_072
    tie_embeddings: bool = False
    # "auto": flex_attention for document masks on CUDA (fused, no T×T mask), SDPA elsewhere.
    # flex_attention has no CPU backward in torch 2.11-2.13, so CPU always trains with SDPA.
    attn_impl: Literal["auto", "sdpa", "flex"] = "auto"

    def __post_init__(self) -> None:
        if self.dim % self.n_heads:
            raise ValueError(f"model: dim {self.dim} is not divisible by n_heads {self.n_heads}")
        if self.n_heads % self.n_kv_heads:
            raise ValueError(f"model: n_heads {self.n_heads} is not divisible by n_kv_heads {self.n_kv_heads}")
        if self.head_dim % 2:
            raise ValueError(f"model: head_dim {self.head_dim} must be even for RoPE")

    @property
    def head_dim(self) -> int:
        return self.dim // self.n_heads

    @property
    def hidden_dim(self) -> int:
        """SwiGLU hidden size: explicit `ffn_dim`, else Meta's rule (reproduces 14,336 / 28,672 / 53,248)."""
        if self.ffn_dim is not None:
            return self.ffn_dim
        h = int(2 * (4 * self.dim) / 3)
        if self.ffn_dim_multiplier is not None:
            h = int(self.ffn_dim_multiplier * h)
        return self.multiple_of * math.ceil(h / self.multiple_of)


_LLAMA32_ROPE = RopeScaling(factor=32.0)

PRESETS: dict[str, ModelConfig] = {
    "debug": ModelConfig(
        dim=64,
        n_layers=2,
        n_heads=4,
        n_kv_heads=2,
        vocab_size=512,
        ffn_dim=192,
        max_seq_len=2048,
        rope_scaling=None,
    ),
    "1B": ModelConfig(
        dim=2048,
        n_layers=16,
        n_heads=32,
        n_kv_heads=8,
        ffn_dim_multiplier=1.5,
        multiple_of=256,
        tie_embeddings=True,
        rope_scaling=_LLAMA32_ROPE,
    ),
    "3B": ModelConfig(
        dim=3072,
        n_layers=28,
        n_heads=24,
        n_kv_heads=8,
        ffn_dim_multiplier=1.0,
        multiple_of=256,
        tie_embeddings=True,
        rope_scaling=_LLAMA32_ROPE,
    ),
    "8B": ModelConfig(dim=4096, n_layers=32, n_heads=32, n_kv_heads=8, ffn_dim_multiplier=1.3, multiple_of=1024),
    "70B": ModelConfig(dim=8192, n_layers=80, n_heads=64, n_kv_heads=8, ffn_dim_multiplier=1.3, multiple_of=4096),
    "405B": ModelConfig(dim=16384, n_layers=126, n_heads=128, n_kv_heads=8, ffn_dim_multiplier=1.2, multiple_of=4096),
}


def get_preset(name: str, **overrides: object) -> ModelConfig:
    """A preset by name, with optional field overrides; an unknown name names the nearest preset."""
    if name not in PRESETS:
        lower = {p.lower(): p for p in PRESETS}
        near = difflib.get_close_matches(name.lower(), lower, n=1)
        hint = f" (did you mean '{lower[near[0]]}'?)" if near else ""
        raise ValueError(f"unknown model preset '{name}'{hint}; presets: {', '.join(PRESETS)}")
    return replace(PRESETS[name], **overrides) if overrides else PRESETS[name]


# ---------------------------------------------------------------------------------------------------
# Accounting


def param_count(cfg: ModelConfig, embeddings: bool = True) -> int:
    """Exact parameter count (no biases; two RMSNorm weights per layer plus the final norm)."""
    d, kv = cfg.dim, cfg.n_kv_heads * cfg.head_dim
    attn = d * d * 2 + d * kv * 2  # wq, wo; wk, wv
    ffn = 3 * d * cfg.hidden_dim  # w1, w2, w3
    per_layer = attn + ffn + 2 * d
    n = cfg.n_layers * per_layer + d
    if embeddings:
        n += cfg.vocab_size * d * (1 if cfg.tie_embeddings else 2)
    return n


def flops_per_token(cfg: ModelConfig, seq_len: int, causal: bool = True) -> float:
    """Training FLOPs per token: 6·N + 6·L·T·d_attn (forward + backward = 3 × forward).

    N counts every weight that takes part in a matmul: all non-embedding weights plus the output
    projection (the input embedding is a lookup, not a matmul). The attention term is the two
    T×T matmuls (QKᵀ and AV) per layer: 2 matmuls × 2 FLOPs × T × (n_heads·head_dim) per token
    forward, i.e. 12·L·T·d over forward + backward, halved when causal because only the lower
    triangle is computed by a fused kernel. This is the PaLM/Chinchilla accounting used for MFU.
    """
    n_matmul = param_count(cfg, embeddings=False) + cfg.vocab_size * cfg.dim
    attn = 12 * cfg.n_layers * seq_len * cfg.n_heads * cfg.head_dim
    return 6 * n_matmul + (attn / 2 if causal else attn)


def kv_cache_bytes_per_token(cfg: ModelConfig, bytes_per_value: int = 2) -> int:
    """K and V for every layer: 2 · L · n_kv_heads · head_dim · bytes (bf16: 128 KiB for 8B)."""
    return 2 * cfg.n_layers * cfg.n_kv_heads * cfg.head_dim * bytes_per_value


def training_memory_bytes(
    cfg: ModelConfig,
    batch_tokens: int,
    shards: int = 1,
    activation_checkpointing: bool = False,
    param_bytes: int = 2,
) -> dict[str, float]:
    """Rough per-device training memory for mixed precision AdamW, parameters sharded `shards` ways.

    Weights in `param_bytes` (bf16 compute copy), fp32 master weights, fp32 gradients and two fp32
    Adam moments are sharded (FSDP); activations are per device. Activations are counted tensor by
    tensor for a Llama block in bf16 with fused attention (no T×T matrix) and no dropout, per token and
    layer: the two norms' inputs and outputs (8·d), q and the attention output (4·d), k and v (4·kv),
    w1 and w3 outputs (4·H) and the SwiGLU product fed to w2 (2·H): 12·d + 4·kv + 6·H bytes. (Korthikanti
    et al.'s 34·d is for a GPT block whose 4·d MLP, dropout masks and GeLU input it already includes.)
    With full activation checkpointing only each layer's input (2·d bytes) is kept, plus one layer's
    worth during recomputation.
    """
    n = param_count(cfg)
    weights = n * param_bytes / shards
    optimizer = n * (4 + 4 + 4) / shards  # fp32 master + Adam m and v
    grads = n * 4 / shards
    per_layer_token = 12 * cfg.dim + 4 * cfg.n_kv_heads * cfg.head_dim + 6 * cfg.hidden_dim
    if activation_checkpointing:
        acts = batch_tokens * (cfg.n_layers * 2 * cfg.dim + per_layer_token)
    else:
        acts = batch_tokens * cfg.n_layers * per_layer_token
    logits = batch_tokens * cfg.vocab_size * (2 + 4)  # bf16 logits + fp32 for the loss
    total = weights + optimizer + grads + acts + logits
    return {
        "weights": weights,
        "optimizer": optimizer,
        "gradients": grads,
        "activations": acts,
        "logits": logits,
        "total": total,
    }
