"""Rejection sampling: K samples per prompt from the policy, the reward model keeps the best [P §4.2.2].

By default the samples come from herd's serving engine (herd.model.engine): continuous batching over a
paged KV cache whose prompt blocks the K samples of a prompt share copy-on-write, the paper's PagedAttention
setup [P §4.2.2]; a finished sample leaves the batch at once. `sampler = "static"` prefills each prompt
once and copies its cache rows K times into a static batch; `"naive"` prefills every sample (the
baseline). Steering system prompts, used in later rounds to shape tone and format, are optional.
"""

from __future__ import annotations

import re
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import torch

from herd.model import Transformer, generate
from herd.posttrain.data import Preference
from herd.posttrain.mix import category_of
from herd.posttrain.reward import RewardModel, score
from herd.tokenizer.chat import ChatFormatLike


@dataclass
class RSConfig:
    k: int = 10  # samples per prompt; 10–30 in the paper [P §4.2.2]
    max_prompts: int = 64
    max_new_tokens: int = 48
    temperature: float = 1.0
    top_p: float = 0.95
    prompts_per_batch: int = 8
    shared_prefill: bool = True  # the static sampler: prefill once per prompt (False: once per sample)
    sampler: str = "engine"  # engine | static [P §4.2.2]
    system_prompts: list[str] = field(default_factory=list)  # steering prompts, cycled over the prompts
    seed: int = 0


@torch.inference_mode()
def sample_k(
    model: Transformer,
    prompts: Sequence[Sequence[int]],
    k: int,
    max_new_tokens: int,
    temperature: float = 1.0,
    top_p: float = 1.0,
    stop_ids: Sequence[int] = (),
    seed: int | None = None,
) -> list[list[list[int]]]:
    """K continuations per prompt: prefill each prompt once, copy its cache rows K times, decode B·K rows."""
    flat = generate(model, prompts, max_new_tokens, temperature, top_p, stop_ids, seed, num_samples=k)
    return [flat[i * k : (i + 1) * k] for i in range(len(prompts))]


def sample_engine(
    model: Transformer,
    prompts: Sequence[Sequence[int]],
    k: int,
    max_new_tokens: int,
    temperature: float = 1.0,
    top_p: float = 1.0,
    stop_ids: Sequence[int] = (),
    seed: int | None = None,
) -> list[list[list[int]]]:
    """K continuations per prompt from the paged engine (its KV pool sized for this batch)."""
    from herd.model.engine import Engine, EngineConfig, SamplingParams

    longest = max(len(p) for p in prompts) + max_new_tokens
    kv = len(prompts) * k * (longest + 16)  # room for every sample at once: no preemption
    engine = Engine(model, EngineConfig(kv_tokens=kv, max_batch=len(prompts) * k))
    params = SamplingParams(max_new_tokens, temperature, top_p, n=k, seed=seed, stop_ids=frozenset(stop_ids))
    return engine.generate(prompts, params)


def sample_naive(model: Transformer, prompts: Sequence[Sequence[int]], k: int, **kw: Any) -> list[list[list[int]]]:
    """The baseline: every sample prefills its own copy of the prompt."""
    flat = generate(model, [p for p in prompts for _ in range(k)], **kw)
    return [flat[i * k : (i + 1) * k] for i in range(len(prompts))]


def with_system(prompt: list[dict[str, str]], system_prompts: Sequence[str], i: int) -> list[dict[str, str]]:
    if not system_prompts or prompt[0]["role"] == "system":
        return prompt
    return [{"role": "system", "content": system_prompts[i % len(system_prompts)]}, *prompt]


def rejection_sample(
    policy: Transformer, rm: RewardModel, chat: ChatFormatLike, rows: Sequence[Mapping[str, Any]], cfg: RSConfig
) -> dict[str, Any]:
    """Best-of-K per prompt by RM score. Returns the kept dialogs, verifiable preference pairs, and stats."""
    stop_ids = sorted(chat.tokenizer.stop_ids)
    end = end_token(chat)
    rows = list(rows)[: cfg.max_prompts]
    kept, new_prefs, best_scores, all_scores = [], [], [], []
    n_tokens, start = 0, time.perf_counter()
    if cfg.sampler not in ("engine", "static"):
        raise ValueError(f"rs.sampler: {cfg.sampler!r} is not one of 'engine', 'static'")
    sampler = sample_engine if cfg.sampler == "engine" else sample_k if cfg.shared_prefill else sample_naive
    for i in range(0, len(rows), cfg.prompts_per_batch):
        chunk = rows[i : i + cfg.prompts_per_batch]
        msgs = [with_system(r["prompt"], cfg.system_prompts, i + j) for j, r in enumerate(chunk)]
        prompts = [chat.encode_prompt(m) for m in msgs]
        kw = dict(max_new_tokens=cfg.max_new_tokens, temperature=cfg.temperature, top_p=cfg.top_p)
        samples = sampler(policy, prompts, cfg.k, stop_ids=stop_ids, seed=cfg.seed + i, **kw)
        for row, m, p, outs in zip(chunk, msgs, prompts, samples):
            n_tokens += sum(len(o) for o in outs)
            responses = [[*o, end] for o in outs]  # scored as the finished turn the RM was trained on
            scores = score(rm, [p] * len(outs), responses)
            best = max(range(len(outs)), key=scores.__getitem__)
            texts = [chat.decode_message(o)["content"] for o in outs]
            kept.append(
                {
                    "messages": [*m, {"role": "assistant", "content": texts[best]}],
                    "source": "rs",
                    "category": category_of(row),  # the prompt's category: a code prompt's reply is code data
                    "score": scores[best],
                }
            )
            best_scores.append(scores[best])
            all_scores.append(sum(scores) / len(scores))
            if (pair := verified_pair(row, texts)) is not None:
                new_prefs.append(pair)
    seconds = time.perf_counter() - start
    n_samples = len(rows) * cfg.k
    return {
        "kept": kept,
        "prefs": new_prefs,
        "stats": {
            "prompts": len(rows),
            "k": cfg.k,
            "best_of_k_mean_score": sum(best_scores) / max(len(best_scores), 1),
            "all_samples_mean_score": sum(all_scores) / max(len(all_scores), 1),
            "samples_per_s": n_samples / seconds,
            "tokens_per_s": n_tokens / seconds,
            "verified_pairs": len(new_prefs),
        },
    }


def end_token(chat: ChatFormatLike) -> int:
    """The token that ends an assistant turn in this chat format (the last trained token of a reply)."""
    tokens, mask = chat.encode_dialog([{"role": "user", "content": "x"}, {"role": "assistant", "content": "x"}])
    return tokens[max(i for i, m in enumerate(mask) if m)]


_NUMBER = re.compile(r"-?\d+")


def verified_pair(row: Mapping[str, Any], texts: Sequence[str]) -> Preference | None:
    """For arithmetic prompts: a sample with the right final number vs one without, checked, not judged."""
    if "answer" not in row:
        return None
    right = [t for t in texts if (n := _NUMBER.findall(t)) and int(n[-1]) == row["answer"]]
    wrong = [t for t in texts if t.strip() and t not in right]
    if not right or not wrong:
        return None
    return Preference(list(row["prompt"]), [right[0], wrong[0]], "significantly_better", "rs-verified")
