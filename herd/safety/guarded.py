"""A guarded model: input guard → model → output guard + Code Shield, refusing with one fixed message.

This is the system-level safeguard of [P §5.4.7]: Llama Guard 3 screens the user's input and the model's
output, Code Shield screens code in the output. Any guard works that maps a conversation to a
GuardVerdict: a Llama Guard 3 checkpoint (GuardClassifier), herd's trained MiniLM guard
(EmbeddingGuard), or a test stub.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from herd.safety.llama_guard import GuardVerdict
from herd.safety.metrics import GUARD_REFUSAL

Guard = Callable[[Sequence[Mapping[str, Any]]], GuardVerdict]
Respond = Callable[[list[dict[str, Any]]], dict[str, Any]]


@dataclass(frozen=True)
class GuardedReply:
    message: dict[str, Any]  # what the user sees: the model's reply, or the fixed refusal
    blocked: str | None = None  # why: "input:S9", "output:S1", "output:malformed", "insecure_code:B602"
    raw: dict[str, Any] | None = None  # the model's own reply when it was generated (blocked or not)


def _reason(side: str, v: GuardVerdict) -> str:
    return f"{side}:{','.join(v.categories) or v.label}"


def guarded_reply(
    messages: Sequence[Mapping[str, Any]],
    respond: Respond,
    input_guard: Guard | None = None,
    output_guard: Guard | None = None,
    code_shield: bool = True,
) -> GuardedReply:
    """Run `respond` between the guards; a blocked input never reaches the model."""
    refusal = {"role": "assistant", "content": GUARD_REFUSAL, "tool_calls": []}
    if input_guard is not None and (v := input_guard(messages)).blocked:
        return GuardedReply(refusal, _reason("input", v))
    reply = respond([dict(m) for m in messages])
    if output_guard is not None and (v := output_guard([*messages, reply])).blocked:
        return GuardedReply(refusal, _reason("output", v), reply)
    if code_shield:
        from herd.safety.code_shield import insecure_code, message_code

        if reason := insecure_code(message_code(reply)):
            return GuardedReply(refusal, reason, reply)
    return GuardedReply(reply, None, reply)


def guard_cache() -> Path:
    return Path(os.environ.get("HERD_CACHE", Path.home() / ".cache" / "herd")) / "safety"


def load_guard(spec: str | Path, device: str = "cpu") -> Guard:
    """A guard by name or path: 'minilm' (herd's MiniLM guard trained on the whole bundled set, cached after
    the first use), 'minilm-train' (the same on its training topics only), a folder saved by
    EmbeddingGuard.save, or any model herd loads (a Llama Guard 3 checkpoint)."""
    from herd.safety.trained import EmbeddingGuard

    path = Path(spec)
    if (path / "head.npz").is_file():
        return EmbeddingGuard.load(path)
    if str(spec) in ("minilm", "minilm-train"):
        from herd.safety.prompts import VERSION, load_prompt_set
        from herd.safety.trained import split

        cached = guard_cache() / f"{spec}-guard-v{VERSION}"
        if not (cached / "threshold.txt").is_file():  # written last by save
            rows = load_prompt_set()
            EmbeddingGuard.train(rows if spec == "minilm" else split(rows)[0]).save(cached)
        return EmbeddingGuard.load(cached)
    from herd.safety.classifier import GuardClassifier

    return GuardClassifier.load(spec, device=device)
