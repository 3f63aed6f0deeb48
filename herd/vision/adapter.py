"""Gated cross-attention adapters on a frozen herd Llama: the vision-language model [P §7.1].

`VisionLanguageModel` holds the image encoder, a projection of its features to the text width, the
text `Transformer` (unchanged, frozen by `freeze_text`), 8 learnable token embeddings after the text
vocabulary (the first is <|image|>), and cross-attention blocks keyed by the self-attention layer they
run before. Each block is pre-norm GQA cross-attention (queries from text, keys/values from the image
features, per-head RMSNorm on q and k) and a SwiGLU, each branch scaled by tanh of a gate that starts
at 0: with every gate at 0 the text logits equal the text-only model's exactly (tested).

Parity with transformers' MllamaForConditionalGeneration is tested after an HF → herd → HF round trip
(herd.vision.convert).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from herd.model.config import ModelConfig
from herd.model.layers import AttentionKernel, FeedForward, RMSNorm, rope_cos_sin
from herd.model.transformer import Transformer
from herd.vision.config import VisionConfig
from herd.vision.encoder import ImageEncoder


class CrossAttention(nn.Module):
    """GQA from text queries to image keys/values; no RoPE (image tokens carry their own positions)."""

    def __init__(self, cfg: ModelConfig) -> None:
        super().__init__()
        self.head_dim = cfg.head_dim
        self.wq = nn.Linear(cfg.dim, cfg.n_heads * cfg.head_dim, bias=False)
        self.wk = nn.Linear(cfg.dim, cfg.n_kv_heads * cfg.head_dim, bias=False)
        self.wv = nn.Linear(cfg.dim, cfg.n_kv_heads * cfg.head_dim, bias=False)
        self.wo = nn.Linear(cfg.n_heads * cfg.head_dim, cfg.dim, bias=False)
        self.q_norm = RMSNorm(cfg.head_dim, cfg.norm_eps)
        self.k_norm = RMSNorm(cfg.head_dim, cfg.norm_eps)

    def forward(self, x: Tensor, image: Tensor, mask: Tensor | None) -> Tensor:
        """x (B, T, dim) text; image (B, S, dim) projected features; mask additive (B, 1, T, S)."""
        B, T, _ = x.shape
        q = self.q_norm(self.wq(x).view(B, T, -1, self.head_dim).transpose(1, 2))  # (B, H, T, Dh)
        k = self.k_norm(self.wk(image).view(B, image.shape[1], -1, self.head_dim).transpose(1, 2))  # (B, Hkv, S, Dh)
        v = self.wv(image).view(B, image.shape[1], -1, self.head_dim).transpose(1, 2)
        out = F.scaled_dot_product_attention(q, k, v, attn_mask=mask, enable_gqa=True)
        return self.wo(out.transpose(1, 2).reshape(B, T, -1))


class CrossAttentionBlock(nn.Module):
    """h = x + tanh(g_attn)·xattn(norm(x)); out = h + tanh(g_ffwd)·row·ffn(norm(h)). `row` zeroes the
    feed-forward branch for text tokens that may see no image (as the released model does)."""

    def __init__(self, cfg: ModelConfig) -> None:
        super().__init__()
        self.attention = CrossAttention(cfg)
        self.attention_norm = RMSNorm(cfg.dim, cfg.norm_eps)
        self.gate_attn = nn.Parameter(torch.zeros(1))
        self.feed_forward = FeedForward(cfg.dim, cfg.hidden_dim)
        self.ffn_norm = RMSNorm(cfg.dim, cfg.norm_eps)
        self.gate_ffwd = nn.Parameter(torch.zeros(1))

    def forward(self, x: Tensor, image: Tensor, mask: Tensor | None, row: Tensor | None) -> Tensor:
        h = x + self.gate_attn.tanh() * self.attention(self.attention_norm(x), image, mask)
        f = self.feed_forward(self.ffn_norm(h))
        if row is not None:
            f = row * f  # (B, T, 1)
        return h + self.gate_ffwd.tanh() * f


class VisionLanguageModel(nn.Module):
    def __init__(self, cfg: VisionConfig, text: Transformer | None = None) -> None:
        super().__init__()
        self.cfg = cfg
        self.encoder = ImageEncoder(cfg.encoder)
        self.vision_projection = nn.Linear(cfg.encoder.output_dim, cfg.text.dim)
        self.text = Transformer(cfg.text) if text is None else text
        self.learnable_embedding = nn.Embedding(cfg.n_extra_tokens, cfg.text.dim)
        self.cross_layers = nn.ModuleDict({str(k): CrossAttentionBlock(cfg.text) for k in cfg.cross_layers})

    @torch.no_grad()
    def init_adapter(self, seed: int = 0, std: float = 0.02) -> None:
        """Initialize everything but the text model: N(0, std) weights, unit norms, gates at 0."""
        self.encoder.init_weights(seed, std)
        g = torch.Generator(device=self.vision_projection.weight.device).manual_seed(seed + 1)
        self.vision_projection.weight.normal_(0.0, std, generator=g)
        self.vision_projection.bias.zero_()
        self.learnable_embedding.weight.normal_(0.0, std, generator=g)
        for name, p in self.cross_layers.named_parameters():
            if "gate" in name:
                p.zero_()
            elif "norm" in name:
                p.fill_(1.0)
            else:
                p.normal_(0.0, std, generator=g)

    def freeze_text(self) -> None:
        """The language model stays frozen [P §7.4]; only encoder, projection and adapters train."""
        self.text.requires_grad_(False)

    def adapter_parameters(self) -> list[nn.Parameter]:
        return [p for n, p in self.named_parameters() if not n.startswith("text.") and p.requires_grad]

    def encode_images(self, pixels: Tensor, aspect_ratio_ids: Tensor, aspect_ratio_mask: Tensor) -> Tensor:
        """pixels (B, M, tiles, C, H, W) → projected image tokens (B, M·tiles·P, dim)."""
        feats = self.encoder(pixels, aspect_ratio_ids, aspect_ratio_mask)  # (B, M, tiles, P, out)
        return self.vision_projection(feats).flatten(1, 3)

    def embed(self, tokens: Tensor) -> Tensor:
        """Text ids through the (frozen) text table; ids ≥ vocab_size through the learnable rows."""
        V = self.cfg.text.vocab_size
        extra = tokens >= V
        h = self.text.tok_embeddings(tokens.clamp(max=V - 1))
        if extra.any():
            h = torch.where(extra[..., None], self.learnable_embedding((tokens - V).clamp(min=0)), h)
        return h

    def forward(
        self,
        tokens: Tensor,
        image: Tensor | None = None,
        cross_mask: Tensor | None = None,
        return_hidden: bool = False,
    ) -> Tensor:
        """tokens (B, T) → logits (B, T, V) (or final hidden states). `image`: `encode_images` output;
        `cross_mask` (B, T, M, tiles) 1 where a text token may see an image tile (herd.vision.tiling).
        Without an image the cross-attention blocks are skipped: the text model alone."""
        text = self.text
        h = self.embed(tokens)  # (B, T, dim)
        cos, sin = rope_cos_sin(text.inv_freq, torch.arange(tokens.shape[1], device=tokens.device))
        attention = AttentionKernel()
        mask, row = (None, None)
        if image is not None and cross_mask is not None:
            mask, row = cross_attention_bias(cross_mask, image.shape[1] // cross_mask[0, 0].numel(), h.dtype)
        for i, block in text.layers.items():
            if image is not None and i in self.cross_layers:
                h = self.cross_layers[i](h, image, mask, row)
            h = block(h, cos, sin, attention)
        h = text.norm(h)
        if return_hidden:
            return h
        return F.linear(h, text.output_weight())


def cross_attention_bias(cross_mask: Tensor, n_patches: int, dtype: torch.dtype) -> tuple[Tensor, Tensor]:
    """(B, T, M, tiles) 0/1 → additive bias (B, 1, T, M·tiles·P) and row mask (B, T, 1).

    A text row that may see no tile gets an all-zero bias (attends evenly, finite) and row 0, which the
    blocks use to drop their feed-forward branch, as in the released model.
    """
    B, T = cross_mask.shape[:2]
    allowed = cross_mask.repeat_interleave(n_patches, dim=3).reshape(B, T, -1).to(torch.bool)
    row = allowed.any(-1, keepdim=True)
    bias = torch.zeros(allowed.shape, dtype=dtype, device=cross_mask.device)
    bias = bias.masked_fill(~allowed & row, torch.finfo(dtype).min)
    return bias[:, None], row.to(dtype)
