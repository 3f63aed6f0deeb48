"""A paged KV cache: K/V live in fixed-size blocks from one pool, each sequence owns a block table.

Sequences of any length share one pool without reserving `max_len` slots each, and the K samples of one
prompt (rejection sampling [P §4.2.2]) point at the same prompt blocks: blocks are refcounted and a
shared block is copied only when one sample writes into it (copy-on-write).

Attention over the blocks gathers each sequence's slots per layer and per step into a dense (N, Hkv, S, Dh)
tensor and runs SDPA with a mask. That is the correct reference path (and what CPU can do); a fused
paged-attention kernel would read the blocks in place.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor

from herd.model.config import ModelConfig
from herd.model.layers import AttentionKernel


class OutOfBlocks(RuntimeError):
    """The pool has no free block: the scheduler preempts a sequence and tries again."""


class BlockPool:
    """K/V storage for every layer in `num_blocks` blocks of `block_size` token slots, with refcounts.

    Slot s of the pool is token s % block_size of block s // block_size; a layer's K is stored as
    (num_blocks · block_size, Hkv, Dh) so that any list of slots gathers in one indexing op.
    """

    def __init__(
        self,
        cfg: ModelConfig,
        num_blocks: int,
        block_size: int = 16,
        dtype: torch.dtype = torch.float32,
        device: torch.device | str = "cpu",
    ) -> None:
        if num_blocks < 1 or block_size < 1:
            raise ValueError(f"paged cache: need num_blocks ≥ 1 and block_size ≥ 1, got {num_blocks}, {block_size}")
        shape = (num_blocks * block_size, cfg.n_kv_heads, cfg.head_dim)
        self.k = [torch.zeros(shape, dtype=dtype, device=device) for _ in range(cfg.n_layers)]
        self.v = [torch.zeros(shape, dtype=dtype, device=device) for _ in range(cfg.n_layers)]
        self.num_blocks, self.block_size = num_blocks, block_size
        self.refs = [0] * num_blocks
        self._free = list(range(num_blocks - 1, -1, -1))  # popped from the end: block 0 first

    @property
    def num_free(self) -> int:
        return len(self._free)

    def allocate(self) -> int:
        if not self._free:
            raise OutOfBlocks("no free KV block")
        block = self._free.pop()
        self.refs[block] = 1
        return block

    def share(self, block: int) -> int:
        self.refs[block] += 1
        return block

    def release(self, block: int) -> None:
        self.refs[block] -= 1
        if self.refs[block] == 0:
            self._free.append(block)

    def copy(self, block: int) -> int:
        """A private copy of a shared block (copy-on-write); the caller releases the original."""
        new = self.allocate()
        src = slice(block * self.block_size, (block + 1) * self.block_size)
        dst = slice(new * self.block_size, (new + 1) * self.block_size)
        for k, v in zip(self.k, self.v):
            k[dst] = k[src]
            v[dst] = v[src]
        return new

    def slots(self, blocks: Sequence[int], start: int, end: int) -> list[int]:
        """Pool slots of a sequence's tokens start..end-1, given its block table."""
        bs = self.block_size
        return [blocks[p // bs] * bs + p % bs for p in range(start, end)]


class PagedAttention(AttentionKernel):
    """One forward over N sequences, each bringing its next few tokens (right-padded to T).

    write_slots (N, T): where each new token's K/V goes, −1 for padding; read_slots (N, S): the slots of
    each sequence's whole context after this step (padded with any slot); mask (N, 1, T, S): which of them
    each query sees (causal within the sequence, never a pad key).
    """

    def __init__(self, pool: BlockPool, write_slots: Tensor, read_slots: Tensor, mask: Tensor | None) -> None:
        super().__init__(mask=mask, causal=mask is None)
        self.pool = pool
        self.write_valid = write_slots >= 0
        self.write_slots, self.read_slots = write_slots[self.write_valid], read_slots

    def __call__(self, q: Tensor, k: Tensor, v: Tensor, layer: int) -> Tensor:
        pool_k, pool_v = self.pool.k[layer], self.pool.v[layer]
        pool_k[self.write_slots] = k.transpose(1, 2)[self.write_valid]  # (n_new, Hkv, Dh)
        pool_v[self.write_slots] = v.transpose(1, 2)[self.write_valid]
        if self.mask is None:  # one fresh sequence: its new tokens are its whole context
            return F.scaled_dot_product_attention(q, k, v, is_causal=True, enable_gqa=True)
        keys = pool_k[self.read_slots].transpose(1, 2)  # (N, Hkv, S, Dh)
        values = pool_v[self.read_slots].transpose(1, 2)
        return F.scaled_dot_product_attention(q, keys, values, attn_mask=self.mask, enable_gqa=True)


def paged_inputs(
    pool: BlockPool, tables: Sequence[Sequence[int]], cached: Sequence[int], new: Sequence[Sequence[int]]
) -> tuple[Tensor, Tensor, PagedAttention]:
    """Tokens (N, T), positions (N, T) and attention for sequences with `cached[i]` tokens already in
    their blocks `tables[i]` and tokens `new[i]` to add (blocks for them must already be allocated)."""
    device = pool.k[0].device
    n, width = len(new), max(len(t) for t in new)
    lengths = [c + len(t) for c, t in zip(cached, new)]
    tokens = torch.zeros(n, width, dtype=torch.long)
    positions = torch.zeros(n, width, dtype=torch.long)
    write = torch.full((n, width), -1, dtype=torch.long)
    read = torch.zeros(n, max(lengths), dtype=torch.long)
    for i, (table, c, t) in enumerate(zip(tables, cached, new)):
        tokens[i, : len(t)] = torch.tensor(t)
        positions[i] = torch.arange(c, c + width)  # pad positions run on; their outputs are dropped
        write[i, : len(t)] = torch.tensor(pool.slots(table, c, c + len(t)))
        read[i, : lengths[i]] = torch.tensor(pool.slots(table, 0, lengths[i]))
    mask = None
    if n > 1 or cached[0] > 0:
        keys = torch.arange(read.shape[1])
        lens = torch.tensor(lengths)
        # Query t of row i sits at position cached[i] + t: it sees keys up to there, never past the row's end.
        visible = (keys[None, None, :] <= positions[:, :, None]) & (keys[None, None, :] < lens[:, None, None])
        mask = visible[:, None].to(device)  # (N, 1, T, S)
    attention = PagedAttention(pool, write.to(device), read.to(device), mask)
    return tokens.to(device), positions.to(device), attention
