"""An inference engine: continuous batching over a paged KV cache (herd.model.paged).

Every `step()` runs one forward for the prompts admitted this step and one for the running sequences'
next tokens: requests join the batch as soon as blocks are free and leave it the step they finish, so
a short answer never waits for a long one (unlike `herd.model.generate`, whose batch runs to its longest
row). The K samples of one prompt (`n`) prefill it once and share its blocks (copy-on-write). When a
sequence needs a block and none is free, the newest sequence is preempted: its blocks are freed and it
later recomputes its prompt and tokens so far in one prefill (recompute, as vLLM does), keeping its
sampler's state, so its output is the same as if it had never been preempted.

    engine = Engine(model, EngineConfig(kv_tokens=8192))
    outs = engine.generate(prompts, SamplingParams(max_tokens=64, temperature=0.7, n=16, seed=0))

A server adds requests and steps from one thread (`add`, `abort`, `step` are not thread-safe).
"""

from __future__ import annotations

import itertools
import math
import random
from collections import defaultdict, deque
from collections.abc import Sequence
from dataclasses import dataclass, field

import torch
from torch import Tensor

from herd.model.generate import nucleus_probs
from herd.model.paged import BlockPool, OutOfBlocks, paged_inputs
from herd.model.transformer import Transformer


@dataclass(frozen=True)
class SamplingParams:
    """What one request asks for. `logprobs`/`prompt_logprobs`: how many top alternatives to report per
    generated/prompt token (0 = only the token's own log-probability; None = none)."""

    max_tokens: int = 16
    temperature: float = 0.0
    top_p: float = 1.0
    n: int = 1
    seed: int | None = None
    stop_ids: frozenset[int] = frozenset()
    logprobs: int | None = None
    prompt_logprobs: int | None = None


@dataclass(frozen=True)
class EngineConfig:
    block_size: int = 16  # token slots per KV block
    kv_tokens: int = 16384  # pool capacity in tokens (num_blocks = kv_tokens // block_size)
    max_batch: int = 64  # running sequences at most
    max_prefill_tokens: int = 4096  # prompt tokens admitted per step (a longer prompt is admitted alone)
    share_prefix: bool = True  # the n samples of a prompt share its blocks


@dataclass(frozen=True)
class TokenLogprob:
    """log P(token) under the model (before temperature / top-p) and the `k` likeliest alternatives."""

    logprob: float
    top: tuple[tuple[int, float], ...] = ()


@dataclass
class Event:
    """What one step did for one sample of a request: a new token and/or the end of the sample."""

    request_id: int
    index: int  # which of the request's n samples
    token: int | None  # None when the sample ends without a new token (stop token, max_tokens=0)
    logprob: TokenLogprob | None = None
    finish: str | None = None  # "stop" (a stop token) | "length" (max_tokens or the context length)
    prompt_logprobs: list[TokenLogprob | None] | None = None  # on a sample's first event; None at token 0


@dataclass
class EngineStats:
    steps: int = 0
    prefill_tokens: int = 0
    decode_tokens: int = 0
    preemptions: int = 0
    peak_blocks: int = 0


@dataclass
class _Request:
    id: int
    prompt: list[int]
    params: SamplingParams
    generators: list[torch.Generator | None]
    live: int  # samples not yet finished
    prompt_logprobs: list[TokenLogprob | None] | None = None


@dataclass
class _Seq:
    """One sample: its tokens so far (prompt + generated), how many are in its blocks, its block table."""

    request: _Request
    index: int
    tokens: list[int]
    fork: int = 1  # samples this sequence becomes after its prefill (the shared-prompt leader has n)
    cached: int = 0
    blocks: list[int] = field(default_factory=list)
    emitted: bool = False
    fresh: bool = True  # its first prefill (prompt log-probabilities are computed only then)

    @property
    def priority(self) -> tuple[int, int]:
        return (self.request.id, self.index)  # earlier requests first; the newest is preempted first

    @property
    def params(self) -> SamplingParams:
        return self.request.params


class Engine:
    def __init__(self, model: Transformer, cfg: EngineConfig | None = None) -> None:
        self.model, self.cfg = model.eval(), cfg or EngineConfig()
        weight = model.tok_embeddings.weight
        self.device = weight.device
        with torch.inference_mode():  # the pool is only ever written under inference mode
            n_blocks = max(1, self.cfg.kv_tokens // self.cfg.block_size)
            self.pool = BlockPool(model.cfg, n_blocks, self.cfg.block_size, weight.dtype, weight.device)
        self.waiting: deque[_Seq] = deque()
        self.running: list[_Seq] = []
        self.requests: dict[int, _Request] = {}
        self.stats = EngineStats()
        self._ids = itertools.count()

    # ------------------------------------------------------------------ requests
    def add(self, prompt: Sequence[int], params: SamplingParams) -> int:
        """Queue a request; returns its id. Raises ValueError for a request that can never run."""
        self.check(prompt, params)
        rid = next(self._ids)
        gens = [self._generator(params, j) for j in range(params.n)]
        req = _Request(rid, list(prompt), params, gens, live=params.n)
        self.requests[rid] = req
        if self.cfg.share_prefix and params.n > 1:
            self.waiting.append(_Seq(req, 0, list(prompt), fork=params.n))
        else:
            self.waiting.extend(_Seq(req, j, list(prompt)) for j in range(params.n))
        return rid

    def check(self, prompt: Sequence[int], params: SamplingParams) -> None:
        """The reasons a request cannot run, as ValueError (a server turns them into 400s)."""
        max_len, vocab = self.model.cfg.max_seq_len, self.model.cfg.vocab_size
        if not prompt:
            raise ValueError("the prompt has no tokens")
        if any(not 0 <= t < vocab for t in prompt):
            raise ValueError(f"prompt token ids must be in [0, {vocab})")
        if params.n < 1 or params.max_tokens < 0:
            raise ValueError("n must be ≥ 1 and max_tokens ≥ 0")
        if len(prompt) + params.max_tokens > max_len:
            raise ValueError(
                f"the model's context is {max_len} tokens: the prompt has {len(prompt)} and max_tokens asks for "
                f"{params.max_tokens} more"
            )
        need = math.ceil((len(prompt) + params.max_tokens) / self.pool.block_size)
        if need > self.pool.num_blocks:
            raise ValueError(f"one sequence would need {need} KV blocks; the pool has {self.pool.num_blocks}")

    def abort(self, request_id: int, index: int | None = None) -> None:
        """Drop a request (or one of its samples); its blocks return to the pool. No event is emitted."""
        req = self.requests.get(request_id)
        if req is None:
            return
        hit = lambda s: s.request is req and (index is None or s.index == index or s.fork > 1)
        for seq in [s for s in self.running if hit(s)]:
            self._finish(seq)
        for seq in [s for s in self.waiting if hit(s)]:
            self.waiting.remove(seq)
            self._release(seq)
            req.live -= seq.fork
        if req.live <= 0:
            self.requests.pop(request_id, None)

    def has_work(self) -> bool:
        return bool(self.waiting or self.running)

    @torch.inference_mode()
    def generate(self, prompts: Sequence[Sequence[int]], params: SamplingParams) -> list[list[list[int]]]:
        """Offline use: every prompt's n samples (new tokens, cut before a stop token), prompt by prompt."""
        ids = [self.add(p, params) for p in prompts]
        outs: dict[int, list[list[int]]] = {rid: [[] for _ in range(params.n)] for rid in ids}
        while self.has_work():
            for e in self.step():
                if e.token is not None:
                    outs[e.request_id][e.index].append(e.token)
        return [outs[rid] for rid in ids]

    # ------------------------------------------------------------------ one step
    @torch.inference_mode()
    def step(self) -> list[Event]:
        preempted = self.stats.preemptions
        decodes = self._schedule_decodes()
        prefills = self._admit() if self.stats.preemptions == preempted else []  # no admission while thrashing
        self.stats.peak_blocks = max(self.stats.peak_blocks, self.pool.num_blocks - self.pool.num_free)
        events: list[Event] = []
        for group in (prefills, decodes):
            if group:
                events += self._run(group)
        self.stats.steps += 1
        return events

    def _schedule_decodes(self) -> list[_Seq]:
        """Running sequences that got a slot for their next token, oldest first; preempts when blocks run out."""
        scheduled: list[_Seq] = []
        for seq in sorted(self.running, key=lambda s: s.priority):
            while seq in self.running:
                try:
                    self._reserve(seq, len(seq.tokens))
                    scheduled.append(seq)
                    break
                except OutOfBlocks:
                    victim = max(self.running, key=lambda s: s.priority)
                    self._preempt(victim)
                    if victim in scheduled:
                        scheduled.remove(victim)
        return scheduled

    def _admit(self) -> list[_Seq]:
        """Waiting sequences moved into the batch, in arrival order, while blocks and budgets allow."""
        admitted: list[_Seq] = []
        budget = self.cfg.max_prefill_tokens
        while self.waiting:
            seq = self.waiting[0]
            need = math.ceil(len(seq.tokens) / self.pool.block_size)
            # Keep a block per running sample free for its next token, so admitting does not force a preemption.
            reserve = sum(s.fork for s in self.running) + seq.fork
            room = need + reserve <= self.pool.num_free or (not self.running and need <= self.pool.num_free)
            fits = not self.running or len(self.running) + seq.fork <= self.cfg.max_batch
            if not (room and fits and (not admitted or len(seq.tokens) <= budget)):
                break
            self.waiting.popleft()
            self._reserve(seq, len(seq.tokens))
            self.running.append(seq)
            admitted.append(seq)
            budget -= len(seq.tokens)
        return admitted

    def _run(self, group: list[_Seq]) -> list[Event]:
        """One forward for `group`'s uncached tokens, then a sampled token for every sample."""
        new = [s.tokens[s.cached :] for s in group]
        tables, cached = [s.blocks for s in group], [s.cached for s in group]
        tokens, positions, attention = paged_inputs(self.pool, tables, cached, new)
        hidden = self.model(tokens, positions, attention, return_hidden=True)  # (N, T, dim)
        ends = torch.tensor([len(t) - 1 for t in new], device=self.device)
        logits = self.model.project(hidden[torch.arange(len(group), device=self.device), ends])
        counter = "prefill_tokens" if cached[0] == 0 else "decode_tokens"  # a group is all prefills or all decodes
        setattr(self.stats, counter, getattr(self.stats, counter) + sum(map(len, new)))
        rows: list[_Seq] = []
        row_logits: list[int] = []
        for i, seq in enumerate(group):
            if seq.fresh and seq.params.prompt_logprobs is not None and seq.request.prompt_logprobs is None:
                seq.request.prompt_logprobs = self._prompt_logprobs(hidden[i, : len(new[i]) - 1], seq)
            seq.cached, seq.fresh = len(seq.tokens), False
            for sample in self._fork(seq):
                rows.append(sample)
                row_logits.append(i)
        logits = logits.float()[torch.tensor(row_logits, device=self.device)]  # (R, V)
        return self._emit(rows, logits)

    def _fork(self, seq: _Seq) -> list[_Seq]:
        """The leader of a shared prompt becomes its n samples: each new one shares every prompt block."""
        samples = [seq]
        for j in range(1, seq.fork):
            child = _Seq(seq.request, j, list(seq.tokens), cached=seq.cached, fresh=False)
            child.blocks = [self.pool.share(b) for b in seq.blocks]
            self.running.append(child)
            samples.append(child)
        seq.fork = 1
        return samples

    def _emit(self, rows: list[_Seq], logits: Tensor) -> list[Event]:
        sampling = [s for s in rows if s.params.max_tokens > 0]
        keep = torch.tensor([s.params.max_tokens > 0 for s in rows], device=self.device)
        chosen = self._sample(sampling, logits[keep]) if sampling else []
        logprobs = self._logprobs(sampling, logits[keep], chosen)
        events = []
        picks = iter(zip(chosen, logprobs))
        for seq in rows:
            token, lp = next(picks) if seq.params.max_tokens > 0 else (None, None)
            events.append(self._append(seq, token, lp))
        return events

    def _append(self, seq: _Seq, token: int | None, lp: TokenLogprob | None) -> Event:
        params = seq.params
        prompt_lp = None if seq.emitted else seq.request.prompt_logprobs
        seq.emitted = True
        if token is None or token in params.stop_ids:
            self._finish(seq)
            return Event(seq.request.id, seq.index, None, None, "stop" if token is not None else "length", prompt_lp)
        seq.tokens.append(token)
        n_out = len(seq.tokens) - len(seq.request.prompt)
        done = n_out >= params.max_tokens or len(seq.tokens) >= self.model.cfg.max_seq_len
        if done:
            self._finish(seq)
        return Event(seq.request.id, seq.index, token, lp, "length" if done else None, prompt_lp)

    # ------------------------------------------------------------------ sampling
    def _generator(self, params: SamplingParams, index: int) -> torch.Generator | None:
        if params.temperature <= 0:
            return None
        # Sample j of a seeded request draws from seed + j whatever else is in the batch.
        seed = params.seed + index if params.seed is not None else random.getrandbits(62)
        return torch.Generator(device=self.device).manual_seed(seed)

    def _sample(self, rows: list[_Seq], logits: Tensor) -> list[int]:
        """argmax for greedy rows; for the rest, one draw per row from that row's own generator."""
        out = logits.argmax(dim=-1).tolist()
        groups: dict[tuple[float, float], list[int]] = defaultdict(list)
        for i, seq in enumerate(rows):
            if seq.params.temperature > 0:
                groups[(seq.params.temperature, seq.params.top_p)].append(i)
        for (temperature, top_p), idx in groups.items():
            probs = nucleus_probs(logits[idx], temperature, top_p)  # rows with equal settings together
            for r, i in enumerate(idx):
                gen = rows[i].request.generators[rows[i].index]
                out[i] = int(torch.multinomial(probs[r : r + 1], 1, generator=gen))
        return out

    def _logprobs(self, rows: list[_Seq], logits: Tensor, chosen: list[int]) -> list[TokenLogprob | None]:
        out: list[TokenLogprob | None] = [None] * len(rows)
        idx = [i for i, s in enumerate(rows) if s.params.logprobs is not None]
        if not idx:
            return out
        logp = torch.log_softmax(logits[idx], dim=-1)  # (R, V)
        for r, i in enumerate(idx):
            out[i] = _token_logprob(logp[r], chosen[i], rows[i].params.logprobs or 0)
        return out

    def _prompt_logprobs(self, hidden: Tensor, seq: _Seq) -> list[TokenLogprob | None]:
        """log P(prompt[t] | prompt[:t]) for t ≥ 1 (the first token has no context), with top-k each."""
        logp = torch.log_softmax(self.model.project(hidden).float(), dim=-1)  # (P-1, V)
        k = seq.params.prompt_logprobs or 0
        prompt = seq.request.prompt
        return [None, *(_token_logprob(logp[t], prompt[t + 1], k) for t in range(len(prompt) - 1))]

    # ------------------------------------------------------------------ blocks
    def _reserve(self, seq: _Seq, n_tokens: int) -> None:
        """Private blocks for positions seq.cached .. n_tokens-1: new ones, or copies of shared ones."""
        bs = self.pool.block_size
        for b in range(seq.cached // bs, math.ceil(n_tokens / bs)):
            if b == len(seq.blocks):
                seq.blocks.append(self.pool.allocate())
            elif self.pool.refs[seq.blocks[b]] > 1:  # written into while shared: copy on write
                copy = self.pool.copy(seq.blocks[b])
                self.pool.release(seq.blocks[b])
                seq.blocks[b] = copy

    def _release(self, seq: _Seq) -> None:
        for b in seq.blocks:
            self.pool.release(b)
        seq.blocks, seq.cached = [], 0

    def _preempt(self, seq: _Seq) -> None:
        self.running.remove(seq)
        self._release(seq)
        self.waiting.appendleft(seq)  # first in line again: it recomputes before anything new is admitted
        self.stats.preemptions += 1

    def _finish(self, seq: _Seq) -> None:
        self.running.remove(seq)
        self._release(seq)
        seq.request.live -= 1
        if seq.request.live <= 0:
            self.requests.pop(seq.request.id, None)


def _token_logprob(logp: Tensor, token: int, k: int) -> TokenLogprob:
    top = ()
    if k > 0:
        values, ids = logp.topk(k)
        top = tuple(zip(ids.tolist(), values.tolist()))
    return TokenLogprob(float(logp[token]), top)
