"""Pipeline-parallel generation [P §6.1]: the model's layers split over ranks, micro-batches in flight.

Rank r keeps only its contiguous layers (`split_layers`), the first rank also the embedding and the last
the final norm and output projection (`pipeline_stage` prunes the rest). A batch of prompts is cut into
micro-batches, each with its own KV cache on every rank (for that rank's layers). Prefill and every decode
step pass each micro-batch through the ranks: rank r receives its hidden states from r − 1, runs its
layers and sends them to r + 1; the last rank samples the next tokens and sends them back to rank 0, which
embeds them for the next step. Sends are asynchronous, so while rank 1 works on micro-batch 0, rank 0
already runs micro-batch 1 — the overlap that makes pipelining pay in decoding, where each micro-batch's
next step depends only on its own tokens.

Greedy decoding gives exactly the tokens of one-process `herd.model.generate` (each micro-batch is
left-padded on its own, and a padded row computes what it computes alone). With sampling, each
micro-batch draws from its own generator (seed + micro-batch index), so samples differ from one process.
Point-to-point messages go through torch.distributed: gloo on CPU, NCCL on GPU.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.distributed as dist
from torch import Tensor

from herd.model import Transformer
from herd.model.cache import KVCache
from herd.model.generate import sample_next
from herd.model.layers import rope_cos_sin
from herd.parallel.pp import split_layers


def pipeline_stage(model: Transformer, rank: int, world: int) -> tuple[Transformer, list[int]]:
    """Prune `model` in place to rank's layers (+ embedding on the first, norm and output on the last)."""
    layers = split_layers(model.cfg.n_layers, world)[rank]
    for i in list(model.layers.keys()):
        if int(i) not in layers:
            del model.layers[i]
    if rank != world - 1:
        model.norm, model.output = None, None
    if rank != 0 and not (rank == world - 1 and model.output is None):
        model.tok_embeddings = None  # a tied last stage keeps the embedding for its output projection
    return model, layers


def _run_layers(model: Transformer, h: Tensor, cache: KVCache, n_new: int) -> Tensor:
    """This stage's blocks over `n_new` positions of one micro-batch (as Transformer.forward runs them)."""
    positions, attention = cache.extend(n_new)
    cos, sin = rope_cos_sin(model.inv_freq, positions)
    if cos.dim() == 3:  # per-row positions (left padding) broadcast over heads
        cos, sin = cos[:, None], sin[:, None]
    for block in model.layers.values():
        h = block(h, cos, sin, attention)
    return h


@torch.inference_mode()
def pipeline_generate(
    stage: Transformer,
    prompts: Sequence[Sequence[int]],
    max_new_tokens: int,
    micro_batches: int = 2,
    temperature: float = 0.0,
    top_p: float = 1.0,
    stop_ids: Sequence[int] = (),
    seed: int = 0,
    group: dist.ProcessGroup | None = None,
) -> list[list[int]] | None:
    """New tokens per prompt (cut before the first stop token) on rank 0; None on the other ranks.
    Every rank passes the same prompts and settings and its `pipeline_stage`."""
    rank, world = dist.get_rank(group), dist.get_world_size(group)
    first, last = rank == 0, rank == world - 1
    device = next(stage.parameters()).device
    dtype = next(stage.parameters()).dtype
    cfg = stage.cfg
    bounds = _chunks(len(prompts), micro_batches)
    longest = max(len(p) for p in prompts)
    limit = min(max_new_tokens, cfg.max_seq_len - longest)
    mbs = [list(prompts[a:b]) for a, b in bounds]
    caches, inputs = [], []
    for mb in mbs:
        n = max(len(p) for p in mb)
        pad = torch.tensor([n - len(p) for p in mb], device=device)
        caches.append(KVCache(cfg, len(mb), n + limit, pad=pad, dtype=dtype, device=device))
        tokens = torch.zeros(len(mb), n, dtype=torch.long, device=device)
        for i, p in enumerate(mb):
            tokens[i, n - len(p) :] = torch.as_tensor(p, dtype=torch.long)
        inputs.append(tokens)
    gens = [torch.Generator(device=device).manual_seed(seed + m) for m in range(len(mbs))]
    out: list[list[list[int]]] = [[[] for _ in mb] for mb in mbs]
    done = [torch.zeros(len(mb), dtype=torch.bool, device=device) for mb in mbs]
    stops = torch.tensor(list(stop_ids) or [-1], device=device)
    pending: list[dist.Work] = []
    for step in range(limit):
        for m, mb in enumerate(mbs):
            n_new = inputs[m].shape[1] if step == 0 else 1
            if first:
                if step > 0 and world > 1:
                    inputs[m] = torch.empty(len(mb), 1, dtype=torch.long, device=device)
                    dist.recv(inputs[m], src=world - 1, group=group)
                h = stage.tok_embeddings(inputs[m])
            else:
                h = torch.empty(len(mb), n_new, cfg.dim, dtype=dtype, device=device)
                dist.recv(h, src=rank - 1, group=group)
            h = _run_layers(stage, h, caches[m], n_new)
            if not last:
                pending.append(dist.isend(h.contiguous(), dst=rank + 1, group=group))
                continue
            logits = stage.project(stage.norm(h[:, -1:]))[:, -1]
            nxt = sample_next(logits, temperature, top_p, gens[m])
            for row, token in enumerate(nxt.tolist()):
                done[m][row] |= bool(torch.isin(nxt[row], stops))
                if not done[m][row]:
                    out[m][row].append(token)
            inputs[m] = nxt[:, None].contiguous()
            if world > 1 and step + 1 < limit:
                pending.append(dist.isend(inputs[m], dst=0, group=group))
        pending = [w for w in pending if not w.is_completed()]
    for w in pending:
        w.wait()
    result = [row for mb_out in out for row in mb_out]
    if world > 1:  # the last rank holds the tokens: hand them to rank 0
        box = [result if last else None]
        dist.broadcast_object_list(box, src=world - 1, group=group)
        result = box[0]
    return result if first else None


def _chunks(n: int, parts: int) -> list[tuple[int, int]]:
    parts = max(1, min(parts, n))
    sizes = [n // parts + (1 if i < n % parts else 0) for i in range(parts)]
    starts = [sum(sizes[:i]) for i in range(parts)]
    return [(s, s + k) for s, k in zip(starts, sizes)]
