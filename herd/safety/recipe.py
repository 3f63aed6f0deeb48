"""The recipe's `safety` stage: VR/FRR of the chat model with and without the guard, per category, and the
pretrained model's memorization of its own training shards [P §5.4, Tables 24–25].

Two stage folders under the run: `safety/` (herd.safety.stage: replies, metrics.json, and counts with
`by_category`) and `safety-memorization/` (herd.safety.memorization: 50-gram inclusion rate). The report
reads both manifests' counts.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from herd.core.logging import get_logger

log = get_logger(__name__)


@dataclass
class RecipeSafetySection:
    enabled: bool = False
    guard: str = "minilm-train"  # the filter (herd.safety.guarded.load_guard)
    judge: str = "minilm"  # judges replies for VR; must differ from guard
    held_out: bool = True  # only prompts of topics the filter never saw
    per_category: int = 2  # adversarial prompts per hazard category; all (held-out) borderline prompts
    max_new_tokens: int = 32
    code_shield: bool = True
    memorization: bool = True
    memorization_samples: int = 100
    memorization_n: int = 50  # [P Table 24]
    memorization_prefix: int = 32


def run_recipe_safety(section: RecipeSafetySection, chat_model: Path, base_model: Path, tokenizer: str,
                      shards: Path, root: Path) -> dict[str, Any]:  # fmt: skip
    """Both stages (each skipped when finished under the same key); returns their results."""
    from herd.safety.memorization import MemorizationConfig, run_memorization
    from herd.safety.stage import SafetyConfig, run_safety

    cfg = SafetyConfig(
        model=str(chat_model), tokenizer=tokenizer, guard=section.guard, judge=section.judge,
        code_shield=section.code_shield, held_out=section.held_out, per_category=section.per_category,
        max_new_tokens=section.max_new_tokens, device="cpu", out=str(root / "safety"),
    )  # fmt: skip
    out: dict[str, Any] = {"safety": run_safety(cfg)}
    if section.memorization:
        mem = MemorizationConfig(
            model=str(base_model), shards=str(shards), out=str(root / "safety-memorization"),
            n=section.memorization_n, prefix_len=section.memorization_prefix,
            new_tokens=section.memorization_n, samples=section.memorization_samples,
        )  # fmt: skip
        out["memorization"] = run_memorization(mem)
    return out
