"""The Llama 3 transformer: a dense decoder-only pre-norm stack [P §3.2, Table 3].

Pure torch. Build it on the meta device, apply parallelism from outside, then allocate and initialize:

    with torch.device("meta"):
        model = Transformer(cfg)
    model.to_empty(device=device)
    model.init_weights(seed=0)

The caller says how its tokens are laid out; the model only embeds, runs the blocks, norms and projects:

    logits = model(tokens)                                   # one causal sequence per row
    logits = model(tokens, *document_causal(doc_ids))        # packed documents [P §3.2]
    logits = model(new_tokens, *cache.extend(T))             # incremental decoding (herd.model.generate)
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from herd.model.config import ModelConfig
from herd.model.layers import AttentionKernel, RMSNorm, TransformerBlock, rope_cos_sin, rope_inv_freq


class Transformer(nn.Module):
    def __init__(self, cfg: ModelConfig) -> None:
        super().__init__()
        self.cfg = cfg
        self.tok_embeddings = nn.Embedding(cfg.vocab_size, cfg.dim)
        # A ModuleDict keyed by layer index: pipeline stages can delete layers and keep FQNs stable.
        self.layers = nn.ModuleDict({str(i): TransformerBlock(cfg, i) for i in range(cfg.n_layers)})
        self.norm = RMSNorm(cfg.dim, cfg.norm_eps)
        # Tied models reuse the embedding matrix in forward instead of sharing a Parameter object,
        # which keeps meta-device init, FSDP and safetensors (no aliased tensors) simple.
        self.output = None if cfg.tie_embeddings else nn.Linear(cfg.dim, cfg.vocab_size, bias=False)
        self.register_buffer("inv_freq", torch.empty(cfg.head_dim // 2), persistent=False)
        if self.inv_freq.device.type != "meta":
            self.init_buffers()

    def init_buffers(self) -> None:
        """Recompute non-persistent buffers (needed after `to_empty` or loading with assign=True)."""
        # Where the weights are (loading assigns real weights to a meta-built model; a pipeline stage may
        # have no embedding to ask).
        device = next(self.parameters()).device
        self.inv_freq = rope_inv_freq(self.cfg.head_dim, self.cfg.rope_theta, self.cfg.rope_scaling).to(device)

    @torch.no_grad()
    def init_weights(self, seed: int = 0) -> None:
        """Llama-style init: N(0, 0.02) everywhere, output layers of each residual branch scaled by
        1/√(2·(layer+1)) (depth-scaled, as torchtitan), the final projection by 1/√dim, norms to 1."""
        self.init_buffers()
        g = torch.Generator(device=self.tok_embeddings.weight.device).manual_seed(seed)
        std = 0.02
        nn.init.normal_(self.tok_embeddings.weight, std=std, generator=g)
        for i, block in self.layers.items():
            depth_std = std / math.sqrt(2 * (int(i) + 1))
            attn, ffn = block.attention, block.feed_forward
            for lin in (attn.wq, attn.wk, attn.wv, ffn.w1):
                nn.init.trunc_normal_(lin.weight, std=std, a=-3 * std, b=3 * std, generator=g)
            for lin in (attn.wo, ffn.w2, ffn.w3):
                nn.init.trunc_normal_(lin.weight, std=depth_std, a=-3 * depth_std, b=3 * depth_std, generator=g)
            block.attention_norm.reset_parameters()
            block.ffn_norm.reset_parameters()
        self.norm.reset_parameters()
        if self.output is not None:
            out_std = self.cfg.dim**-0.5
            nn.init.trunc_normal_(self.output.weight, std=out_std, a=-3 * out_std, b=3 * out_std, generator=g)

    def output_weight(self) -> Tensor:
        return self.tok_embeddings.weight if self.output is None else self.output.weight

    def project(self, h: Tensor) -> Tensor:
        """Final hidden states (..., dim) → logits (..., V). Call the output module (not F.linear on its
        weight) so tensor-parallel plans and quantized output layers (herd.model.quant) see it."""
        return self.output(h) if self.output is not None else F.linear(h, self.tok_embeddings.weight)

    def forward(
        self,
        x: Tensor,
        positions: Tensor | None = None,
        attention: AttentionKernel | None = None,
        return_hidden: bool = False,
    ) -> Tensor:
        """Token ids (B, T) → logits (B, T, V), or the final normed hidden states (B, T, dim) with
        `return_hidden`. A pipeline stage after the first takes hidden states (B, T, dim) as `x`; one
        before the last has no final norm and returns its blocks' hidden states.

        positions (T,) or (B, T) and attention: how the tokens are laid out, from the caller
        (herd.model.layers.document_causal, KVCache.extend, herd.parallel.cp.context_parallel); by default
        one causal sequence at positions 0..T−1.
        """
        positions = torch.arange(x.shape[1], device=x.device) if positions is None else positions
        attention = AttentionKernel() if attention is None else attention
        h = x if x.is_floating_point() else self.tok_embeddings(x)  # (B, T, dim)
        cos, sin = rope_cos_sin(self.inv_freq, positions)
        if cos.dim() == 3:  # per-row positions (B, T, Dh) broadcast over heads
            cos, sin = cos[:, None], sin[:, None]
        for block in self.layers.values():
            h = block(h, cos, sin, attention)
        if self.norm is None:
            return h
        h = self.norm(h)
        if return_hidden:
            return h
        return self.project(h)  # (B, T, V)
