"""`herd posttrain CONFIG`: N rounds of RM → rejection sampling → SFT → DPO [P §4.1.6].

Each stage is files → files + MANIFEST.json (herd.core.stage.run_stage), so a rerun skips every stage
whose inputs and config are unchanged and resumes at the first that is not. Each round writes a manifest
of its own summarizing its stages. The RM starts from the base checkpoint and sees all preference data
so far (bundled + pairs verified during earlier rounds' sampling); SFT starts from the previous round's
model; DPO starts from this round's SFT model, which is also its reference.

With `[prune] enabled = true`, a `prune` stage between rejection sampling and SFT cleans and prunes this
round's SFT train dialogs (bundle + best-of-K) with this round's RM [P §4.2.3] (herd.posttrain.data_quality);
SFT then trains on what it kept. The held-out SFT dialogs are never pruned, so losses stay comparable.
After the last round, `summary.json` gets a per-round `metrics` table and `metrics.png` plots it.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

import torch

from herd.core.config import save_resolved
from herd.core.logging import get_logger
from herd.core.manifest import Manifest
from herd.core.runtime import seed_everything
from herd.core.stage import Stage, run_fn, run_stage
from herd.model import Transformer, build_model, get_preset, load_model
from herd.posttrain.bundle import BundleConfig, build_bundle
from herd.posttrain.common import save_model
from herd.posttrain.data import (
    KEEP_STRENGTHS,
    Dialog,
    preference_row,
    read_dialogs,
    read_preferences,
    split_held_out,
    write_jsonl,
)
from herd.posttrain.data_quality import PruneConfig, load_judge, prune, rm_scorer
from herd.posttrain.dpo import DPOConfig, cache_reference, encode_pairs, preference_metrics, train_dpo
from herd.posttrain.plots import metrics_table, plot_rounds
from herd.posttrain.rejection import RSConfig, rejection_sample
from herd.posttrain.reward import RewardModel, RMConfig, accuracy, encode_preference, train_rm
from herd.posttrain.sft import Example, SFTConfig, encode_dialogs, held_out_loss, train_sft
from herd.tokenizer import load_tokenizer
from herd.tokenizer.chat import load_chat_format

log = get_logger(__name__)


@dataclass
class BaseSection:
    """The starting checkpoint. A preset name is randomly initialized and warmed up with next-token
    training on the bundled texts, standing in for a pretrained checkpoint at toy scale."""

    model: str = "debug"  # HF dir / GGUF / bundled name / preset
    tokenizer: str = ""  # "" = the bundle's tokenizer (for presets) or the model's own
    dim: int = 128
    n_layers: int = 2
    warmup_steps: int = 150
    warmup_lr: float = 3e-3


@dataclass
class PosttrainConfig:
    out: str = "runs/posttrain/toy"
    rounds: int = 2
    seed: int = 0
    threads: int = 0  # 0 = leave torch's default
    held_out_fraction: float = 0.1
    strengths: list[str] = field(default_factory=lambda: list(KEEP_STRENGTHS))
    bundle: BundleConfig = field(default_factory=BundleConfig)
    base: BaseSection = field(default_factory=BaseSection)
    rm: RMConfig = field(default_factory=RMConfig)
    rs: RSConfig = field(default_factory=RSConfig)
    sft: SFTConfig = field(default_factory=SFTConfig)
    dpo: DPOConfig = field(default_factory=DPOConfig)
    prune: PruneConfig = field(default_factory=PruneConfig)  # on the SFT data, between RS and SFT [P §4.2.3]


@dataclass
class _Ctx:
    cfg: PosttrainConfig
    bundle: Path
    tokenizer_file: Path | None
    chat: Any
    pad_id: int


@dataclass
class PosttrainStage(Stage):
    """The post-training rounds as one stage over the base model and the data bundle. Resumable: each
    round's RM/RS/prune/SFT/DPO step is a stage of its own folder, so a rerun redoes only what changed."""

    name: ClassVar[str] = "posttrain"
    resumable: ClassVar[bool] = True
    config: PosttrainConfig

    @property
    def out(self) -> Path:
        return Path(self.config.out)

    def inputs(self) -> list[Path]:
        base = Path(self.config.base.model)
        return [*([base] if base.exists() else []), Path(self.config.bundle.out)]

    def run(self, workdir: Path) -> dict[str, Any]:
        return report_counts(train_rounds(self.config, workdir))


def run_posttrain(cfg: PosttrainConfig) -> dict[str, Any]:
    """Build the data bundle, then the rounds (each skipped when finished); return summary.json's content."""
    build_bundle(cfg.bundle)
    run_stage(PosttrainStage(cfg), fresh=False)
    return json.loads((Path(cfg.out) / "summary.json").read_text())


def train_rounds(cfg: PosttrainConfig, out: Path) -> dict[str, Any]:
    """The base checkpoint, then `cfg.rounds` rounds into `out`; writes and returns summary.json's content."""
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    save_resolved(cfg, out)
    start = time.perf_counter()
    ctx = _context(cfg)
    model_dir = _base(ctx, out / "base")
    summary: dict[str, Any] = {"rounds": []}
    for r in range(1, cfg.rounds + 1):
        model_dir, info = _round(ctx, r, model_dir, out / f"round-{r}")
        summary["rounds"].append(info)
    summary["final_model"] = str(model_dir)
    summary["metrics"] = metrics_table(summary["rounds"])
    summary["plots"] = {"metrics": str(plot_rounds(summary["metrics"], out / "metrics.png"))}
    summary["wall_s"] = round(time.perf_counter() - start, 1)
    (out / "summary.json").write_text(json.dumps(summary, indent=2) + "\n")
    return summary


def report_counts(summary: dict[str, Any]) -> dict[str, Any]:
    """What post-training records in its manifest for the run report: held-out metrics and wall time per
    round, the final model, and the plot it drew (a file in its folder) [P §4.1]."""
    return {
        "rounds": len(summary["rounds"]),
        "final_model": summary["final_model"],
        "wall_s": summary.get("wall_s"),
        "metrics": summary["metrics"],
        "round_wall_s": [{"round": i["round"], **i.get("wall_s", {})} for i in summary["rounds"]],
        "report": {"figures": {"metrics.png": "Held-out metrics by round"}},
    }


def _context(cfg: PosttrainConfig) -> _Ctx:
    bundle = Path(cfg.bundle.out)
    source = cfg.base.tokenizer or (str(bundle / "tokenizer.model") if _is_preset(cfg.base.model) else cfg.base.model)
    tok = load_tokenizer(source)
    tok_file = Path(source) if Path(source).is_file() and Path(source).suffix != ".gguf" else None
    pad = getattr(tok, "pad_id", None) or 0
    return _Ctx(cfg, bundle, tok_file, load_chat_format(tok), pad)


def _is_preset(name: str) -> bool:
    from herd.model import PRESETS

    return name in PRESETS


def _base(ctx: _Ctx, out: Path) -> Path:
    """The base checkpoint as an HF dir: a real one is used as is; a preset is built and warmed up."""
    b = ctx.cfg.base
    if not _is_preset(b.model):
        return Path(b.model)

    def fn(tmp: Path) -> dict[str, Any]:
        seed_everything(ctx.cfg.seed)
        cfg = get_preset(
            b.model,
            dim=b.dim,
            n_layers=b.n_layers,
            vocab_size=ctx.chat.tokenizer.vocab_size,
            ffn_dim=b.dim * 3,
            n_heads=4,
            n_kv_heads=2,
            max_seq_len=1024,
        )
        model = build_model(cfg, seed=ctx.cfg.seed)
        examples = [Example(e.tokens, [1] * len(e.tokens)) for e in _sft_examples(ctx, [])[0]]  # every token
        warm = SFTConfig(
            lr=b.warmup_lr, epochs=100, batch_rows=8, seq_len=ctx.cfg.sft.seq_len, max_steps=b.warmup_steps
        )
        metrics = train_sft(model, examples, warm, ctx.pad_id)
        save_model(model, tmp, ctx.tokenizer_file)
        return {"warmup": metrics["variants"][0]}

    run_fn("posttrain-base", [ctx.bundle / "sft.jsonl"], _stage_config(ctx, b), out, fn)
    return out


def _prefs(ctx: _Ctx, extra: list[Path]):
    prefs = read_preferences(ctx.bundle / "prefs.jsonl", ctx.cfg.strengths)
    train, held = split_held_out(prefs, ctx.cfg.held_out_fraction, ctx.cfg.seed)
    for p in extra:
        train += read_preferences(p, ctx.cfg.strengths)
    return train, held


def _sft_dialogs(ctx: _Ctx, extra: list[Path]) -> tuple[list[Dialog], list[Dialog]]:
    """(train, held out): the bundle's split, with `extra` dialog files added to train."""
    dialogs = read_dialogs(ctx.bundle / "sft.jsonl")
    train, held = split_held_out(dialogs, ctx.cfg.held_out_fraction, ctx.cfg.seed)
    for p in extra:
        train += read_dialogs(p)
    return train, held


def _sft_examples(ctx: _Ctx, extra: list[Path], train_file: Path | None = None) -> tuple[list[Example], list[Example]]:
    """Encoded (train, held out); `train_file` (pruned dialogs) replaces the train side, never held out."""
    train, held = _sft_dialogs(ctx, extra)
    if train_file is not None:
        train = read_dialogs(train_file)
    enc = lambda ds: encode_dialogs(ctx.chat, [d.messages for d in ds], ctx.cfg.sft.seq_len)
    return enc(train), enc(held)


def _round(ctx: _Ctx, r: int, prev: Path, out: Path) -> tuple[Path, dict[str, Any]]:
    cfg = ctx.cfg
    base = _base_dir(ctx)
    earlier_prefs = [p for i in range(1, r) if (p := out.parent / f"round-{i}" / "rs" / "prefs.jsonl").is_file()]
    stages: dict[str, Manifest] = {}
    stages["rm"] = run_fn(
        f"posttrain-rm-{r}",
        [base, ctx.bundle / "prefs.jsonl", *earlier_prefs],
        _stage_config(ctx, cfg.rm),
        out / "rm",
        lambda tmp: _rm_stage(ctx, base, earlier_prefs, tmp),
    )
    stages["rs"] = run_fn(
        f"posttrain-rs-{r}",
        [prev, out / "rm", ctx.bundle / "prompts.jsonl"],
        _stage_config(ctx, cfg.rs),
        out / "rs",
        lambda tmp: _rs_stage(ctx, prev, out / "rm", r, tmp),
    )
    pruned = _maybe_prune(ctx, r, out, stages)
    stages["sft"] = run_fn(
        f"posttrain-sft-{r}",
        [prev, ctx.bundle / "sft.jsonl", out / "rs", *([out / "prune"] if pruned else [])],
        _stage_config(ctx, cfg.sft),
        out / "sft",
        lambda tmp: _sft_stage(ctx, prev, out / "rs" / "best.jsonl", tmp, pruned),
    )
    latest = [out / "rs" / "prefs.jsonl"] if (out / "rs" / "prefs.jsonl").is_file() else []
    stages["dpo"] = run_fn(
        f"posttrain-dpo-{r}",
        [out / "sft", ctx.bundle / "prefs.jsonl", *latest],
        _stage_config(ctx, cfg.dpo),
        out / "dpo",
        lambda tmp: _dpo_stage(ctx, out / "sft", latest, tmp),
    )
    info = {
        "round": r,
        **{k: m.counts for k, m in stages.items()},
        "wall_s": {k: m.wall_time_s for k, m in stages.items()},
    }
    Manifest.write(out, "posttrain-round", [prev, *(out / k for k in stages)], cfg, info)
    return out / "dpo", info


def _maybe_prune(ctx: _Ctx, r: int, out: Path, stages: dict[str, Manifest]) -> Path | None:
    """The prune stage when enabled; returns the kept dialogs file SFT trains on (None: prune is off)."""
    if not ctx.cfg.prune.enabled:
        return None
    stages["prune"] = run_fn(
        f"posttrain-prune-{r}",
        [ctx.bundle / "sft.jsonl", out / "rs", out / "rm"],
        _stage_config(ctx, ctx.cfg.prune),
        out / "prune",
        lambda tmp: _prune_stage(ctx, out / "rm", out / "rs" / "best.jsonl", r, tmp),
    )
    return out / "prune" / "kept.jsonl"


def _stage_config(ctx: _Ctx, section: Any) -> dict[str, Any]:
    """A stage's own section plus the run-wide settings every stage depends on (the held-out split and
    the seed): changing those reruns the stages, not only a stage's own keys."""
    shared = {"seed": ctx.cfg.seed, "held_out_fraction": ctx.cfg.held_out_fraction, "strengths": ctx.cfg.strengths}
    return {"run": shared, "stage": section}


def _base_dir(ctx: _Ctx) -> Path:
    return Path(ctx.cfg.out) / "base" if _is_preset(ctx.cfg.base.model) else Path(ctx.cfg.base.model)


def _rm_stage(ctx: _Ctx, base: Path, extra: list[Path], tmp: Path) -> dict[str, Any]:
    seed_everything(ctx.cfg.seed)
    train, held = _prefs(ctx, extra)
    enc = lambda ps: [encode_preference(ctx.chat, p, ctx.cfg.rm.max_len) for p in ps]
    train_e, held_e = enc(train), enc(held)
    rm = RewardModel(load_model(base))
    before = accuracy(rm, held_e)
    metrics = train_rm(rm, train_e, ctx.cfg.rm)
    after = accuracy(rm, held_e)
    rm.save(tmp, ctx.tokenizer_file)
    log.info("rm: held-out accuracy %.3f → %.3f on %d pairs", before["accuracy"], after["accuracy"], after["pairs"])
    return {"train_prefs": len(train), "held_out_before": before, "held_out": after, **metrics}


def _rs_stage(ctx: _Ctx, policy_dir: Path, rm_dir: Path, r: int, tmp: Path) -> dict[str, Any]:
    seed_everything(ctx.cfg.seed + r)
    rows = [json.loads(line) for line in (ctx.bundle / "prompts.jsonl").read_text().splitlines() if line.strip()]
    import random

    random.Random(ctx.cfg.seed + r).shuffle(rows)  # a different slice of prompts each round
    policy = load_model(policy_dir).eval()
    result = rejection_sample(policy, RewardModel.load(rm_dir), ctx.chat, rows, ctx.cfg.rs)
    write_jsonl(tmp / "best.jsonl", result["kept"])
    if result["prefs"]:
        write_jsonl(tmp / "prefs.jsonl", [preference_row(p) for p in result["prefs"]])
    s = result["stats"]
    print(
        f"round {r} rejection sampling: best-of-{s['k']} mean RM score {s['best_of_k_mean_score']:.3f} "
        f"vs mean over all samples {s['all_samples_mean_score']:.3f}; {s['samples_per_s']:.1f} samples/s"
    )
    return s


def _prune_stage(ctx: _Ctx, rm_dir: Path, best: Path, r: int, tmp: Path) -> dict[str, Any]:
    """This round's SFT train dialogs (bundle + best-of-K) → kept.jsonl, dropped/dropped.jsonl with reasons."""
    seed_everything(ctx.cfg.seed)
    train, _ = _sft_dialogs(ctx, [best])
    rows = [{"messages": d.messages, "source": d.source} for d in train]
    scorer = rm_scorer(RewardModel.load(rm_dir), ctx.chat, ctx.cfg.rm.max_len)
    kept, dropped, stats = prune(rows, ctx.cfg.prune, rm=scorer, judge=load_judge(ctx.cfg.prune))
    write_jsonl(tmp / "kept.jsonl", kept)
    write_jsonl(tmp / "dropped" / "dropped.jsonl", dropped)
    funnel = " → ".join(f"{f['step']} {f['kept']}" for f in stats["funnel"])
    print(f"round {r} pruning: {stats['in']} dialogs → {funnel}; dropped {stats['dropped']}")
    return stats


def _sft_stage(ctx: _Ctx, prev: Path, best: Path, tmp: Path, pruned: Path | None = None) -> dict[str, Any]:
    seed_everything(ctx.cfg.seed)
    train, held = _sft_examples(ctx, [best], pruned)
    model = load_model(prev)
    before = held_out_loss(model, held, ctx.cfg.sft, ctx.pad_id)
    metrics = train_sft(model, train, ctx.cfg.sft, ctx.pad_id)
    after = held_out_loss(model, held, ctx.cfg.sft, ctx.pad_id)
    save_model(model, tmp, ctx.tokenizer_file)
    return {"examples": len(train), "held_out_loss_before": before, "held_out_loss": after, **metrics}


def _dpo_stage(ctx: _Ctx, sft_dir: Path, latest: list[Path], tmp: Path) -> dict[str, Any]:
    seed_everything(ctx.cfg.seed)
    train, held = _prefs(ctx, latest)
    train_p = encode_pairs(ctx.chat, train, ctx.cfg.dpo.max_len)
    held_p = encode_pairs(ctx.chat, held, ctx.cfg.dpo.max_len)
    ref: Transformer = load_model(sft_dir)
    cache_reference(ref, train_p)
    cache_reference(ref, held_p)
    before = preference_metrics(ref, held_p, ctx.cfg.dpo.beta)
    policy = load_model(sft_dir)
    metrics = train_dpo(policy, train_p, ctx.cfg.dpo)
    after = preference_metrics(policy, held_p, ctx.cfg.dpo.beta)
    save_model(policy, tmp, ctx.tokenizer_file)
    log.info(
        "dpo: held-out logp accuracy %.3f → %.3f, reward margin %.4f → %.4f",
        before["logp_accuracy"],
        after["logp_accuracy"],
        before["reward_margin"],
        after["reward_margin"],
    )
    return {"train_pairs": len(train_p), "held_out_sft": before, "held_out_dpo": after, **metrics}
