"""The Llama 3 transformer: a dense decoder-only pre-norm stack [P §3.2, Table 3].

Pure torch. Build it on the meta device, apply parallelism from outside, then allocate and initialize:

    with torch.device("meta"):
        model = Transformer(cfg)
    model.to_empty(device=device)
    model.init_weights(seed=0)
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from herd.model.cache import KVCache
from herd.model.config import ModelConfig
from herd.model.layers import (
    AttnMask,
    RMSNorm,
    TransformerBlock,
    document_mask,
    flex_document_mask,
    rope_cos_sin,
    rope_inv_freq,
)


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

    def forward(
        self,
        tokens: Tensor,
        doc_ids: Tensor | None = None,
        cache: KVCache | None = None,
        return_hidden: bool = False,
        positions: Tensor | None = None,
        attn: AttnMask | None = None,
    ) -> Tensor:
        """tokens (B, T) → logits (B, T, V) (or the final normed hidden states (B, T, dim)).

        doc_ids (B, T): per-token document ids for packed sequences; a token attends only to earlier
        tokens of its own document [P §3.2]. cache: decode incrementally (see herd.model.generate).
        positions/attn: supplied from outside by context parallelism (global RoPE positions of the local
        tokens, and an attention kernel that gathers K/V). A later pipeline stage takes hidden states
        (B, T, dim) as `tokens`; one without the final norm returns (hidden states, doc_ids).
        """
        if attn is None:
            positions, attn = self._positions_and_mask(tokens, doc_ids, cache)
        # Token ids are embedded; hidden states (a later pipeline stage's input) pass straight in.
        h = tokens if tokens.is_floating_point() else self.tok_embeddings(tokens)  # (B, T, dim)
        cos, sin = rope_cos_sin(self.inv_freq, positions)
        if cos.dim() == 3:  # per-row positions (B, T, Dh) broadcast over heads
            cos, sin = cos[:, None], sin[:, None]
        for block in self.layers.values():
            h = block(h, cos, sin, attn, cache)
        if cache is not None:
            cache.advance()
        if self.norm is None:  # a pipeline stage before the last: the next stage needs the document ids too
            return h if doc_ids is None else (h, doc_ids)
        h = self.norm(h)
        if return_hidden:
            return h
        # Call the output module (not F.linear on its weight) so tensor-parallel plans see it.
        return self.output(h) if self.output is not None else F.linear(h, self.tok_embeddings.weight)  # (B, T, V)

    def _positions_and_mask(
        self, tokens: Tensor, doc_ids: Tensor | None, cache: KVCache | None
    ) -> tuple[Tensor, AttnMask]:
        T = tokens.shape[1]
        if cache is not None:
            if doc_ids is not None:
                raise ValueError("doc_ids and a KV cache cannot be combined")
            if not cache.padded and (cache.pos == 0 or T == 1):
                # Unpadded prefill from empty is plain causal; one new token sees every filled slot.
                return cache.reserve(T), AttnMask(causal=T > 1)
            positions, visible = cache.begin(T)
            return positions, AttnMask(dense=visible)
        if doc_ids is None:
            return torch.arange(T, device=tokens.device), AttnMask()
        # A later pipeline stage under sequence parallelism holds a slice of the sequence's hidden states;
        # attention gathers the whole sequence, whose length the document ids give.
        if doc_ids.shape != tokens.shape[:2] and not (tokens.is_floating_point() and doc_ids.shape[0] == len(tokens)):
            raise ValueError(f"doc_ids shape {tuple(doc_ids.shape)} != tokens shape {tuple(tokens.shape[:2])}")
        positions = torch.arange(doc_ids.shape[1], device=tokens.device)
        if self._use_flex(tokens):
            return positions, AttnMask(block=flex_document_mask(doc_ids))
        return positions, AttnMask(dense=document_mask(doc_ids))

    def _use_flex(self, tokens: Tensor) -> bool:
        impl = self.cfg.attn_impl
        if impl == "flex" and tokens.device.type == "cpu" and torch.is_grad_enabled():
            raise ValueError("attn_impl='flex' cannot train on CPU (flex_attention has no CPU backward)")
        return impl == "flex" or (impl == "auto" and tokens.device.type == "cuda")
