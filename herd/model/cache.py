"""A static KV cache for batched generation with left-padded prompts."""

from __future__ import annotations

import torch
from torch import Tensor

from herd.model.config import ModelConfig
from herd.model.layers import AttentionKernel


class KVCache:
    """Preallocated K/V for every layer: (B, n_kv_heads, max_len, head_dim).

    All rows advance together: `pos` slots are filled, or reserved by `extend` for the next forward.
    Prompts of different lengths are left-padded; `pad[b]` is row b's pad count, so row b's token in
    slot j has RoPE position j - pad[b] and pad slots are never attended. A row therefore computes exactly
    what it would compute alone.
    """

    def __init__(
        self,
        cfg: ModelConfig,
        batch: int,
        max_len: int,
        pad: Tensor | None = None,
        dtype: torch.dtype = torch.float32,
        device: torch.device | str = "cpu",
    ) -> None:
        shape = (batch, cfg.n_kv_heads, max_len, cfg.head_dim)
        self.k = [torch.zeros(shape, dtype=dtype, device=device) for _ in range(cfg.n_layers)]
        self.v = [torch.zeros(shape, dtype=dtype, device=device) for _ in range(cfg.n_layers)]
        self.max_len = max_len
        self.pos = 0
        self.pad = torch.zeros(batch, dtype=torch.long, device=device) if pad is None else pad.to(device)
        # Without left padding a row's positions are its slots and it may see every filled slot, so
        # most steps need no explicit mask (see `extend`).
        self.padded = bool(self.pad.any())

    def extend(self, n_new: int) -> tuple[Tensor, AttentionKernel]:
        """Positions and attention for the next `n_new` tokens of every row: each layer writes their K/V
        into the next free slots, then attends over all filled ones. Pass both to the model's forward."""
        start = self.pos
        if start + n_new > self.max_len:
            raise ValueError(f"KV cache full: {start} + {n_new} tokens > max_len {self.max_len}")
        self.pos += n_new
        slots = torch.arange(start, self.pos, device=self.pad.device)  # (T,)
        if not self.padded and (start == 0 or n_new == 1):
            # Unpadded prefill from empty is plain causal; one new token sees every filled slot.
            return slots, CachedAttention(self, start, causal=n_new > 1)
        keys = torch.arange(self.pos, device=slots.device)  # (S,)
        positions = (slots[None, :] - self.pad[:, None]).clamp(min=0)  # (B, T)
        visible = (keys[None, None, :] <= slots[None, :, None]) & (keys[None, None, :] >= self.pad[:, None, None])
        # A pad query sees only itself, so its softmax row is never empty (its output is discarded).
        visible |= keys[None, None, :] == slots[None, :, None]
        return positions, CachedAttention(self, start, mask=visible[:, None])  # (B, T), mask (B, 1, T, S)

    def repeat_rows(self, n: int) -> None:
        """Repeat every row n times in place (row i → rows i·n .. i·n+n−1): one prefill, n continuations."""
        self.k = [t.repeat_interleave(n, 0) for t in self.k]
        self.v = [t.repeat_interleave(n, 0) for t in self.v]
        self.pad = self.pad.repeat_interleave(n, 0)

    def write(self, layer: int, start: int, k: Tensor, v: Tensor) -> tuple[Tensor, Tensor]:
        """Store one layer's new K/V (B, Hkv, T, Dh) from slot `start`; return K/V up to their end."""
        end = start + k.shape[2]
        self.k[layer][:, :, start:end] = k
        self.v[layer][:, :, start:end] = v
        return self.k[layer][:, :, :end], self.v[layer][:, :, :end]  # (B, Hkv, S, Dh)


class CachedAttention(AttentionKernel):
    """Attention of new tokens over a KV cache: each layer first stores their K/V from slot `start`."""

    def __init__(self, cache: KVCache, start: int, mask: Tensor | None = None, causal: bool = True) -> None:
        super().__init__(mask=mask, causal=causal)
        self.cache, self.start = cache, start

    def __call__(self, q: Tensor, k: Tensor, v: Tensor, layer: int) -> Tensor:
        k, v = self.cache.write(layer, self.start, k, v)
        return super().__call__(q, k, v, layer)
