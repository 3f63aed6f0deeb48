"""The safety stage: VR and FRR of a model with and without the guard [P §5.4.3, §5.4.7, Table 25].

model + the bundled prompt set → out/
  responses.jsonl   per prompt: the model's reply, the guarded system's reply and why it was blocked
  metrics.json      VR (adversarial) and FRR (borderline) ± 95% CI, overall / per category / per language,
                    for the model alone and for model + input/output guard + Code Shield
  config.resolved.toml  MANIFEST.json

Judging: a reply violates when the JUDGE guard finds the exchange unsafe; a reply is a refusal when the
refusal detector says so (herd.safety.metrics). The FILTER guard must not be the judge, or the guarded
VR is zero by construction: by default the filter is the MiniLM guard trained on the training topics only
(`minilm-train`) and the judge the one trained on the whole set (`minilm`).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

from herd.core.config import save_resolved
from herd.core.logging import get_logger
from herd.core.stage import Stage, run_stage
from herd.safety.guarded import GuardedReply, guarded_reply, load_guard
from herd.safety.metrics import breakdown, is_refusal
from herd.safety.prompts import bundled_path, load_prompt_set

log = get_logger(__name__)


@dataclass
class SafetyConfig:
    model: str = "smollm2"  # bundled name, herd/HF checkpoint folder or .gguf
    tokenizer: str | None = None  # default: the model's own
    guard: str = "minilm-train"  # the filter: minilm, minilm-train, a guard folder or a Llama Guard checkpoint
    judge: str = "minilm"  # judges replies for VR; must differ from `guard`
    code_shield: bool = True
    prompts: str | None = None  # default: the bundled set
    held_out: bool = False  # only prompts of the topics `minilm-train` never saw (herd.safety.trained.split)
    per_category: int = 0  # adversarial prompts per category (0: all)
    max_new_tokens: int = 48
    batch_size: int = 16
    device: str = "auto"
    out: str = "runs/safety"

    def __post_init__(self) -> None:
        if self.guard == self.judge:
            raise ValueError("safety: guard and judge must differ (the guarded VR would be 0 by construction)")


def select(rows: list[dict[str, Any]], per_category: int) -> list[dict[str, Any]]:
    """Adversarial prompts (the first `per_category` of each, round-robin over styles) and all borderline."""
    adv = [r for r in rows if r["set"] == "adversarial"]
    if per_category:
        by_cat: dict[str, list] = {}
        for r in sorted(adv, key=lambda r: (r["style"] != "direct", r["id"])):  # every style, direct first
            by_cat.setdefault(r["category"], []).append(r)
        adv = [r for rs in by_cat.values() for r in _round_robin(rs)[:per_category]]
    return adv + [r for r in rows if r["set"] == "borderline"]


def _round_robin(rows: list[dict]) -> list[dict]:
    styles: dict[str, list] = {}
    for r in rows:
        styles.setdefault(r["style"], []).append(r)
    out, queues = [], list(styles.values())
    while any(queues):
        out += [q.pop(0) for q in queues if q]
    return out


def load_responder(cfg: SafetyConfig) -> Any:
    """(model, tokenizer, chat format) for `cfg.model`, the way `herd chat` loads it."""
    from herd.core.runtime import pick_device
    from herd.model import load_model, resolve
    from herd.tokenizer import load_chat_format, load_tokenizer

    source = resolve(cfg.model)
    tok = load_tokenizer(cfg.tokenizer or (cfg.model if cfg.model == "smollm2" else source))
    model = load_model(source, device=pick_device(cfg.device)).eval()
    return model, tok, load_chat_format(tok)


def generate_replies(cfg: SafetyConfig, rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The model's greedy replies, in batches (left-padded prefill in herd.model.generate)."""
    from herd.model import generate

    model, tok, fmt = load_responder(cfg)
    replies: list[dict[str, Any]] = []
    for i in range(0, len(rows), cfg.batch_size):
        batch = rows[i : i + cfg.batch_size]
        prompts = [fmt.encode_prompt(r["messages"]) for r in batch]
        outs = generate(model, prompts, max_new_tokens=cfg.max_new_tokens, stop_ids=sorted(tok.stop_ids))
        replies += [fmt.decode_message([*o, min(tok.stop_ids)]) for o in outs]
        log.info("safety: %d/%d replies", len(replies), len(rows))
    return [dict(r) for r in replies]


def judge_rows(rows: list[dict], finals: list[dict], judge: Any) -> tuple[list[bool], list[bool]]:
    """(violation, refusal) per prompt for the replies in `finals`."""
    violation = [judge([*r["messages"], f]).blocked for r, f in zip(rows, finals, strict=True)]
    refusal = [is_refusal(f.get("content") or "") for f in finals]
    return violation, refusal


def summarise(rows: list[dict], violation: list[bool], refusal: list[bool]) -> dict[str, Any]:
    """VR over adversarial prompts and FRR over borderline ones, per category and language."""
    keys = ("category", "language", "style")
    adv = [i for i, r in enumerate(rows) if r["set"] == "adversarial"]
    bor = [i for i, r in enumerate(rows) if r["set"] == "borderline"]
    return {
        "vr": breakdown([rows[i] for i in adv], [violation[i] for i in adv], keys),
        "frr": breakdown([rows[i] for i in bor], [refusal[i] for i in bor], keys),
    }


def evaluate_safety(cfg: SafetyConfig, out: Path) -> dict[str, Any]:
    save_resolved(cfg, out)
    rows = load_prompt_set(Path(cfg.prompts) if cfg.prompts else None)
    if cfg.held_out:  # a filter guard judged on its own training prompts would look perfect
        from herd.safety.trained import is_held_out

        rows = [r for r in rows if is_held_out(r)]
    rows = select(rows, cfg.per_category)
    raw = generate_replies(cfg, rows)
    guard, judge = load_guard(cfg.guard), load_guard(cfg.judge)
    # [P Table 25]: the input filter alone, the output filter (+ Code Shield) alone, and both ("guarded").
    filters = {"input": (guard, None, False), "output": (None, guard, cfg.code_shield),
               "guarded": (guard, guard, cfg.code_shield)}  # fmt: skip
    metrics = {"model": summarise(rows, *judge_rows(rows, raw, judge))}
    filtered: dict[str, list[GuardedReply]] = {}
    for system, (inp, outp, shield) in filters.items():
        filtered[system] = [
            guarded_reply(r["messages"], lambda _m, reply=reply: reply, inp, outp, shield)
            for r, reply in zip(rows, raw, strict=True)
        ]
        metrics[system] = summarise(rows, *judge_rows(rows, [g.message for g in filtered[system]], judge))
    guarded = filtered["guarded"]
    blocked: dict[str, int] = {}
    for g in guarded:
        if g.blocked:
            side = g.blocked.split(":")[0]
            blocked[side] = blocked.get(side, 0) + 1
    with open(out / "responses.jsonl", "w", encoding="utf-8") as f:
        for r, reply, g in zip(rows, raw, guarded, strict=True):
            rec = {
                "id": r["id"],
                "reply": reply.get("content"),
                "final": g.message.get("content"),
                "blocked": g.blocked,
            }
            f.write(json.dumps(rec, ensure_ascii=False) + "\n")
    result = {"model": cfg.model, "guard": cfg.guard, "judge": cfg.judge, "n": len(rows), "blocked": blocked}
    result |= metrics
    (out / "metrics.json").write_text(json.dumps(result, indent=1) + "\n")
    m, g = metrics["model"], metrics["guarded"]
    return {
        "prompts": len(rows),
        "vr": m["vr"]["all"]["rate"],
        "frr": m["frr"]["all"]["rate"],
        "vr_guarded": g["vr"]["all"]["rate"],
        "frr_guarded": g["frr"]["all"]["rate"],
        "blocked": blocked,
        "by_category": by_category(metrics),
    }


def by_category(metrics: dict[str, Any]) -> list[dict[str, Any]]:
    """One row per category (and "all"): VR and FRR, each ± 95% CI with n, without and with the guard."""
    rows = []
    cats = dict.fromkeys([*metrics["model"]["vr"]["category"], *metrics["model"]["frr"]["category"]])
    for cat in ["all", *cats]:
        row: dict[str, Any] = {"category": cat}
        for system, suffix in (("model", ""), ("input", "_input"), ("output", "_output"), ("guarded", "_guarded")):
            if system not in metrics:  # metrics.json written before the input / output columns
                continue
            for metric in ("vr", "frr"):
                part = metrics[system][metric]
                r = part["all"] if cat == "all" else part["category"].get(cat)
                if r:
                    row |= {f"{metric}{suffix}": r["rate"], f"{metric}{suffix}_ci95": r["ci95"], f"{metric}_n": r["n"]}
        rows.append(row)
    return rows


def run_safety(cfg: SafetyConfig) -> dict[str, Any]:
    """Run the safety stage (skipped when its folder is finished); return metrics.json's content."""
    run_stage(SafetyStage(cfg))
    return json.loads((Path(cfg.out) / "metrics.json").read_text())


@dataclass
class SafetyStage(Stage):
    name: ClassVar[str] = "safety"
    config: SafetyConfig

    @property
    def out(self) -> Path:
        return Path(self.config.out)

    def inputs(self) -> list[Path]:
        c = self.config
        paths = [Path(c.prompts) if c.prompts else bundled_path(), Path(c.model)]
        return [p for p in paths if p.exists()]

    def run(self, workdir: Path) -> dict[str, Any]:
        return evaluate_safety(self.config, workdir)
