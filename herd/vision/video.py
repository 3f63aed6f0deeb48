"""Video [P §7.2]: frames through the image encoder, a perceiver-resampler aggregator merging consecutive
frames, and gated video cross-attention blocks in the language model.

The paper samples up to 64 frames, encodes each with the image encoder, merges every 32 consecutive
frames (16 in pre-training) with a perceiver resampler — a fixed set of learned latent queries that
cross-attend to the frames' tokens — and inserts video cross-attention layers before every 4th image
cross-attention layer. The number of latents is not given in the paper; it is a config field here.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from herd.model.config import ModelConfig
from herd.model.layers import AttentionKernel, FeedForward, RMSNorm, rope_cos_sin
from herd.vision.adapter import CrossAttentionBlock, VisionLanguageModel


@dataclass(frozen=True)
class VideoConfig:
    aggregate: int = 32  # consecutive frames merged into one set of latents (16 in pre-training) [P §7.2]
    max_frames: int = 64  # [P §7.2]
    n_latents: int = 64  # herd's choice: the paper does not give it
    n_layers: int = 2  # resampler layers
    every: int = 4  # a video block before every 4th image cross-attention block [P §7.2]


class ResamplerLayer(nn.Module):
    """Latents attend to [frames' tokens; latents] (as in Flamingo's perceiver resampler), then a SwiGLU."""

    def __init__(self, cfg: ModelConfig) -> None:
        super().__init__()
        self.n_heads, self.head_dim = cfg.n_heads, cfg.head_dim
        self.norm_media, self.norm_latents = RMSNorm(cfg.dim, cfg.norm_eps), RMSNorm(cfg.dim, cfg.norm_eps)
        self.wq = nn.Linear(cfg.dim, cfg.dim, bias=False)
        self.wkv = nn.Linear(cfg.dim, 2 * cfg.dim, bias=False)
        self.wo = nn.Linear(cfg.dim, cfg.dim, bias=False)
        self.ffn_norm = RMSNorm(cfg.dim, cfg.norm_eps)
        self.feed_forward = FeedForward(cfg.dim, cfg.hidden_dim)

    def forward(self, media: Tensor, latents: Tensor) -> Tensor:
        """media (N, S, dim), latents (N, L, dim) → latents (N, L, dim)."""
        N, L, _ = latents.shape
        lat = self.norm_latents(latents)
        kv_in = torch.cat([self.norm_media(media), lat], dim=1)
        q = self.wq(lat).view(N, L, self.n_heads, self.head_dim).transpose(1, 2)
        k, v = self.wkv(kv_in).view(N, kv_in.shape[1], 2, self.n_heads, self.head_dim).permute(2, 0, 3, 1, 4)
        out = F.scaled_dot_product_attention(q, k, v).transpose(1, 2).reshape(N, L, -1)
        h = latents + self.wo(out)
        return h + self.feed_forward(self.ffn_norm(h))


class PerceiverResampler(nn.Module):
    """Frames (B, F, P, dim) → (B, F/aggregate, n_latents, dim): each chunk of consecutive frames becomes
    one set of latents; a learned per-frame time embedding makes the merge order-aware."""

    def __init__(self, cfg: ModelConfig, video: VideoConfig) -> None:
        super().__init__()
        self.aggregate = video.aggregate
        self.latents = nn.Parameter(torch.randn(video.n_latents, cfg.dim) * 0.02)
        self.time_embedding = nn.Parameter(torch.zeros(video.aggregate, 1, cfg.dim))
        self.layers = nn.ModuleList(ResamplerLayer(cfg) for _ in range(video.n_layers))
        self.norm = RMSNorm(cfg.dim, cfg.norm_eps)

    def forward(self, frames: Tensor) -> Tensor:
        B, Fr, P, D = frames.shape
        if Fr % self.aggregate:
            raise ValueError(f"video: {Fr} frames is not a multiple of aggregate={self.aggregate}")
        chunks = frames.view(B * Fr // self.aggregate, self.aggregate, P, D) + self.time_embedding
        media = chunks.flatten(1, 2)  # (N, aggregate·P, dim)
        latents = self.latents.expand(media.shape[0], -1, -1)
        for layer in self.layers:
            latents = layer(media, latents)
        return self.norm(latents).view(B, Fr // self.aggregate, -1, D)


class VideoLanguageModel(nn.Module):
    """A VisionLanguageModel plus the video aggregator and gated video cross-attention blocks."""

    def __init__(self, base: VisionLanguageModel, video: VideoConfig) -> None:
        super().__init__()
        self.base, self.video_cfg = base, video
        text = base.cfg.text
        self.aggregator = PerceiverResampler(text, video)
        image_layers = list(base.cfg.cross_layers)
        self.video_layers = nn.ModuleDict(
            {str(k): CrossAttentionBlock(text) for k in image_layers[:: video.every]}  # before every 4th
        )

    def encode_video(self, frames: Tensor) -> Tensor:
        """frames (B, F, C, H, W), one tile each → video tokens (B, F/aggregate · n_latents, dim)."""
        B, Fr = frames.shape[:2]
        ones = torch.ones(B * Fr, 1, dtype=torch.long, device=frames.device)
        per_frame = self.base.encode_images(frames.reshape(B * Fr, 1, 1, *frames.shape[2:]), ones, ones[:, :, None])
        return self.aggregator(per_frame.view(B, Fr, -1, per_frame.shape[-1])).flatten(1, 2)

    def forward(self, tokens: Tensor, video: Tensor | None = None, image: Tensor | None = None,
                cross_mask: Tensor | None = None) -> Tensor:  # fmt: skip
        """Logits (B, T, V); every text token sees the video (a video precedes the text)."""
        base, text = self.base, self.base.text
        h = base.embed(tokens)
        cos, sin = rope_cos_sin(text.inv_freq, torch.arange(tokens.shape[1], device=tokens.device))
        attention = AttentionKernel()
        from herd.vision.adapter import cross_attention_bias

        mask, row = (None, None)
        if image is not None and cross_mask is not None:
            mask, row = cross_attention_bias(cross_mask, image.shape[1] // cross_mask[0, 0].numel(), h.dtype)
        for i, block in text.layers.items():
            if video is not None and i in self.video_layers:
                h = self.video_layers[i](h, video, None, None)
            if image is not None and i in base.cross_layers:
                h = base.cross_layers[i](h, image, mask, row)
            h = block(h, cos, sin, attention)
        return F.linear(text.norm(h), text.output_weight())
