"""The KV cache's three attention paths (causal prefill, one unmasked new token, an explicit mask)
compute what one full forward pass computes."""

import torch
from helpers import tiny_config

from herd.model import build_model
from herd.model.cache import KVCache


def test_unpadded_cache_paths_equal_full_forward() -> None:
    model = build_model(tiny_config(), seed=11).eval()
    tokens = torch.randint(0, 300, (3, 20), generator=torch.Generator().manual_seed(0))
    cache = KVCache(model.cfg, batch=3, max_len=20)
    assert not cache.padded
    with torch.no_grad():
        full = model(tokens)
        parts = [model(tokens[:, :12], *cache.extend(12))]  # prefill from empty: SDPA is_causal
        parts += [model(tokens[:, i : i + 1], *cache.extend(1)) for i in range(12, 16)]  # one token: no mask
        parts.append(model(tokens[:, 16:], *cache.extend(4)))  # several tokens after the start: dense mask
    assert (torch.cat(parts, dim=1) - full).abs().max() <= 1e-5


def test_padded_cache_keeps_the_explicit_mask() -> None:
    model = build_model(tiny_config(), seed=12).eval()
    tokens = torch.randint(0, 300, (1, 9), generator=torch.Generator().manual_seed(1))
    padded = torch.cat([torch.zeros(1, 4, dtype=torch.long), tokens], dim=1)  # 4 pad slots on the left
    cache = KVCache(model.cfg, batch=1, max_len=16, pad=torch.tensor([4]))
    assert cache.padded
    with torch.no_grad():
        ours = torch.cat([model(padded[:, :10], *cache.extend(10)), model(padded[:, 10:], *cache.extend(3))], dim=1)
        alone = model(tokens)
    assert (ours[:, 4:] - alone).abs().max() <= 1e-5
