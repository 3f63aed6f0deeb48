"""One capability on its own: evaluate a model, build the pipeline's data with it, fine-tune on the kept
dialogs, evaluate again — the before/after number with a 95% CI that docs/posttraining.md reports.

    herd capability math --model smollm2 --out runs/capability/math [--set key=value ...]

The SFT step mixes the pipeline's kept dialogs with a share of the bundle's general dialogs (the paper
trains each capability inside the full mix [P §4.2.2, Table 7], never alone), so a gain is the
capability's, not a side effect of forgetting everything else.
"""

from __future__ import annotations

import json
import random
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from herd.core.logging import get_logger
from herd.core.runtime import seed_everything
from herd.core.stage import run_fn
from herd.model import load_model, resolve
from herd.posttrain.capabilities.base import CapabilityContext, get_capability
from herd.posttrain.common import save_model
from herd.posttrain.data import read_dialogs
from herd.posttrain.sft import SFTConfig, encode_dialogs, train_sft
from herd.tokenizer import load_chat_format, load_tokenizer

log = get_logger(__name__)


@dataclass
class CapabilitySFTConfig(SFTConfig):
    """SFTConfig with this command's defaults as field defaults, so `sft.lr=...` on the command line keeps
    the others (herd.core.config lays a partial table over the field's default instance).

    4 rows a step, one per forward, blocks recomputed in backward: SmolLM2-135M SFT stays near 3 GB RSS
    (docs/posttraining.md, "SFT memory"), where all rows at once with full logits needed 6-8 GB. seq_len
    1,024: a tool dialog is 245-631 SmolLM2 tokens (its system prompt holds the tool definitions), and a
    cut dialog loses the assistant turns that carry its loss."""

    lr: float = 2e-5
    epochs: int = 2
    batch_rows: int = 4
    seq_len: int = 1024
    activation_checkpointing: bool = True
    micro_rows: int = 1


@dataclass
class MeasureConfig:
    model: str = "smollm2"  # anything herd.load_model reads: bundled name, HF/Meta folder, GGUF, herd run
    tokenizer: str = ""  # "" = the model's own
    bundle: str = "runs/posttrain/bundle"  # the post-training data bundle (general dialogs, prompts)
    out: str = "runs/capability"
    seed: int = 0
    general_share: float = 0.5  # general dialogs added per capability dialog (0 = capability data alone)
    options: dict[str, Any] = field(default_factory=dict)  # the [capability.<name>] table
    sft: CapabilitySFTConfig = field(default_factory=lambda: CapabilitySFTConfig())


def measure_capability(name: str, cfg: MeasureConfig) -> dict[str, Any]:
    """before → data → SFT → after for capability `name`; writes and returns `<out>/<name>/result.json`."""
    seed_everything(cfg.seed)
    out = Path(cfg.out) / name
    cap = get_capability(name, cfg.options)
    tok_source = cfg.tokenizer or (cfg.model if cfg.model in ("smollm2", "llama3") else str(resolve(cfg.model)))
    chat = load_chat_format(load_tokenizer(tok_source))
    base = Path(resolve(cfg.model))
    ctx = CapabilityContext(policy=base, chat=chat, bundle=Path(cfg.bundle), seed=cfg.seed)
    before = _before(cap, base, ctx, cfg, out / "before.json")
    data = run_fn(
        f"capability-{name}",
        [base],
        {"options": cfg.options, "seed": cfg.seed},
        out / "data",
        lambda tmp: cap.build(ctx, tmp),
    )
    tuned = out / "sft"
    run_fn(
        f"capability-{name}-sft",
        [out / "data"],
        {"sft": cfg.sft, "general_share": cfg.general_share},
        tuned,
        lambda tmp: _finetune(base, chat, out / "data" / "sft.jsonl", cfg, tmp),
    )
    after = cap.evaluate(tuned, ctx)
    result = {
        "capability": name,
        "model": cfg.model,
        "seed": cfg.seed,
        "data": data.counts,
        "before": before,
        "after": after,
    }
    (out / "result.json").write_text(json.dumps(result, indent=2) + "\n")
    return result


def _before(cap: Any, base: Path, ctx: CapabilityContext, cfg: MeasureConfig, path: Path) -> dict[str, Any]:
    """The untuned model's evaluation, written at once (a run killed later keeps it) and reused by a rerun
    with the same model, tokenizer, seed and options: on a shared CPU it costs minutes."""
    key = json.loads(json.dumps({"model": cfg.model, "tokenizer": cfg.tokenizer, "seed": cfg.seed,
                                 "options": cfg.options}, default=str))  # fmt: skip
    if path.is_file():
        saved = json.loads(path.read_text())
        if saved.get("config") == key:
            log.info("capability %s: reusing the evaluation before tuning from %s", cap.name, path)
            return saved["before"]
    before = cap.evaluate(base, ctx)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps({"config": key, "before": before}, indent=2) + "\n")
    return before


def _finetune(base: Path, chat: Any, kept: Path, cfg: MeasureConfig, tmp: Path) -> dict[str, Any]:
    dialogs = [d.messages for d in read_dialogs(kept)] if kept.stat().st_size else []
    general = _general(Path(cfg.bundle), round(len(dialogs) * cfg.general_share), cfg.seed)
    examples = encode_dialogs(chat, [*dialogs, *general], cfg.sft.seq_len)
    if not examples:
        raise ValueError(f"{kept}: the pipeline kept no dialog to fine-tune on")
    model = load_model(base)
    metrics = train_sft(model, examples, cfg.sft, getattr(chat.tokenizer, "pad_id", None) or 0)
    save_model(model, tmp, None)
    return {"capability_dialogs": len(dialogs), "general_dialogs": len(general), **metrics}


def _general(bundle: Path, n: int, seed: int) -> list[Sequence[Mapping[str, Any]]]:
    path = bundle / "sft.jsonl"
    if n <= 0 or not path.is_file():
        return []
    dialogs = [d.messages for d in read_dialogs(path)]
    random.Random(seed).shuffle(dialogs)
    return dialogs[:n]
