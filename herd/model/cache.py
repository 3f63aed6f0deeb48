"""A static KV cache for batched generation with left-padded prompts."""

from __future__ import annotations

import torch
from torch import Tensor

from herd.model.config import ModelConfig


class KVCache:
    """Preallocated K/V for every layer: (B, n_kv_heads, max_len, head_dim).

    All rows advance together (`pos` slots filled). Prompts of different lengths are left-padded;
    `pad[b]` is row b's pad count, so row b's token in slot j has RoPE position j - pad[b] and pad
    slots are never attended. A row therefore computes exactly what it would compute alone.
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
        # most steps need no explicit mask (see Transformer._positions_and_mask).
        self.padded = bool(self.pad.any())
        self._new = 0

    def reserve(self, n_new: int) -> Tensor:
        """Reserve slots for the next `n_new` tokens; return their slot indices (T,)."""
        if self.pos + n_new > self.max_len:
            raise ValueError(f"KV cache full: {self.pos} + {n_new} tokens > max_len {self.max_len}")
        self._new = n_new
        return torch.arange(self.pos, self.pos + n_new, device=self.pad.device)

    def begin(self, n_new: int) -> tuple[Tensor, Tensor]:
        """Reserve slots for the next `n_new` tokens; return their positions (B, T) and mask (B, 1, T, S)."""
        slots = self.reserve(n_new)  # (T,)
        keys = torch.arange(self.pos + n_new, device=slots.device)  # (S,)
        positions = (slots[None, :] - self.pad[:, None]).clamp(min=0)  # (B, T)
        visible = (keys[None, None, :] <= slots[None, :, None]) & (keys[None, None, :] >= self.pad[:, None, None])
        # A pad query sees only itself, so its softmax row is never empty (its output is discarded).
        visible |= keys[None, None, :] == slots[None, :, None]
        return positions, visible[:, None]  # (B, T), (B, 1, T, S)

    def repeat_rows(self, n: int) -> None:
        """Repeat every row n times in place (row i → rows i·n .. i·n+n−1): one prefill, n continuations."""
        self.k = [t.repeat_interleave(n, 0) for t in self.k]
        self.v = [t.repeat_interleave(n, 0) for t in self.v]
        self.pad = self.pad.repeat_interleave(n, 0)

    def update(self, layer: int, k: Tensor, v: Tensor) -> tuple[Tensor, Tensor]:
        end = self.pos + self._new
        self.k[layer][:, :, self.pos : end] = k
        self.v[layer][:, :, self.pos : end] = v
        return self.k[layer][:, :, :end], self.v[layer][:, :, :end]

    def advance(self) -> None:
        self.pos += self._new
        self._new = 0
