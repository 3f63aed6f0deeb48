"""Batched autoregressive generation with a static KV cache: greedy, temperature, top-p, stop tokens."""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch
from torch import Tensor

from herd.model.cache import KVCache
from herd.model.transformer import Transformer


def sample_next(logits: Tensor, temperature: float, top_p: float, generator: torch.Generator | None) -> Tensor:
    """Next token per row from logits (B, V): argmax at temperature 0, else nucleus sampling."""
    if temperature <= 0:
        return logits.argmax(dim=-1)
    return torch.multinomial(nucleus_probs(logits, temperature, top_p), 1, generator=generator).squeeze(-1)


def nucleus_probs(logits: Tensor, temperature: float, top_p: float) -> Tensor:
    """The distribution sampled from (B, V): softmax at `temperature`, cut to the top-p nucleus.

    The nucleus is found among the `k` likeliest tokens (`topk`), doubling k until every row's mass
    reaches top_p, instead of sorting all V: sorting a 49K vocabulary for every row was a third of
    rejection sampling's time. The kept set — the smallest prefix by probability whose mass reaches
    top_p, the first token always kept — is the one a full sort gives."""
    probs = torch.softmax(logits.float() / temperature, dim=-1)
    if top_p >= 1.0:
        return probs
    k = min(256, probs.shape[-1])
    while True:
        top, order = probs.topk(k, dim=-1)  # (B, k), descending
        covered = top.sum(dim=-1) >= top_p
        if bool(covered.all()) or k == probs.shape[-1]:
            break
        k = min(2 * k, probs.shape[-1])
    outside = top.cumsum(dim=-1) - top > top_p
    return torch.zeros_like(probs).scatter_(-1, order, top.masked_fill(outside, 0.0))


@torch.inference_mode()
def generate(
    model: Transformer,
    prompts: Sequence[Sequence[int]],
    max_new_tokens: int = 64,
    temperature: float = 0.0,
    top_p: float = 1.0,
    stop_ids: Sequence[int] = (),
    seed: int | None = None,
    on_token: Callable[[int, int], None] | None = None,
    num_samples: int = 1,
) -> list[list[int]]:
    """Continue each prompt; return the new tokens per prompt, cut before the first stop token.

    Prompts of different lengths are left-padded into one batch and prefilled in one forward pass;
    each row then sees exactly the positions and keys it would see alone. `on_token(row, token)` is
    called for every kept token as it is produced (streaming). `num_samples` > 1 prefills each prompt once
    and decodes that many continuations of it (rejection sampling [P §4.2.2]); rows come prompt by prompt.
    """
    if not prompts or any(len(p) == 0 for p in prompts):
        raise ValueError("generate: every prompt needs at least one token")
    device = model.tok_embeddings.weight.device
    lengths = torch.tensor([len(p) for p in prompts], device=device)
    longest = int(lengths.max())
    tokens = torch.zeros(len(prompts), longest, dtype=torch.long, device=device)
    for i, p in enumerate(prompts):
        tokens[i, longest - len(p) :] = torch.as_tensor(p, dtype=torch.long)
    limit = min(max_new_tokens, model.cfg.max_seq_len - longest)
    cache = KVCache(
        model.cfg,
        len(prompts),
        longest + limit,
        pad=longest - lengths,
        dtype=model.tok_embeddings.weight.dtype,
        device=device,
    )
    generator = torch.Generator(device=device).manual_seed(seed) if seed is not None else None
    # Prefill: only the last position's logits are needed; projecting all T would build (B, T, V).
    hidden = model(tokens, *cache.extend(longest), return_hidden=True)[:, -1:]  # (B, 1, dim)
    logits = model.project(hidden)[:, -1]  # (B, V)
    if num_samples > 1:
        logits = logits.repeat_interleave(num_samples, 0)  # (B·n, V)
        cache.repeat_rows(num_samples)
    stops = torch.tensor(list(stop_ids) or [-1], device=device)
    done = torch.zeros(logits.shape[0], dtype=torch.bool, device=device)
    out: list[list[int]] = [[] for _ in range(logits.shape[0])]
    for _ in range(limit):
        nxt = sample_next(logits, temperature, top_p, generator)  # (B,)
        done |= torch.isin(nxt, stops)
        # One device-to-host transfer per step rather than one per row.
        finished = done.tolist()
        for row, token in enumerate(nxt.tolist()):
            if not finished[row]:
                out[row].append(token)
                if on_token is not None:
                    on_token(row, token)
        if all(finished) or cache.pos >= cache.max_len:
            break
        logits = model(nxt[:, None], *cache.extend(1))[:, -1]
    return out
