"""A dry-run plan of the paper's 405B vision job [P §7.1, §7.4 "Scaling"], printed by `herd recipe --dry-run`.

Facts used: a gated cross-attention block after every 4th self-attention layer of the frozen 405B
(about 100B added parameters); the ViT-H/14 encoder (850M with its gated layers) replicated on every
pipeline stage; each stage holding 4 self-attention layers and 1 cross-attention layer; an image
averaging 2,308 tokens against 192 text tokens; micro-batch 8 [P §7.4]. Memory is bf16 weights only
(the language model is frozen; optimizer state is for the adapter and encoder).
"""

from __future__ import annotations

import math

import torch

from herd.model.config import get_preset, param_count
from herd.vision.adapter import CrossAttentionBlock
from herd.vision.config import EncoderConfig, every_fourth
from herd.vision.encoder import ImageEncoder

TEXT_TOKENS, MICRO_BATCH = 192, 8  # [P §7.4]
# 336-px tiles [P §7.4]: 4 tiles × (24² patches + 1 class token) = 2,308, the paper's average image length.
ENCODER_405B = EncoderConfig(image_size=336)


def _count(module_fn) -> int:
    with torch.device("meta"):
        return sum(p.numel() for p in module_fn().parameters())


def vision_405b_plan(encoder: EncoderConfig | None = None) -> str:
    text = get_preset("405B")
    enc = encoder or ENCODER_405B
    image_tokens = enc.max_num_tiles * enc.n_patches
    cross = every_fourth(text.n_layers)
    block = _count(lambda: CrossAttentionBlock(text))
    n_enc = _count(lambda: ImageEncoder(enc))
    self_layer = (param_count(text, embeddings=False) - text.dim) // text.n_layers
    stages = math.ceil(text.n_layers / 4)  # 4 self-attention layers (+ the cross block among them) per stage
    per_stage = 4 * self_layer + block + n_enc
    adapter = len(cross) * block
    # FLOPs per sample: frozen LM forward + activation backward (4·N·T), adapter and encoder trained (6·N·T);
    # cross-attention K/V projections run over the image tokens, the rest over the text tokens.
    kv = 2 * text.dim * text.n_kv_heads * text.head_dim
    flops = (4 * param_count(text, embeddings=False) * TEXT_TOKENS + 6 * (block - kv) * len(cross) * TEXT_TOKENS
             + 6 * kv * len(cross) * image_tokens + 6 * n_enc * image_tokens)  # fmt: skip
    rows = [
        "",
        "vision (405B, [P §7]): frozen language model + image encoder + gated cross-attention adapter",
        f"  cross-attention blocks: {len(cross)} (before self-attention layers {cross[0]}, {cross[1]}, ..., "
        f"{cross[-1]}), {block / 1e9:.2f}B each, {adapter / 1e9:.1f}B in all (paper: ~100B)",
        f"  image encoder: {n_enc / 1e6:.0f}M ({enc.n_layers}+{enc.n_global_layers} layers, "
        f"{enc.output_dim}-dim features), replicated on each of {stages} pipeline stages",
        f"  pipeline stage: 4 self-attention + 1 cross-attention layer + encoder = {per_stage / 1e9:.1f}B "
        f"parameters, {2 * per_stage / 2**30:.0f} GiB of bf16 weights; the last stage holds "
        f"{text.n_layers - 4 * (stages - 1)} self-attention layers",
        f"  per sample: {image_tokens:,} image + {TEXT_TOKENS} text tokens, micro-batch {MICRO_BATCH}; "
        f"≈{flops:.2e} training FLOPs per sample",
        "  gradients accumulate in FP32 (bf16 accumulation was unstable) [P §7.4]",
    ]
    return "\n".join(rows)
