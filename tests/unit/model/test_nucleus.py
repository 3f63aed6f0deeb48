"""Top-p sampling's kept set found among the top-k equals the one a full sort of the vocabulary gives."""

import pytest
import torch

from herd.model.generate import nucleus_probs


def _full_sort(logits, temperature, top_p):
    probs = torch.softmax(logits.float() / temperature, dim=-1)
    if top_p >= 1.0:  # no cut (a cumulative sum may pass 1.0 by rounding)
        return probs
    sorted_p, order = probs.sort(dim=-1, descending=True)
    outside = sorted_p.cumsum(dim=-1) - sorted_p > top_p
    return torch.zeros_like(probs).scatter_(-1, order, sorted_p.masked_fill(outside, 0.0))


@pytest.mark.parametrize("scale", [0.05, 0.3, 3.0, 30.0])  # nearly flat (k doubles to V) to very peaked
@pytest.mark.parametrize("top_p", [0.1, 0.9, 0.999, 1.0])
def test_topk_nucleus_equals_full_sort(scale, top_p):
    logits = torch.randn(8, 4096, generator=torch.Generator().manual_seed(0)) * scale
    assert torch.equal(nucleus_probs(logits, 0.8, top_p), _full_sort(logits, 0.8, top_p))
