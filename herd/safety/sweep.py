"""The VR–FRR trade-off as the share of safety data in SFT varies (the shape of [P §5.4.3, Figure 18]).

    herd safety sweep configs/safety/sweep.toml

The safety capability's data is built once with the base model (`data/`, a stage). Each point then
fine-tunes the base model on the SAME number of SFT dialogs, of which a share `s` are safety dialogs
(adversarial refusals and borderline/helpful answers in the proportion the pipeline produced) and the
rest general dialogs from the post-training bundle, and scores VR and FRR on the held-out topics. Keeping
the total fixed means every point costs the same steps and differs only in its mix. Each point carries
the binomial 95% CI of its VR and FRR; `seeds` repeats the whole sweep with other data orders.
"""

from __future__ import annotations

import json
import random
import shutil
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from herd.core.logging import get_logger
from herd.core.stage import run_fn
from herd.posttrain.dpo import DPOConfig
from herd.posttrain.sft import SFTConfig

log = get_logger(__name__)


@dataclass
class SweepConfig:
    model: str = "smollm2"
    bundle: str = "runs/posttrain/bundle"  # general dialogs (herd.posttrain.bundle)
    out: str = "runs/safety/sweep"
    shares: list[float] = field(default_factory=lambda: [0.0, 0.1, 0.3, 0.6])
    dialogs: int = 240  # SFT dialogs per point (safety + general)
    seeds: list[int] = field(default_factory=lambda: [0])
    options: dict[str, Any] = field(default_factory=dict)  # [capability.safety] options
    sft: SFTConfig = field(default_factory=lambda: SFTConfig(lr=5e-5, epochs=3, batch_rows=8, seq_len=256))
    # After SFT, DPO on the data stage's safety pairs (refusal ≻ compliance, helpful ≻ refusal, far apart)
    # with the SFT model as reference, then a second evaluation: SFT vs SFT+DPO [P §5.4.3]. Off when False.
    dpo: bool = False
    dpo_config: DPOConfig = field(default_factory=lambda: DPOConfig(epochs=1, batch_size=4, max_len=256))

    def __post_init__(self) -> None:
        bad = [s for s in self.shares if not 0.0 <= s <= 1.0]
        if bad:
            raise ValueError(f"sweep.shares: {bad} not in [0, 1]")


def mix(safety: Sequence[Any], general: Sequence[Any], share: float, total: int, seed: int) -> list[Any]:
    """`total` dialogs, round(share·total) of them safety (a seeded sample, repeats only when short)."""
    rng = random.Random(seed)
    n_safe = round(share * total)
    picked = _draw(list(safety), n_safe, rng) + _draw(list(general), total - n_safe, rng)
    rng.shuffle(picked)
    return picked


def _draw(items: list[Any], n: int, rng: random.Random) -> list[Any]:
    if n <= 0 or not items:
        return []
    out: list[Any] = []
    while len(out) < n:  # whole passes without repetition, then a partial one
        batch = items[:]
        rng.shuffle(batch)
        out += batch[: n - len(out)]
    return out


def run_sweep(cfg: SweepConfig) -> dict[str, Any]:
    """Data once, then one SFT + evaluation per (seed, share); writes sweep.json and figure18.png."""
    from herd.model import resolve
    from herd.posttrain.capabilities import CapabilityContext, get_capability
    from herd.tokenizer import load_chat_format, load_tokenizer

    out = Path(cfg.out)
    cap = get_capability("safety", cfg.options)
    base = Path(resolve(cfg.model))
    chat = load_chat_format(load_tokenizer(cfg.model if cfg.model == "smollm2" else base))
    ctx = CapabilityContext(policy=base, chat=chat, bundle=Path(cfg.bundle), seed=cfg.seeds[0])
    data = run_fn("safety-sweep-data", [base], {"options": cfg.options}, out / "data", lambda t: cap.build(ctx, t))
    base_eval = out / "base.json"  # the model before any safety tuning
    if not base_eval.is_file():
        base_eval.parent.mkdir(parents=True, exist_ok=True)
        base_eval.write_text(json.dumps(cap.evaluate(base, ctx), indent=1) + "\n")
    points = []
    for seed in cfg.seeds:
        for share in cfg.shares:
            name = f"seed{seed}-share{share:g}"
            m = run_fn(
                "safety-sweep-point",
                [out / "data"],
                {"share": share, "seed": seed, "dialogs": cfg.dialogs, "sft": cfg.sft, "options": cfg.options}
                | ({"dpo": cfg.dpo_config} if cfg.dpo else {}),
                out / name,
                lambda t, s=share, sd=seed: _point(cap, ctx, base, out / "data", cfg, s, sd, t),
            )
            points.append({"share": share, "seed": seed, **m.counts})
            log.info("sweep %s: VR %.3f FRR %.3f", name, m.counts["vr"], m.counts["frr"])
    result = {"model": cfg.model, "data": data.counts, "base": json.loads(base_eval.read_text()), "points": points}
    result["figure"] = str(plot_tradeoff(points, out / "figure18.png"))
    (out / "sweep.json").write_text(json.dumps(result, indent=1) + "\n")
    return result


def _point(cap: Any, ctx: Any, base: Path, data: Path, cfg: SweepConfig, share: float, seed: int, tmp: Path):
    import time

    from herd.core.runtime import seed_everything
    from herd.model import load_model
    from herd.posttrain.common import save_model
    from herd.posttrain.data import read_dialogs
    from herd.posttrain.sft import encode_dialogs, train_sft

    seed_everything(seed)
    safety = [d.messages for d in read_dialogs(data / "sft.jsonl")]
    general = [d.messages for d in read_dialogs(Path(cfg.bundle) / "sft.jsonl")]
    dialogs = mix(safety, general, share, cfg.dialogs, seed)
    start = time.perf_counter()
    model = load_model(base)
    pad = getattr(ctx.chat.tokenizer, "pad_id", None) or 0
    sft = train_sft(model, encode_dialogs(ctx.chat, dialogs, cfg.sft.seq_len), cfg.sft, pad)
    save_model(model, tmp / "model", None)
    ev = cap.evaluate(tmp / "model", ctx)
    (tmp / "eval.json").write_text(json.dumps(ev, indent=1) + "\n")
    after_dpo = _dpo(cap, ctx, model, data / "prefs.jsonl", cfg.dpo_config, tmp) if cfg.dpo and share > 0 else {}
    del model
    shutil.rmtree(tmp / "model")  # 0.5 GB a point; the numbers are what the sweep keeps
    n_safe = round(share * cfg.dialogs)
    return after_dpo | {
        "helpful": ev.get("helpful_answered"), "helpful_ci95": ev.get("helpful_ci95"), "helpful_n": ev.get("helpful_n"),
        "safety_dialogs": n_safe, "general_dialogs": cfg.dialogs - n_safe,
        "vr": ev["value"], "vr_ci95": ev["ci95"], "vr_n": ev["n"],
        "frr": ev["frr"], "frr_ci95": ev["frr_ci95"], "frr_n": ev["frr_n"],
        "sft_steps": sft["variants"][0]["steps"], "sft_last_loss": sft["variants"][0]["last_loss"],
        "wall_s": round(time.perf_counter() - start, 1),
    }  # fmt: skip


def _dpo(cap: Any, ctx: Any, model: Any, prefs: Path, cfg: Any, tmp: Path) -> dict[str, Any]:
    """DPO of the SFT `model` (in place; its pre-DPO self is the reference) on the safety pairs, then the
    same evaluation: the `*_dpo` numbers of a point."""
    from herd.posttrain.common import save_model
    from herd.posttrain.data import read_preferences
    from herd.posttrain.dpo import cache_reference, encode_pairs, train_dpo

    pairs = encode_pairs(ctx.chat, read_preferences(prefs), cfg.max_len)
    cache_reference(model, pairs)
    trained = train_dpo(model, pairs, cfg)["variants"][0]
    save_model(model, tmp / "model-dpo", None)
    ev = cap.evaluate(tmp / "model-dpo", ctx)
    (tmp / "eval-dpo.json").write_text(json.dumps(ev, indent=1) + "\n")
    shutil.rmtree(tmp / "model-dpo")
    return {
        "dpo_pairs": len(pairs), "dpo_steps": trained.get("steps"),
        "vr_dpo": ev["value"], "vr_dpo_ci95": ev["ci95"], "frr_dpo": ev["frr"], "frr_dpo_ci95": ev["frr_ci95"],
        "helpful_dpo": ev.get("helpful_answered"), "helpful_dpo_ci95": ev.get("helpful_ci95"),
        "vr_dpo_by_category": ev["vr_by_category"], "frr_dpo_by_category": ev["frr_by_category"],
    }  # fmt: skip


def plot_tradeoff(points: Sequence[dict[str, Any]], path: Path) -> Path:
    """FRR (x) against VR (y), one marker per share with both 95% CIs as error bars (Figure 18's axes)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(5.5, 4.2))
    for seed in sorted({p["seed"] for p in points}):
        pts = sorted((p for p in points if p["seed"] == seed), key=lambda p: p["share"])
        x, y = [100 * p["frr"] for p in pts], [100 * p["vr"] for p in pts]
        ax.errorbar(x, y, xerr=[100 * p["frr_ci95"] for p in pts], yerr=[100 * p["vr_ci95"] for p in pts],
                    fmt="o-", capsize=3, label=f"seed {seed}")  # fmt: skip
        for p, xi, yi in zip(pts, x, y, strict=True):
            ax.annotate(f"{100 * p['share']:g}%", (xi, yi), textcoords="offset points", xytext=(5, 5), fontsize=8)
    ax.set_xlabel("false refusal rate (%), borderline held-out")
    ax.set_ylabel("violation rate (%), adversarial held-out")
    ax.set_title("VR vs FRR by share of safety data in SFT")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path
