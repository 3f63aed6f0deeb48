"""The image encoder: a ViT over image tiles, as in Llama 3.2 Vision [P §7.1].

Each image is resized onto a canvas of up to `max_num_tiles` square tiles (herd.vision.tiling). Every
tile is cut into patches (a stride-`patch_size` convolution), gets a class token, a positional embedding
and, through tanh-gated tables indexed by the image's aspect-ratio id, a per-tile embedding; the tiles
then run through the local stack separately. Features are tapped from intermediate layers [P §7.1:
"layers 4, 8, 16, 24 and 31"], a second stack of gated self-attention layers ("global", 8 in ViT-H/14)
sees all tiles of an image jointly, and the output per patch is the global output concatenated with the
taps (7,680 dims for ViT-H/14).

Parity with transformers' MllamaVisionModel is tested (tests/vision/test_parity.py), including two of
the released model's quirks: patch sequences are zero-padded to a multiple of 8, and the attention mask
blocks a position only when both the query and the key are padding.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from herd.vision.config import EncoderConfig


class EncoderAttention(nn.Module):
    """Multi-head self-attention without biases (every head has its own K/V in the encoder)."""

    def __init__(self, cfg: EncoderConfig) -> None:
        super().__init__()
        self.n_heads, self.head_dim = cfg.n_heads, cfg.dim // cfg.n_heads
        self.wq = nn.Linear(cfg.dim, cfg.dim, bias=False)
        self.wk = nn.Linear(cfg.dim, cfg.dim, bias=False)
        self.wv = nn.Linear(cfg.dim, cfg.dim, bias=False)
        self.wo = nn.Linear(cfg.dim, cfg.dim, bias=False)

    def forward(self, x: Tensor, mask: Tensor | None) -> Tensor:
        B, S, _ = x.shape
        q, k, v = (w(x).view(B, S, self.n_heads, self.head_dim).transpose(1, 2) for w in (self.wq, self.wk, self.wv))
        out = F.scaled_dot_product_attention(q, k, v, attn_mask=mask)  # (B, H, S, Dh)
        return self.wo(out.transpose(1, 2).reshape(B, S, -1))


class EncoderMLP(nn.Module):
    """Two biased linears around an exact GELU (the CLIP ViT MLP)."""

    def __init__(self, cfg: EncoderConfig) -> None:
        super().__init__()
        self.c_fc = nn.Linear(cfg.dim, cfg.ffn_dim)
        self.c_proj = nn.Linear(cfg.ffn_dim, cfg.dim)

    def forward(self, x: Tensor) -> Tensor:
        return self.c_proj(F.gelu(self.c_fc(x)))


class EncoderLayer(nn.Module):
    """Pre-norm ViT block; `gated` multiplies each branch by tanh of a learned scalar (global layers)."""

    def __init__(self, cfg: EncoderConfig, gated: bool = False) -> None:
        super().__init__()
        self.attention = EncoderAttention(cfg)
        self.feed_forward = EncoderMLP(cfg)
        self.attention_norm = nn.LayerNorm(cfg.dim, eps=cfg.norm_eps)
        self.ffn_norm = nn.LayerNorm(cfg.dim, eps=cfg.norm_eps)
        self.gated = gated
        if gated:
            # π/4 at construction as in the reference; init_weights draws them small instead.
            self.gate_attn = nn.Parameter(torch.full((1,), math.pi / 4))
            self.gate_ffn = nn.Parameter(torch.full((1,), math.pi / 4))

    def forward(self, x: Tensor, mask: Tensor | None) -> Tensor:
        a = self.attention(self.attention_norm(x), mask)
        h = x + (self.gate_attn.tanh() * a if self.gated else a)
        f = self.feed_forward(self.ffn_norm(h))
        return h + (self.gate_ffn.tanh() * f if self.gated else f)


class TileEmbedding(nn.Module):
    """One learned vector per (aspect ratio, tile index), added to every token of the tile, tanh-gated."""

    def __init__(self, cfg: EncoderConfig) -> None:
        super().__init__()
        self.max_num_tiles, self.dim = cfg.max_num_tiles, cfg.dim
        self.embedding = nn.Embedding(len(cfg.aspect_ratios) + 1, cfg.max_num_tiles * cfg.dim)  # id 0: padding
        self.gate = nn.Parameter(torch.zeros(1))

    def forward(self, x: Tensor, aspect_ratio_ids: Tensor) -> Tensor:
        """x (N, tiles, S, dim), aspect_ratio_ids (N,)."""
        e = self.embedding(aspect_ratio_ids).view(-1, self.max_num_tiles, 1, self.dim)
        return x + e * self.gate.tanh()


class GatedPositionalEmbedding(nn.Module):
    """A patch-position table shared by all tiles, blended by one gate with a per-(aspect ratio, tile,
    patch) table: (1 − tanh g)·pos + tanh g·tile_pos. The gate starts at 0 (tile-agnostic positions)."""

    def __init__(self, cfg: EncoderConfig) -> None:
        super().__init__()
        self.max_num_tiles, self.n_patches, self.dim = cfg.max_num_tiles, cfg.n_patches, cfg.dim
        self.embedding = nn.Parameter(torch.zeros(cfg.n_patches, cfg.dim))
        n_ids = len(cfg.aspect_ratios) + 1
        self.tile_embedding = nn.Embedding(n_ids, cfg.max_num_tiles * cfg.n_patches * cfg.dim)
        self.gate = nn.Parameter(torch.zeros(1))

    def forward(self, x: Tensor, aspect_ratio_ids: Tensor) -> Tensor:
        """x (N, tiles, P, dim), aspect_ratio_ids (N,)."""
        g = self.gate.tanh()
        x = x + (1 - g) * self.embedding.view(1, 1, self.n_patches, self.dim)
        tile = self.tile_embedding(aspect_ratio_ids).view(-1, self.max_num_tiles, self.n_patches, self.dim)
        return x + g * tile


class ImageEncoder(nn.Module):
    """ViT-H/14-style encoder over tiles: pixels (B, M, tiles, C, H, W) → features (B, M, tiles, P, out).

    B: batch, M: images per sample, P: patches + class token per tile, out: `cfg.output_dim`.
    """

    def __init__(self, cfg: EncoderConfig) -> None:
        super().__init__()
        self.cfg = cfg
        p = cfg.patch_size
        self.conv1 = nn.Conv2d(cfg.in_channels, cfg.dim, kernel_size=p, stride=p, bias=False)
        self.class_embedding = nn.Parameter(torch.zeros(cfg.dim))
        self.gated_positional_embedding = GatedPositionalEmbedding(cfg)
        self.pre_tile_pos_embed = TileEmbedding(cfg)
        self.post_tile_pos_embed = TileEmbedding(cfg)
        self.ln_pre = nn.LayerNorm(cfg.dim)
        self.ln_post = nn.LayerNorm(cfg.dim)
        self.transformer = nn.ModuleList(EncoderLayer(cfg) for _ in range(cfg.n_layers))
        self.global_transformer = nn.ModuleList(EncoderLayer(cfg, gated=True) for _ in range(cfg.n_global_layers))

    @torch.no_grad()
    def init_weights(self, seed: int = 0, std: float = 0.02) -> None:
        """N(0, std) linears and tables, zero biases, unit norms; embedding gates at 0 (the reference's
        init), global-layer gates drawn N(0, std) so the global stack starts near the identity."""
        g = torch.Generator(device=self.conv1.weight.device).manual_seed(seed)
        for name, p in self.named_parameters():
            leaf = name.rsplit(".", 1)[-1]
            if leaf == "gate":  # embedding gates; the global layers' gate_attn/gate_ffn are drawn below
                p.zero_()
            elif "norm" in name or name.startswith("ln_"):
                p.fill_(1.0 if leaf == "weight" else 0.0)
            elif leaf == "bias":
                p.zero_()
            else:
                p.normal_(0.0, std, generator=g)

    def forward(self, pixels: Tensor, aspect_ratio_ids: Tensor, aspect_ratio_mask: Tensor) -> Tensor:
        """pixels (B, M, tiles, C, H, W); aspect_ratio_ids (B, M), 0 for a padding image; aspect_ratio_mask
        (B, M, tiles), 1 for a real tile."""
        cfg = self.cfg
        B, M, T, C, H, W = pixels.shape
        N = B * M
        ar_ids = aspect_ratio_ids.reshape(N)
        x = self.conv1(pixels.reshape(N * T, C, H, W).to(self.conv1.weight.dtype))  # (N·T, dim, H/p, W/p)
        x = x.flatten(2).transpose(1, 2)  # (N·T, patches, dim)
        x = self.pre_tile_pos_embed(x.view(N, T, -1, cfg.dim), ar_ids)
        cls = self.class_embedding.expand(N * T, 1, cfg.dim)
        x = torch.cat([cls, x.reshape(N * T, -1, cfg.dim)], dim=1)  # (N·T, P, dim)
        P = x.shape[1]
        x = self.ln_pre(self.gated_positional_embedding(x.view(N, T, P, cfg.dim), ar_ids))
        pad = (8 - P % 8) % 8  # the reference pads each tile's sequence to a multiple of 8
        x = F.pad(x, (0, 0, 0, pad))  # (N, T, P + pad, dim)
        mask = encoder_mask(aspect_ratio_mask.reshape(N, T), P, P + pad, x.dtype)
        x = x.view(N, T * (P + pad), cfg.dim)
        taps = []
        for i, layer in enumerate(self.transformer):
            x = layer(x, mask)
            if i in cfg.taps:
                taps.append(x)
        x = self.ln_post(x)
        x = self.post_tile_pos_embed(x.view(N, T, P + pad, cfg.dim), ar_ids).view(N, T * (P + pad), cfg.dim)
        for layer in self.global_transformer:
            x = layer(x, mask)
        # Taps are interleaved feature-major ((dim, n_taps) flattened), the layout of the released weights.
        tapped = torch.stack(taps, dim=-1).flatten(-2)  # (N, T·(P+pad), dim·n_taps)
        out = torch.cat([x, tapped], dim=-1).view(N, T, P + pad, -1)[:, :, :P]
        return out.reshape(B, M, T, P, cfg.output_dim)


def encoder_mask(tile_mask: Tensor, n_real: int, n_padded: int, dtype: torch.dtype) -> Tensor:
    """Additive mask (N, 1, T·S, T·S) over an image's tiles, S = n_padded tokens per tile.

    A token is "padding" when its tile is a padding tile or it is one of the pad-to-8 tokens; like the
    released model (and so its weights), a position is blocked only when BOTH query and key are padding.
    """
    N, T = tile_mask.shape
    real = tile_mask.to(torch.bool)[:, :, None].expand(N, T, n_padded).clone()
    real[:, :, n_real:] = False
    pad = (~real).reshape(N, T * n_padded, 1).to(dtype)
    return (pad @ pad.transpose(1, 2) * torch.finfo(dtype).min)[:, None]
