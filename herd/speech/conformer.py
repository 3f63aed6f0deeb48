"""The speech encoder: a Conformer over 40 ms frames [P §8.1].

Each block is Gulati et al.'s Macaron layout: half-step FFN → rotary multi-head self-attention →
convolution module (pointwise + GLU, depthwise kernel 7, BatchNorm, SiLU, pointwise) → half-step FFN →
LayerNorm. The paper's encoder has 24 layers, d = 1536, FFNs of width 4096, kernel 7 and 24 rotary heads
(about 1B parameters); `PRESETS` names it with smaller shapes for CPU work.

Where the rotation goes is a setting: `rope="qk"` rotates the projected queries and keys (RoFormer, as
the Llama LM does, herd.model.layers.apply_rope); `rope="input"` rotates the block's input before the Q/K
projections, as Meta's fairseq Conformer (wav2vec2-conformer, SeamlessM4T) does. The paper does not say
which; the block's parity test against transformers' Wav2Vec2-Conformer uses "input".
"""

from __future__ import annotations

import difflib
from dataclasses import dataclass, replace
from typing import Literal

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from herd.model.layers import apply_rope, rope_cos_sin, rope_inv_freq
from herd.speech.frontend import N_MELS, FrameStacker, normalize_features


@dataclass(frozen=True)
class ConformerConfig:
    dim: int = 1536
    n_layers: int = 24
    n_heads: int = 24
    ffn_dim: int = 4096
    conv_kernel: int = 7  # [P §8.1]
    n_mels: int = N_MELS
    stack: int = 4  # stride-4 stacking: 10 ms → 40 ms frames [P §8.1]
    rope_theta: float = 10_000.0
    rope: Literal["qk", "input"] = "qk"
    dropout: float = 0.0
    # Normalize each utterance's mel bins to zero mean, unit variance before stacking (as BEST-RQ's quantizer
    # input): loudness, voice and added noise shift whole bins. Off in the presets (parity with references) [D].
    utterance_norm: bool = False

    def __post_init__(self) -> None:
        if self.dim % self.n_heads or (self.dim // self.n_heads) % 2:
            raise ValueError(f"conformer: dim {self.dim} must split into {self.n_heads} heads of even size")
        if self.conv_kernel % 2 == 0:
            raise ValueError(f"conformer: conv_kernel {self.conv_kernel} must be odd ('same' padding)")

    @property
    def head_dim(self) -> int:
        return self.dim // self.n_heads


PRESETS: dict[str, ConformerConfig] = {
    "tiny": ConformerConfig(dim=96, n_layers=3, n_heads=4, ffn_dim=256),
    "small": ConformerConfig(dim=256, n_layers=8, n_heads=4, ffn_dim=1024),
    "base": ConformerConfig(dim=512, n_layers=12, n_heads=8, ffn_dim=2048),
    "1B": ConformerConfig(),  # [P §8.1]: 24 layers, d 1536, FFN 4096, 24 heads, kernel 7
}


def get_preset(name: str, **overrides: object) -> ConformerConfig:
    if name not in PRESETS:
        near = difflib.get_close_matches(name, PRESETS, n=1)
        hint = f" (did you mean '{near[0]}'?)" if near else ""
        raise ValueError(f"unknown conformer preset '{name}'{hint}; presets: {', '.join(PRESETS)}")
    return replace(PRESETS[name], **overrides) if overrides else PRESETS[name]


class FeedForward(nn.Module):
    """LayerNorm → Linear → SiLU → Linear, added at half weight (Macaron) by the block."""

    def __init__(self, dim: int, hidden: int, dropout: float) -> None:
        super().__init__()
        self.norm = nn.LayerNorm(dim)
        self.w1 = nn.Linear(dim, hidden)
        self.w2 = nn.Linear(hidden, dim)
        self.dropout = nn.Dropout(dropout)

    def forward(self, x: Tensor) -> Tensor:
        return self.dropout(self.w2(self.dropout(F.silu(self.w1(self.norm(x))))))


class SelfAttention(nn.Module):
    def __init__(self, cfg: ConformerConfig) -> None:
        super().__init__()
        self.cfg = cfg
        self.norm = nn.LayerNorm(cfg.dim)
        self.wq, self.wk = nn.Linear(cfg.dim, cfg.dim), nn.Linear(cfg.dim, cfg.dim)
        self.wv, self.wo = nn.Linear(cfg.dim, cfg.dim), nn.Linear(cfg.dim, cfg.dim)
        self.dropout = nn.Dropout(cfg.dropout)

    def forward(self, x: Tensor, cos: Tensor, sin: Tensor, mask: Tensor | None) -> Tensor:
        B, T, _ = x.shape
        Dh = self.cfg.head_dim
        h = self.norm(x)
        qk_in = h
        if self.cfg.rope == "input":  # fairseq's variant: rotate the input per head, then project
            qk_in = apply_rope(h.view(B, T, -1, Dh).transpose(1, 2), cos, sin).transpose(1, 2).reshape(B, T, -1)
        q = self.wq(qk_in).view(B, T, -1, Dh).transpose(1, 2)  # (B, H, T, Dh)
        k = self.wk(qk_in).view(B, T, -1, Dh).transpose(1, 2)
        v = self.wv(h).view(B, T, -1, Dh).transpose(1, 2)
        if self.cfg.rope == "qk":
            q, k = apply_rope(q, cos, sin), apply_rope(k, cos, sin)
        # mask (B, 1, 1, T): padded frames are never attended to (the encoder sees whole utterances).
        p = self.cfg.dropout if self.training else 0.0
        out = F.scaled_dot_product_attention(q, k, v, attn_mask=mask, dropout_p=p)  # (B, H, T, Dh)
        return self.dropout(self.wo(out.transpose(1, 2).reshape(B, T, -1)))


class ConvModule(nn.Module):
    """LayerNorm → pointwise conv (2d) + GLU → depthwise conv (kernel 7) → BatchNorm → SiLU → pointwise."""

    def __init__(self, cfg: ConformerConfig) -> None:
        super().__init__()
        d = cfg.dim
        self.norm = nn.LayerNorm(d)
        self.pointwise1 = nn.Conv1d(d, 2 * d, 1, bias=False)
        self.depthwise = nn.Conv1d(d, d, cfg.conv_kernel, padding=cfg.conv_kernel // 2, groups=d, bias=False)
        self.batch_norm = nn.BatchNorm1d(d)
        self.pointwise2 = nn.Conv1d(d, d, 1, bias=False)
        self.dropout = nn.Dropout(cfg.dropout)

    def forward(self, x: Tensor, keep: Tensor | None) -> Tensor:
        h = F.glu(self.pointwise1(self.norm(x).transpose(1, 2)), dim=1)  # (B, d, T)
        if keep is not None:  # padded frames must not leak into real ones through the kernel
            h = h * keep[:, None, :].to(h.dtype)
        h = self.pointwise2(F.silu(self.batch_norm(self.depthwise(h))))
        return self.dropout(h.transpose(1, 2))  # (B, T, d)


class ConformerBlock(nn.Module):
    def __init__(self, cfg: ConformerConfig) -> None:
        super().__init__()
        self.ffn1 = FeedForward(cfg.dim, cfg.ffn_dim, cfg.dropout)
        self.attention = SelfAttention(cfg)
        self.conv = ConvModule(cfg)
        self.ffn2 = FeedForward(cfg.dim, cfg.ffn_dim, cfg.dropout)
        self.final_norm = nn.LayerNorm(cfg.dim)

    def forward(self, x: Tensor, cos: Tensor, sin: Tensor, mask: Tensor | None = None,
                keep: Tensor | None = None) -> Tensor:  # fmt: skip
        x = x + 0.5 * self.ffn1(x)  # Macaron: two half-step FFNs around attention and convolution
        x = x + self.attention(x, cos, sin, mask)
        x = x + self.conv(x, keep)
        x = x + 0.5 * self.ffn2(x)
        return self.final_norm(x)


class ConformerEncoder(nn.Module):
    """Log-mel features (B, T, n_mels) → encodings (B, T // stack, dim), with per-utterance frame counts."""

    def __init__(self, cfg: ConformerConfig) -> None:
        super().__init__()
        self.cfg = cfg
        self.subsample = FrameStacker(cfg.n_mels, cfg.stack, cfg.dim)
        self.layers = nn.ModuleList(ConformerBlock(cfg) for _ in range(cfg.n_layers))
        self.register_buffer("inv_freq", rope_inv_freq(cfg.head_dim, cfg.rope_theta, None), persistent=False)

    def out_lengths(self, n_frames: Tensor) -> Tensor:
        return torch.div(n_frames, self.cfg.stack, rounding_mode="floor")

    def forward(self, feats: Tensor, n_frames: Tensor | None = None) -> tuple[Tensor, Tensor]:
        """feats (B, T, n_mels); n_frames (B,) real 10 ms frames per row (None: all). Returns (h, lengths)."""
        if self.cfg.utterance_norm:
            full = torch.full((feats.shape[0],), feats.shape[1], device=feats.device)
            feats = normalize_features(feats, full if n_frames is None else n_frames)
        h = self.subsample(feats)  # (B, T', dim), T' = T // stack
        B, T, _ = h.shape
        lengths = torch.full((B,), T, device=h.device) if n_frames is None else self.out_lengths(n_frames)
        keep = torch.arange(T, device=h.device)[None, :] < lengths[:, None]  # (B, T')
        mask = None if bool(keep.all()) else keep[:, None, None, :]
        cos, sin = rope_cos_sin(self.inv_freq, torch.arange(T, device=h.device))
        cos, sin = cos.to(h.dtype), sin.to(h.dtype)
        for layer in self.layers:
            h = layer(h, cos, sin, mask, keep if mask is not None else None)
        return h, lengths


def param_count(module: nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())
