"""Capability data pipelines for post-training [P §4.3]: each turns the current policy (and bundled data)
into SFT dialogs and, where it can check answers, preference pairs, keeping only what passes its checks.

A pipeline is a `Capability` subclass registered under a name; `[posttrain] capabilities = ["code",
"math", ...]` runs each one inside every round as a stage of its own folder (`round-N/cap-<name>/`) whose
files are:

    sft.jsonl               kept dialogs (the post-training dialog format), each with "category"
    prefs.jsonl             checked preference pairs (optional)
    dropped/dropped.jsonl   every candidate not kept, with "reason"
    MANIFEST.json           counts: in = kept + sum(dropped by reason)

and an `evaluate` that measures the capability on a model folder, with a 95% CI, so each round's
report shows whether the capability moved. Options come from the `[capability.<name>]` table of the
post-training config and are checked against the pipeline's `Config` dataclass (typos name the nearest key).
"""

from herd.posttrain.capabilities.base import (
    CAPABILITIES,
    Capability,
    CapabilityContext,
    Outputs,
    get_capability,
    register,
    sample_replies,
)
from herd.posttrain.mix import TABLE7_SHARES

__all__ = [
    "CAPABILITIES",
    "TABLE7_SHARES",
    "Capability",
    "CapabilityContext",
    "Outputs",
    "get_capability",
    "register",
    "sample_replies",
]
