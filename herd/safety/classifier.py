"""GuardClassifier: any herd-loadable causal LM run as Llama Guard 3 (herd.load_model + its tokenizer).

A real Llama Guard 3 checkpoint (HF folder or GGUF) and a tiny random Llama of the same architecture go
through the same code: the prompt of herd.safety.llama_guard, one forward pass scoring the first answer
token (P(unsafe) against P(safe), as Meta turns the guard into a classifier score [PL MODEL_CARD]), and
greedy decoding of the category line only when the verdict is unsafe. `category_decoding="constrained"`
instead reads one code from the answer's own distribution: after `unsafe\nS` only tokens that spell one of
S1–S14 may follow. Both decide token by token, which is biased wherever codes share a prefix: in a
vocabulary that splits digits (SmolLM2's), `S1` is the first token of S1 and S10–S14, so a guard unsure of
the category puts ~6/14 of its mass on `1` and greedy or constrained decoding answers S1x for every case
(docs/safety.md: the S14-for-everything guard). `category_decoding="closed"` scores the 14 codes as a closed
set instead: log P(code, then the end of the code | prompt, `unsafe\n`) of each whole code string, argmax.
All three read the same prompt and the same answer format as Meta's checkpoint, which runs unchanged.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import torch

from herd.safety.llama_guard import GuardVerdict, guard_task, parse_guard_output
from herd.tokenizer import Llama3ChatFormat, TokenizerLike, load_chat_format


def guard_chat_format(tokenizer: TokenizerLike) -> Any:
    """The chat layout the guard prompt goes in (herd.safety.guard_lm trains in the same one)."""
    # A Llama 3 vocabulary gets the Llama 3.1 layout, even when its tokenizer carries a chat template:
    # the guard checkpoint's own template already wraps the whole prompt and must not wrap it twice.
    if "<|start_header_id|>" in tokenizer.special_ids:
        return Llama3ChatFormat(tokenizer)
    return load_chat_format(tokenizer)


class GuardClassifier:
    """`classify(messages)` → GuardVerdict for the last message (User input or Agent output)."""

    def __init__(
        self,
        model: Any,
        tokenizer: TokenizerLike,
        threshold: float = 0.5,
        categories: Sequence[str] | None = None,
        max_new_tokens: int = 16,
        category_decoding: str = "greedy",
    ) -> None:
        if category_decoding not in ("greedy", "constrained", "closed"):
            raise ValueError(f"guard: category_decoding={category_decoding!r}: 'greedy', 'constrained' or 'closed'")
        self.model, self.tokenizer = model.eval(), tokenizer
        self.threshold, self.categories, self.max_new_tokens = threshold, categories, max_new_tokens
        self.category_decoding = category_decoding
        self.fmt = guard_chat_format(tokenizer)
        self.safe_id, self.unsafe_id = self._first_ids()

    @classmethod
    def load(cls, model: str | Path, tokenizer: str | Path | None = None, device: str = "cpu", **kw: Any):
        """A checkpoint path (HF folder, Meta folder, .gguf) or bundled name, with its own tokenizer."""
        from herd.model import load_model, resolve
        from herd.tokenizer import load_tokenizer

        source = resolve(model)
        tok = load_tokenizer(tokenizer or (model if model == "smollm2" else source))
        return cls(load_model(source, device=device), tok, **kw)

    def _first_ids(self) -> tuple[int, int]:
        safe, unsafe = self.tokenizer.encode("safe"), self.tokenizer.encode("unsafe")
        if safe[0] == unsafe[0]:
            raise ValueError("guard: 'safe' and 'unsafe' share their first token in this vocabulary")
        return safe[0], unsafe[0]

    def encode(self, messages: Sequence[Mapping[str, Any]]) -> list[int]:
        """Prompt ids: the guard task as one user turn, then the assistant header the answer follows."""
        return self.fmt.encode_prompt([{"role": "user", "content": guard_task(messages, self.categories)}])

    @torch.no_grad()
    def p_unsafe(self, batch: Sequence[Sequence[Mapping[str, Any]]]) -> list[float]:
        """P(first answer token = unsafe | it is safe or unsafe), one conversation at a time (no padding)."""
        device = self.model.tok_embeddings.weight.device
        out = []
        for messages in batch:
            ids = torch.tensor([self.encode(messages)], device=device)
            logits = self.model(ids)[0, -1].float()  # (V,): the first answer token
            pair = torch.stack([logits[self.safe_id], logits[self.unsafe_id]])
            out.append(float(torch.softmax(pair, 0)[1]))
        return out

    def classify(self, messages: Sequence[Mapping[str, Any]]) -> GuardVerdict:
        p = self.p_unsafe([messages])[0]
        if p < self.threshold:
            return GuardVerdict("safe", p_unsafe=p)
        if self.category_decoding == "constrained":
            return GuardVerdict("unsafe", (self.constrained_category(messages),), p_unsafe=p)
        if self.category_decoding == "closed":
            scores = self.category_scores(messages)
            return GuardVerdict("unsafe", (max(scores, key=scores.__getitem__),), p_unsafe=p)
        text = self.generate(messages)
        verdict = parse_guard_output(text)
        # The score decided unsafe; the decoded text only supplies the categories.
        problem = verdict.problem if verdict.label == "unsafe" else f"decoded {text.strip()[:40]!r}"
        return GuardVerdict("unsafe", verdict.categories, problem, p_unsafe=p)

    def generate(self, messages: Sequence[Mapping[str, Any]]) -> str:
        """The guard's greedy answer text, e.g. 'unsafe\\nS1'."""
        from herd.model import generate

        ids = self.encode(messages)
        out = generate(self.model, [ids], max_new_tokens=self.max_new_tokens, stop_ids=sorted(self.tokenizer.stop_ids))
        return self.tokenizer.decode(out[0])

    @torch.no_grad()
    def constrained_category(self, messages: Sequence[Mapping[str, Any]]) -> str:
        """The code read greedily from the answer after `unsafe\nS`, allowing only tokens that spell one of
        S1–S14 (a trie of their tokenizations: one forward pass per token, at most two here)."""
        from herd.safety.llama_guard import CATEGORIES

        prefix = self.tokenizer.encode("unsafe\nS")
        trie: dict[tuple[int, ...], str] = {}
        for code in CATEGORIES:
            ids = self.tokenizer.encode("unsafe\n" + code)
            if ids[: len(prefix)] != prefix:  # the vocabulary merges across the prefix: no clean split
                raise ValueError(f"guard: cannot split {code!r} after 'unsafe\\nS' in this vocabulary")
            trie[tuple(ids[len(prefix) :])] = code
        ends = sorted({*self.tokenizer.stop_ids, *self.tokenizer.encode(",")[:1]})
        device = self.model.tok_embeddings.weight.device
        ids, done = [*self.encode(messages), *prefix], ()
        while True:
            nxt = sorted({k[len(done)] for k in trie if len(k) > len(done) and k[: len(done)] == done})
            if not nxt:
                return trie[done]
            logits = self.model(torch.tensor([ids], device=device))[0, -1].float()
            best = nxt[int(logits[nxt].argmax())]
            if done in trie and logits[ends].max() >= logits[best]:
                return trie[done]  # ending here beats every longer code
            done, ids = (*done, best), [*ids, best]

    def _code_suffixes(self) -> dict[str, list[int]]:
        """Each code's token ids after `unsafe\n` (the prefix must tokenize the same on its own)."""
        from herd.safety.llama_guard import CATEGORIES

        prefix = self.tokenizer.encode("unsafe\n")
        out = {}
        for code in CATEGORIES:
            ids = self.tokenizer.encode("unsafe\n" + code)
            if ids[: len(prefix)] != prefix:
                raise ValueError(f"guard: cannot split {code!r} after 'unsafe\\n' in this vocabulary")
            out[code] = ids[len(prefix) :]
        return out

    @torch.no_grad()
    def category_scores(self, messages: Sequence[Mapping[str, Any]]) -> dict[str, float]:
        """log P(code | unsafe) over S1–S14 as a closed set: the whole code's tokens, then a token that ends
        it (the end of the answer or `,`), renormalised over the 14. One prefill of the prompt + `unsafe\n`
        and one batched step over every code's tokens on the KV cache."""
        from herd.model.cache import KVCache

        codes = self._code_suffixes()
        width = max(len(v) for v in codes.values())
        ends = sorted({*self.tokenizer.stop_ids, *self.tokenizer.encode(",")[:1]})
        model, device = self.model, self.model.tok_embeddings.weight.device
        ids = [*self.encode(messages), *self.tokenizer.encode("unsafe\n")]
        cache = KVCache(model.cfg, 1, len(ids) + width, dtype=model.tok_embeddings.weight.dtype, device=device)
        first = model.project(model(torch.tensor([ids], device=device), *cache.extend(len(ids)), return_hidden=True)
                              [:, -1:])[0, -1].float().log_softmax(-1)  # fmt: skip
        cache.repeat_rows(len(codes))
        # Rows shorter than the longest code are padded after it: causal attention keeps the pad out of
        # every position that is read.
        rows = torch.tensor([v + [ends[0]] * (width - len(v)) for v in codes.values()], device=device)
        logp = model(rows, *cache.extend(width)).float().log_softmax(-1)  # (14, width, V)
        scores = {}
        for r, (code, toks) in enumerate(codes.items()):
            total = float(first[toks[0]]) + sum(float(logp[r, j - 1, t]) for j, t in enumerate(toks) if j)
            scores[code] = total + float(logp[r, len(toks) - 1, ends].logsumexp(0))
        norm = torch.tensor(list(scores.values())).logsumexp(0).item()
        return {c: v - norm for c, v in scores.items()}

    def __call__(self, messages: Sequence[Mapping[str, Any]]) -> GuardVerdict:
        return self.classify(messages)
