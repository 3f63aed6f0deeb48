"""The capability pipeline interface, its registry and the shared output writer [P §4.3]."""

from __future__ import annotations

import abc
import difflib
import importlib
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

from herd.core.config import ConfigError, from_dict
from herd.posttrain.data import write_jsonl
from herd.tokenizer.chat import ChatFormatLike

# name -> module that registers it; imported on first use so a run loads only the pipelines it asks for.
# A pipeline may live in a package above post-training (safety data comes from herd.safety): the name is a
# plugin entry, never a static import, so the tiers of DESIGN.md still hold.
_MODULES = {
    "safety": "herd.safety.capability",
    "code": "herd.posttrain.capabilities.code",
    "math": "herd.posttrain.capabilities.math",
    "tools": "herd.posttrain.capabilities.tools",
    "multilingual": "herd.posttrain.capabilities.multilingual",
    "long_context": "herd.posttrain.capabilities.long_context",
    "factuality": "herd.posttrain.capabilities.factuality",
    "steerability": "herd.posttrain.capabilities.steerability",
}
CAPABILITIES: dict[str, type[Capability]] = {}


@dataclass
class CapabilityContext:
    """What a pipeline may use: the model it samples from (this round's starting policy, an HF-format
    folder `herd.load_model` reads), its chat format, the post-training data bundle, the seed and round."""

    policy: Path
    chat: ChatFormatLike
    bundle: Path
    seed: int = 0
    round: int = 1


@dataclass
class Outputs:
    """A pipeline's result before writing: kept dialogs, dropped candidates (each with "reason"), pairs."""

    kept: list[dict[str, Any]] = field(default_factory=list)
    dropped: list[dict[str, Any]] = field(default_factory=list)
    prefs: list[dict[str, Any]] = field(default_factory=list)
    stats: dict[str, Any] = field(default_factory=dict)

    def drop(self, row: Mapping[str, Any], reason: str, **detail: Any) -> None:
        self.dropped.append({**row, "reason": reason, **detail})

    def write(self, out: Path, category: str) -> dict[str, Any]:
        """sft.jsonl, prefs.jsonl (when any) and dropped/dropped.jsonl into `out`; returns the counts."""
        kept = [{**row, "category": row.get("category", category)} for row in self.kept]
        write_jsonl(out / "sft.jsonl", kept)
        if self.prefs:
            write_jsonl(out / "prefs.jsonl", self.prefs)
        write_jsonl(out / "dropped" / "dropped.jsonl", self.dropped)
        reasons = Counter(str(row.get("reason", "unknown")) for row in self.dropped)
        return {
            "in": len(kept) + len(self.dropped),
            "kept": len(kept),
            "dropped": len(self.dropped),
            "dropped_by_reason": dict(sorted(reasons.items())),
            "prefs": len(self.prefs),
            **self.stats,
        }


class Capability(abc.ABC):
    """One capability's data pipeline and its evaluation. Subclasses set `name`, `category` (a key of
    TABLE7_SHARES) and `Config` (a dataclass of their options), and implement `generate` and `evaluate`."""

    name: ClassVar[str]
    category: ClassVar[str]  # a key of herd.posttrain.mix.TABLE7_SHARES
    Config: ClassVar[type]

    def __init__(self, config: Any) -> None:
        self.config = config

    @abc.abstractmethod
    def generate(self, ctx: CapabilityContext) -> Outputs:
        """Candidates from the policy and bundled data, checked; every candidate kept or dropped with a reason."""

    @abc.abstractmethod
    def evaluate(self, model_dir: Path, ctx: CapabilityContext) -> dict[str, Any]:
        """{"metric": str, "value": float, "ci95": float (half-width), "n": int, ...} on held-out items."""

    def build(self, ctx: CapabilityContext, out: Path) -> dict[str, Any]:
        """Run the pipeline into `out` (a stage's temporary folder); returns the manifest counts."""
        return self.generate(ctx).write(out, self.category)


def register(cls: type[Capability]) -> type[Capability]:
    CAPABILITIES[cls.name] = cls
    return cls


def get_capability(name: str, options: Mapping[str, Any] | None = None) -> Capability:
    """The pipeline registered as `name`, configured from its `[capability.<name>]` table."""
    if name not in CAPABILITIES and name in _MODULES:
        importlib.import_module(_MODULES[name])
    if name not in CAPABILITIES:
        known = sorted(set(_MODULES) | set(CAPABILITIES))
        near = difflib.get_close_matches(name, known, n=1)
        hint = f" (did you mean {near[0]!r}?)" if near else ""
        raise ConfigError(f"capabilities: unknown capability {name!r}{hint}; known: {', '.join(known)}")
    cls = CAPABILITIES[name]
    return cls(from_dict(cls.Config, dict(options or {}), f"capability.{name}"))


def sample_replies(
    model: Any,
    chat: ChatFormatLike,
    prompts: Sequence[Sequence[Mapping[str, Any]]],
    k: int = 1,
    max_new_tokens: int = 128,
    temperature: float = 0.0,
    top_p: float = 1.0,
    seed: int = 0,
    batch: int = 8,
) -> list[list[str]]:
    """K reply texts per message list (greedy when temperature is 0), prompts batched `batch` at a time."""
    from herd.posttrain.rejection import sample_k

    stop_ids = sorted(chat.tokenizer.stop_ids)
    out: list[list[str]] = []
    for i in range(0, len(prompts), batch):
        ids = [chat.encode_prompt(list(m)) for m in prompts[i : i + batch]]
        samples = sample_k(model, ids, k, max_new_tokens, temperature, top_p, stop_ids, seed + i)
        out += [[chat.decode_message(o)["content"] for o in outs] for outs in samples]
    return out


ReplyFn = Callable[[Sequence[Sequence[Mapping[str, Any]]], int], list[list[str]]]


def policy_replies(
    reply_fn: ReplyFn | None,
    model_dir: Path,
    chat: ChatFormatLike,
    prompts: Sequence[Sequence[Mapping[str, Any]]],
    k: int,
    max_new_tokens: int,
    temperature: float = 0.0,
    seed: int = 0,
    batch: int = 8,
) -> list[list[str]]:
    """K replies per prompt from `reply_fn` when a test planted one, else sampled from the model in
    `model_dir` (loaded only when there is something to answer)."""
    if not prompts:
        return []
    if reply_fn is not None:
        return reply_fn(prompts, k)
    from herd.model import load_model

    model = load_model(model_dir).eval()
    return sample_replies(model, chat, prompts, k, max_new_tokens, temperature, seed=seed, batch=batch)
