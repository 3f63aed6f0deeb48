"""The one interface the harness talks to: log-likelihood of continuations, rolling log-likelihood, generation.

Two implementations share the text handling (so herd checkpoints and HF models are scored alike):
`HerdScorer` runs a herd `Transformer`; `HFScorer` runs a transformers causal LM. Context/continuation
splitting follows lm-evaluation-harness exactly (trailing context spaces move to the continuation, the
pair is encoded whole and split at the context's length), so per-example choices can be compared with it.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

import torch
from torch import Tensor


@runtime_checkable
class Scorer(Protocol):
    """What a model must answer to be evaluated (the harness never sees tokens or tensors)."""

    name: str

    def loglikelihood(self, requests: Sequence[tuple[str, str]]) -> list[tuple[float, bool]]:
        """(log P(continuation | context), whether greedy decoding would produce it) per request."""
        ...

    def loglikelihood_rolling(self, texts: Sequence[str]) -> list[float]:
        """log P(text), every token scored, in windows of the model's context length."""
        ...

    def generate(
        self,
        prompts: Sequence[str],
        max_new_tokens: int = 256,
        stop: Sequence[str] = (),
        temperature: float = 0.0,
        top_p: float = 1.0,
        seed: int = 0,
    ) -> list[str]:
        """Continuation text per prompt, cut before the first stop string."""
        ...


@dataclass(frozen=True)
class _Request:
    index: int
    inputs: tuple[int, ...]  # tokens fed to the model
    targets: tuple[int, ...]  # the last len(targets) positions of `inputs` predict these


class _AllStopped(Exception):
    """Raised from a streaming callback to end generation once every row has hit a stop string."""


class TokenScorer:
    """Text → tokens → batched forward passes; subclasses provide the tokenizer and the model calls."""

    name = "tokens"

    def __init__(self, max_length: int, add_bos: bool, prefix_id: int, batch_tokens: int = 4096) -> None:
        self.max_length = max_length
        self.add_bos = add_bos
        self.prefix_id = prefix_id  # conditions an empty context (lm-eval: BOS, else EOS)
        self.batch_tokens = batch_tokens

    # ---- subclass hooks
    def encode(self, text: str) -> list[int]:
        raise NotImplementedError

    def decode(self, ids: Sequence[int]) -> str:
        raise NotImplementedError

    def bos_ids(self) -> list[int]:
        return [self.prefix_id] if self.add_bos else []

    def _logprobs_at(self, inputs: Tensor, positions: Tensor) -> Tensor:
        """inputs (B, T), positions (B, P) → log-softmax over the vocabulary at those positions (B, P, V)."""
        raise NotImplementedError

    def _generate_ids(
        self, prompts: list[list[int]], max_new_tokens: int, temperature: float, top_p: float, seed: int, stop: Any
    ) -> list[list[int]]:
        raise NotImplementedError

    # ---- log-likelihood
    def encode_pair(self, context: str, continuation: str) -> tuple[list[int], list[int]]:
        """lm-eval's split: trailing spaces of the context join the continuation, the pair is encoded whole."""
        if not context:
            cont = self.encode(continuation)
            return ([self.prefix_id], cont) if not cont or cont[0] != self.prefix_id else (cont[:1], cont[1:])
        n_spaces = len(context) - len(context.rstrip())
        if n_spaces:
            context, continuation = context[:-n_spaces], context[-n_spaces:] + continuation
        whole = self.bos_ids() + self.encode(context + continuation)
        ctx = self.bos_ids() + self.encode(context)
        return ctx, whole[len(ctx) :]

    def loglikelihood(self, requests: Sequence[tuple[str, str]]) -> list[tuple[float, bool]]:
        return self.loglikelihood_tokens([self.encode_pair(c, x) for c, x in requests])

    def loglikelihood_tokens(self, pairs: Sequence[tuple[list[int], list[int]]]) -> list[tuple[float, bool]]:
        reqs = []
        for i, (ctx, cont) in enumerate(pairs):
            if not cont:
                raise ValueError(f"request {i}: the continuation encodes to no tokens")
            seq = (list(ctx) + list(cont))[-(self.max_length + 1) :]  # left-truncate to the context length
            n_targets = min(len(cont), len(seq) - 1)
            reqs.append(_Request(i, tuple(seq[:-1]), tuple(cont[-n_targets:])))
        # Requests with identical inputs (e.g. one-token answer letters after one prompt) share a forward row.
        groups: dict[tuple[int, ...], list[_Request]] = {}
        for r in reqs:
            groups.setdefault(r.inputs, []).append(r)
        rows = sorted(groups, key=len, reverse=True)  # longest first: padding stays small, OOM shows early
        out: list[tuple[float, bool]] = [(0.0, False)] * len(reqs)
        for batch in self._batches(rows):
            for row, scored in zip(batch, self._score_rows(batch, [groups[r] for r in batch])):
                for r, result in zip(groups[row], scored):
                    out[r.index] = result
        return out

    def _batches(self, rows: list[tuple[int, ...]]) -> list[list[tuple[int, ...]]]:
        batches: list[list[tuple[int, ...]]] = []
        for row in rows:  # sorted longest first, so the first row of a batch sets its width
            if batches and (len(batches[-1]) + 1) * len(batches[-1][0]) <= self.batch_tokens:
                batches[-1].append(row)
            else:
                batches.append([row])
        return batches

    @torch.inference_mode()
    def _score_rows(self, batch: list[tuple[int, ...]], groups: list[list[_Request]]) -> list[list[tuple[float, bool]]]:
        width = len(batch[0])
        n_pos = max(len(r.targets) for g in groups for r in g)
        inputs = torch.zeros(len(batch), width, dtype=torch.long)  # right padding never reaches earlier positions
        positions = torch.zeros(len(batch), n_pos, dtype=torch.long)
        for b, row in enumerate(batch):
            inputs[b, : len(row)] = torch.tensor(row)
            positions[b] = torch.arange(len(row) - n_pos, len(row)).clamp(min=0)
        logp = self._logprobs_at(inputs, positions).float()  # (B, P, V)
        greedy = logp.argmax(-1)  # (B, P)
        results = []
        for b, group in enumerate(groups):
            scored = []
            for r in group:
                k = len(r.targets)
                tgt = torch.tensor(r.targets)
                lp = logp[b, n_pos - k :].gather(-1, tgt[:, None]).squeeze(-1)
                scored.append((float(lp.sum()), bool((greedy[b, n_pos - k :] == tgt).all())))
            results.append(scored)
        return results

    def loglikelihood_rolling(self, texts: Sequence[str]) -> list[float]:
        pairs, owner = [], []
        for i, text in enumerate(texts):
            full = [self.prefix_id, *self.encode(text)]
            for s in range(0, len(full) - 1, self.max_length):
                e = min(s + self.max_length, len(full) - 1)  # predict full[s+1 : e+1]
                a = max(0, e - self.max_length + 1)
                pairs.append((full[a : s + 1], full[s + 1 : e + 1]))
                owner.append(i)
        totals = [0.0] * len(texts)
        for i, (lp, _) in zip(owner, self.loglikelihood_tokens(pairs)):
            totals[i] += lp
        return totals

    # ---- generation
    def generate(
        self,
        prompts: Sequence[str],
        max_new_tokens: int = 256,
        stop: Sequence[str] = (),
        temperature: float = 0.0,
        top_p: float = 1.0,
        seed: int = 0,
        batch_size: int = 8,
    ) -> list[str]:
        encoded = [(self.bos_ids() + self.encode(p))[-(self.max_length - max_new_tokens) :] for p in prompts]
        order = sorted(range(len(prompts)), key=lambda i: -len(encoded[i]))
        out = [""] * len(prompts)
        for start in range(0, len(order), batch_size):
            idx = order[start : start + batch_size]
            ids = self._generate_ids([encoded[i] for i in idx], max_new_tokens, temperature, top_p, seed, stop)
            for i, new in zip(idx, ids):
                out[i] = cut_at_stop(self.decode(new), stop)
        return out


def cut_at_stop(text: str, stop: Sequence[str]) -> str:
    """`text` up to the earliest stop string."""
    cuts = [text.find(s) for s in stop if s and s in text]
    return text[: min(cuts)] if cuts else text


class _StopWatcher:
    """Collects streamed tokens per row; ends generation early once every row has produced a stop string or
    stopped streaming (its stop token: `generate` calls back rows in order each step and skips finished ones)."""

    def __init__(self, n: int, decode: Callable[[Sequence[int]], str], stop: Sequence[str]) -> None:
        self.ids: list[list[int]] = [[] for _ in range(n)]
        self.done = [False] * n
        self.seen = [0] * n  # the last step in which each row produced a token
        self.step, self.prev_row = 0, n
        self.decode, self.stop = decode, [s for s in stop if s]

    def __call__(self, row: int, token: int) -> None:
        if row <= self.prev_row:  # a new step began: rows silent in the previous step have finished
            self.step += 1
            self.done = [d or seen < self.step - 1 for d, seen in zip(self.done, self.seen)]
        self.prev_row, self.seen[row] = row, self.step
        self.ids[row].append(token)
        if self.stop and not self.done[row]:
            tail = self.decode(self.ids[row][-32:])  # stop strings are short: the tail suffices
            self.done[row] = any(s in tail for s in self.stop)
        if self.stop and all(self.done):
            raise _AllStopped


# ----------------------------------------------------------------------------------------------- herd


class HerdScorer(TokenScorer):
    """A herd `Transformer` with a herd tokenizer (`herd.tokenizer.TokenizerLike`)."""

    def __init__(
        self,
        model: Any,
        tokenizer: Any,
        add_bos: bool | None = None,
        batch_tokens: int = 4096,
        dtype: torch.dtype | None = None,
        name: str = "herd",
        share_prefix: bool = True,
    ) -> None:
        if add_bos is None:
            add_bos = tokenizer_adds_bos(tokenizer)
        prefix = tokenizer.bos_id if tokenizer.bos_id is not None else tokenizer.eos_id
        super().__init__(model.cfg.max_seq_len, add_bos, prefix, batch_tokens)
        self.model, self.tokenizer, self.name = model.eval(), tokenizer, name
        self.device = model.tok_embeddings.weight.device
        self.autocast_dtype = dtype
        self.share_prefix = share_prefix  # run a shared context once (multiple choice); exact either way

    def encode(self, text: str) -> list[int]:
        return self.tokenizer.encode(text)

    def decode(self, ids: Sequence[int]) -> str:
        return self.tokenizer.decode(list(ids))

    def _autocast(self) -> Any:
        if self.autocast_dtype in (torch.bfloat16, torch.float16):
            return torch.autocast(self.device.type, dtype=self.autocast_dtype)
        return contextlib.nullcontext()

    def _logprobs_at(self, inputs: Tensor, positions: Tensor) -> Tensor:
        with self._autocast():
            h = self.model(inputs.to(self.device), return_hidden=True)  # (B, T, dim)
            # Project only the scored positions: the vocabulary matmul is a fifth of a small model's FLOPs.
            h = h.gather(1, positions.to(self.device)[..., None].expand(-1, -1, h.shape[-1]))  # (B, P, dim)
            logits = self.model.project(h)  # (B, P, V)
        return torch.log_softmax(logits.float(), dim=-1).cpu()

    # ---- shared prefixes: a multiple-choice context is run once, its KV cache copied to every choice
    def loglikelihood_tokens(self, pairs: Sequence[tuple[list[int], list[int]]]) -> list[tuple[float, bool]]:
        if not self.share_prefix:
            return super().loglikelihood_tokens(pairs)
        out: list[tuple[float, bool]] = [(0.0, False)] * len(pairs)
        groups: dict[tuple[int, ...], list[int]] = {}
        long = []
        for i, (ctx, cont) in enumerate(pairs):
            if not cont:
                raise ValueError(f"request {i}: the continuation encodes to no tokens")
            if len(ctx) + len(cont) > self.max_length or not ctx:
                long.append(i)  # needs left truncation: the plain path handles it
            else:
                groups.setdefault(tuple(ctx), []).append(i)
        if long:
            for i, res in zip(long, super().loglikelihood_tokens([pairs[i] for i in long])):
                out[i] = res
        contexts = sorted(groups, key=len, reverse=True)
        for batch in self._prefix_batches(contexts, groups, pairs):
            for i, res in self._score_shared(batch, groups, pairs).items():
                out[i] = res
        return out

    def _prefix_batches(
        self, contexts: list[tuple[int, ...]], groups: dict[tuple[int, ...], list[int]], pairs: Sequence
    ) -> list[list[tuple[int, ...]]]:
        """Contexts of similar length together (prefill padding); choices are re-sorted by length later."""
        longest = {ctx: max(len(pairs[i][1]) for i in groups[ctx]) for ctx in contexts}
        contexts = sorted(contexts, key=lambda c: (len(c), longest[c]), reverse=True)
        batches: list[list[tuple[int, ...]]] = []
        rows = ctx_w = cont_w = 0
        for ctx in contexts:
            n, c_w, k_w = rows + len(groups[ctx]), max(ctx_w, len(ctx)), max(cont_w, longest[ctx])
            if batches and n * (c_w + k_w) <= self.batch_tokens:
                batches[-1].append(ctx)
                rows, ctx_w, cont_w = n, c_w, k_w
            else:
                batches.append([ctx])
                rows, ctx_w, cont_w = len(groups[ctx]), len(ctx), longest[ctx]
        return [sorted(b, key=len, reverse=True) for b in batches]

    @torch.inference_mode()
    def _score_shared(
        self, batch: list[tuple[int, ...]], groups: dict[tuple[int, ...], list[int]], pairs: Sequence
    ) -> dict[int, tuple[float, bool]]:
        from herd.model.cache import KVCache

        cfg, dev = self.model.cfg, self.device
        width = len(batch[0])  # contexts are sorted longest first
        pad = torch.tensor([width - len(c) for c in batch], device=dev)
        rows = [(e, i) for e, ctx in enumerate(batch) for i in groups[ctx]]
        dtype = self.model.tok_embeddings.weight.dtype
        cache = KVCache(cfg, len(batch), width, pad=pad, dtype=dtype, device=dev)
        tokens = torch.zeros(len(batch), width, dtype=torch.long, device=dev)
        for e, ctx in enumerate(batch):  # left padding: every context ends at the same slot
            tokens[e, width - len(ctx) :] = torch.tensor(ctx)
        with self._autocast():
            last = self.model(tokens, *cache.extend(width), return_hidden=True)[:, -1]  # (E, dim): predicts token 1
        out = {}
        # Choices of similar length together, so right padding stays small.
        rows.sort(key=lambda row: len(pairs[row[1]][1]), reverse=True)
        for chunk in self._row_chunks(rows, pairs, width):
            n_cont = len(pairs[chunk[0][1]][1])
            with self._autocast():
                hidden = last[[e for e, _ in chunk]][:, None]  # (R, 1, dim)
                if n_cont > 1:
                    rest = self._continue(cache, chunk, pairs, width, n_cont, dtype)  # (R, n_cont−1, dim)
                    hidden = torch.cat([hidden, rest], dim=1)
                logits = self.model.project(hidden)  # (R, n_cont, V)
            logp = torch.log_softmax(logits.float(), dim=-1).cpu()
            greedy = logp.argmax(-1)
            for r, (_, i) in enumerate(chunk):
                cont = torch.tensor(pairs[i][1])
                k = len(cont)
                lp = logp[r, :k].gather(-1, cont[:, None]).squeeze(-1)
                out[i] = (float(lp.sum()), bool((greedy[r, :k] == cont).all()))
        return out

    def _row_chunks(self, rows: list[tuple[int, int]], pairs: Sequence, width: int) -> list[list[tuple[int, int]]]:
        chunks: list[list[tuple[int, int]]] = []
        for row in rows:  # longest choice first: the first row of a chunk sets its width
            first = len(pairs[chunks[-1][0][1]][1]) if chunks else 0
            fits = chunks and (len(chunks[-1]) + 1) * (width + first) <= self.batch_tokens
            # A much shorter choice starts a new chunk rather than being padded to the first one's length.
            if fits and 4 * len(pairs[row[1]][1]) >= 3 * first:
                chunks[-1].append(row)
            else:
                chunks.append([row])
        return chunks

    def _continue(
        self, cache: Any, rows: list[tuple[int, int]], pairs: Sequence, width: int, n_cont: int, dtype: torch.dtype
    ) -> Tensor:
        """Feed every choice's tokens but the last after a copy of its context's cache; hidden states out."""
        from herd.model.cache import KVCache

        idx = torch.tensor([e for e, _ in rows], device=self.device)
        grown = KVCache(
            self.model.cfg, len(rows), width + n_cont - 1, pad=cache.pad[idx], dtype=dtype, device=self.device
        )
        for layer in range(self.model.cfg.n_layers):
            grown.k[layer][:, :, :width] = cache.k[layer][idx]
            grown.v[layer][:, :, :width] = cache.v[layer][idx]
        grown.pos = width
        grown.padded = cache.padded
        feed = torch.zeros(len(rows), n_cont - 1, dtype=torch.long, device=self.device)
        for r, (_, i) in enumerate(rows):  # right padding: pads come after a row's real tokens
            cont = pairs[i][1][:-1]
            feed[r, : len(cont)] = torch.tensor(cont, dtype=torch.long)
        return self.model(feed, *grown.extend(n_cont - 1), return_hidden=True)  # (R, n_cont − 1, dim)

    def _generate_ids(
        self, prompts: list[list[int]], max_new_tokens: int, temperature: float, top_p: float, seed: int, stop: Any
    ) -> list[list[int]]:
        from herd.model import generate

        watch = _StopWatcher(len(prompts), self.decode, stop)
        with contextlib.suppress(_AllStopped), self._autocast():
            generate(
                self.model,
                prompts,
                max_new_tokens=max_new_tokens,
                temperature=temperature,
                top_p=top_p,
                stop_ids=sorted(self.tokenizer.stop_ids),
                seed=seed,
                on_token=watch,
            )
        return watch.ids


def tokenizer_adds_bos(tokenizer: Any) -> bool:
    """Whether the model's own tokenizer puts BOS first by default (Llama 3's does; SmolLM2's does not)."""
    backend = getattr(tokenizer, "backend", None)
    if backend is None:  # herd's tiktoken tokenizer: Llama 3 convention, BOS always
        return tokenizer.bos_id is not None
    ids = backend.encode("a", add_special_tokens=True).ids
    return bool(ids) and tokenizer.bos_id is not None and ids[0] == tokenizer.bos_id


# ----------------------------------------------------------------------------------------------- transformers


class HFScorer(TokenScorer):
    """A transformers causal LM and its tokenizer, scored by the same code as herd models."""

    def __init__(self, model: Any, tokenizer: Any, batch_tokens: int = 4096, name: str = "hf") -> None:
        ids = tokenizer("a")["input_ids"]
        add_bos = bool(ids) and tokenizer.bos_token_id is not None and ids[0] == tokenizer.bos_token_id
        prefix = tokenizer.bos_token_id if tokenizer.bos_token_id is not None else tokenizer.eos_token_id
        max_len = getattr(model.config, "max_position_embeddings", 2048)
        super().__init__(max_len, add_bos, prefix, batch_tokens)
        self.model, self.tokenizer, self.name = model.eval(), tokenizer, name
        self.device = next(model.parameters()).device

    @classmethod
    def from_pretrained(cls, path: str | Path, dtype: torch.dtype = torch.float32, **kwargs: Any) -> HFScorer:
        """A HF folder, or a `.gguf` file (transformers dequantizes it)."""
        import transformers

        path = Path(path)
        extra = {"gguf_file": path.name} if path.suffix == ".gguf" else {}
        folder = path.parent if extra else path
        tok = transformers.AutoTokenizer.from_pretrained(folder, **extra)
        model = transformers.AutoModelForCausalLM.from_pretrained(folder, dtype=dtype, **extra)
        return cls(model, tok, **kwargs)

    def encode(self, text: str) -> list[int]:
        return list(self.tokenizer(text, add_special_tokens=False)["input_ids"])

    def decode(self, ids: Sequence[int]) -> str:
        return self.tokenizer.decode(list(ids))

    def _logprobs_at(self, inputs: Tensor, positions: Tensor) -> Tensor:
        logits = self.model(inputs.to(self.device)).logits  # (B, T, V)
        logits = logits.gather(1, positions.to(self.device)[..., None].expand(-1, -1, logits.shape[-1]))
        return torch.log_softmax(logits.float(), dim=-1).cpu()

    def _generate_ids(
        self, prompts: list[list[int]], max_new_tokens: int, temperature: float, top_p: float, seed: int, stop: Any
    ) -> list[list[int]]:
        width = max(len(p) for p in prompts)
        pad = self.tokenizer.pad_token_id if self.tokenizer.pad_token_id is not None else self.prefix_id
        ids = torch.full((len(prompts), width), pad, dtype=torch.long)
        mask = torch.zeros_like(ids)
        for i, p in enumerate(prompts):  # left padding, so every row continues from its last real token
            ids[i, width - len(p) :], mask[i, width - len(p) :] = torch.tensor(p), 1
        torch.manual_seed(seed)
        sampling = {"do_sample": True, "temperature": temperature, "top_p": top_p} if temperature > 0 else {}
        with torch.inference_mode():
            out = self.model.generate(
                input_ids=ids.to(self.device),
                attention_mask=mask.to(self.device),
                max_new_tokens=max_new_tokens,
                pad_token_id=pad,
                do_sample=False,
                **sampling,
            )
        eos = self.tokenizer.eos_token_id
        rows = []
        for row in out[:, width:].tolist():
            rows.append(row[: row.index(eos)] if eos in row else row)
        return rows


# ----------------------------------------------------------------------------------------------- loading


def load_scorer(
    model: str | Path,
    backend: str = "herd",
    tokenizer: str | Path | None = None,
    device: str = "auto",
    dtype: str = "fp32",
    batch_tokens: int = 4096,
    add_bos: bool | None = None,
) -> Scorer:
    """A scorer for a bundled name (smollm2), a herd/HF checkpoint folder or a GGUF file.

    backend "herd" loads the weights into herd's Transformer; "hf" into transformers (the reference)."""
    from herd.core.runtime import pick_device, pick_dtype
    from herd.model import resolve

    dev = pick_device(device)
    torch_dtype = pick_dtype(dtype, dev)
    source = resolve(model)
    if backend == "hf":
        scorer = HFScorer.from_pretrained(source, dtype=torch_dtype, batch_tokens=batch_tokens)
        scorer.model.to(dev)
        scorer.device = dev
        return scorer
    if backend != "herd":
        raise ValueError(f"unknown scorer backend {backend!r}: expected 'herd' or 'hf'")
    from herd.model import load_model
    from herd.tokenizer import load_tokenizer

    tok_source = tokenizer or (model if str(model) in ("smollm2", "llama3") else source)
    if isinstance(tok_source, str) and not Path(tok_source).exists() and tok_source not in ("llama3", "smollm2"):
        raise ValueError(f"model {model}: a preset has no tokenizer; set model.tokenizer")
    tok = load_tokenizer(tok_source)
    net = load_model(source, device=dev)
    # Weights stay fp32 on CPU; a 16-bit dtype runs under autocast (keeps log-softmax in fp32).
    return HerdScorer(
        net, tok, add_bos=add_bos, batch_tokens=batch_tokens, dtype=torch_dtype, name=f"herd:{Path(str(model)).name}"
    )
