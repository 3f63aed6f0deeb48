"""`herd posttrain CONFIG`: N rounds of RM → rejection sampling → SFT → DPO [P §4.1.6].

Each stage is files → files + MANIFEST.json (herd.core.stage.run_stage), so a rerun skips every stage
whose inputs and config are unchanged and resumes at the first that is not. Each round writes a manifest
of its own summarizing its stages. The RM starts from the base checkpoint and sees all preference data
so far (bundled + pairs verified during earlier rounds' sampling and capability pipelines). SFT starts
from the pre-trained (base) checkpoint each round and trains on all data gathered so far, the paper's
loop [P §4.1, Figure 7]; `sft_from = "previous"` instead continues from the previous round's model on this
round's data. DPO starts from this round's SFT model, which is also its reference.

`capabilities = ["code", "math", ...]` runs those capability pipelines (herd.posttrain.capabilities) in
every round with the round's starting policy, as stages `round-N/cap-<name>/`: their dialogs join SFT,
their checked pairs join RM and DPO, and each capability's evaluation runs on the base model and after
every round (`capability-evals/`). SFT's train dialogs are resampled toward the Table 7 category mix
(`[mix]`, herd.posttrain.mix) and the realised shares are recorded.

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

from herd.core.config import ConfigError, save_resolved
from herd.core.logging import get_logger
from herd.core.manifest import Manifest
from herd.core.runtime import seed_everything
from herd.core.stage import Stage, run_fn, run_stage
from herd.model import Transformer, build_model, get_preset, load_model
from herd.posttrain.bundle import BundleConfig, build_bundle
from herd.posttrain.capabilities import CapabilityContext, get_capability
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
from herd.posttrain.mix import MixConfig, category_of, resample
from herd.posttrain.plots import capability_table, metrics_table, plot_capabilities, plot_rounds
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
    sft_from: str = "pretrained"  # or "previous": where each round's SFT starts [P §4.1]
    mix: MixConfig = field(default_factory=MixConfig)  # SFT category mix [P §4.2.2, Table 7]
    capabilities: list[str] = field(default_factory=list)  # pipelines run in each round [P §4.3]
    capability: dict[str, dict[str, Any]] = field(default_factory=dict)  # [capability.<name>] options

    def __post_init__(self) -> None:
        if self.sft_from not in ("pretrained", "previous"):
            raise ConfigError(f"sft_from: {self.sft_from!r} is not one of 'pretrained', 'previous'")
        for name in self.capability:
            if name not in self.capabilities:
                raise ConfigError(f"capability.{name}: options for a capability not in `capabilities`")


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
    if cfg.capabilities:
        summary["capability_evals_base"] = _capability_evals(ctx, model_dir, out / "cap-eval-base", 0).counts
    for r in range(1, cfg.rounds + 1):
        model_dir, info = _round(ctx, r, model_dir, out / f"round-{r}")
        summary["rounds"].append(info)
    summary["final_model"] = str(model_dir)
    summary["metrics"] = metrics_table(summary["rounds"])
    summary["plots"] = {"metrics": str(plot_rounds(summary["metrics"], out / "metrics.png"))}
    if cfg.capabilities:
        summary["capabilities"] = capability_table(summary)
        summary["plots"]["capabilities"] = str(plot_capabilities(summary["capabilities"], out / "capabilities.png"))
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
        "mix": [{"round": i["round"], **i["sft"].get("mix", {})} for i in summary["rounds"] if "sft" in i],
        "capabilities": summary.get("capabilities", []),
        "report": {"figures": {"metrics.png": "Held-out metrics by round", **_capability_figure(summary)}},
    }


def _capability_figure(summary: dict[str, Any]) -> dict[str, str]:
    return {"capabilities.png": "Capability evaluations by round"} if summary.get("capabilities") else {}


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
        examples = [Example(e.tokens, [1] * len(e.tokens)) for e in _encode(ctx, _sft_dialogs(ctx, [])[0])]
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
        if p.is_file():
            train += read_dialogs(p)
    return train, held


def _encode(ctx: _Ctx, dialogs: list[Dialog]) -> list[Example]:
    return encode_dialogs(ctx.chat, [d.messages for d in dialogs], ctx.cfg.sft.seq_len)


def _round(ctx: _Ctx, r: int, prev: Path, out: Path) -> tuple[Path, dict[str, Any]]:
    cfg = ctx.cfg
    base = _base_dir(ctx)
    earlier = [out.parent / f"round-{i}" for i in range(1, r)]
    earlier_prefs = [p for d in earlier for p in _pref_files(d)]
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
    for name in cfg.capabilities:
        stages[f"cap-{name}"] = _capability_stage(ctx, name, r, prev, out / f"cap-{name}")
    # The paper's loop retrains SFT from the pre-trained checkpoint on everything gathered so far [P §4.1].
    start, rounds = (base, [*earlier, out]) if cfg.sft_from == "pretrained" else (prev, [out])
    gathered = [p for d in rounds for p in _dialog_files(d)]
    pruned = _maybe_prune(ctx, r, out, stages, gathered)
    stages["sft"] = run_fn(
        f"posttrain-sft-{r}",
        [start, ctx.bundle / "sft.jsonl", *(p.parent for p in gathered), *([out / "prune"] if pruned else [])],
        _stage_config(ctx, {"sft": cfg.sft, "mix": cfg.mix, "from": cfg.sft_from}),
        out / "sft",
        lambda tmp: _sft_stage(ctx, start, gathered, tmp, pruned),
    )
    latest = _pref_files(out)  # DPO uses the latest batches of preference data [P §4.1.4]
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
    if cfg.capabilities:
        info["capability_evals"] = _capability_evals(ctx, out / "dpo", out / "cap-eval", r).counts
    Manifest.write(out, "posttrain-round", [prev, *(out / k for k in stages)], cfg, info)
    return out / "dpo", info


def _dialog_files(round_dir: Path) -> list[Path]:
    """A round's new SFT dialogs: rejection sampling's best-of-K and each capability pipeline's kept."""
    return [round_dir / "rs" / "best.jsonl", *sorted(round_dir.glob("cap-*/sft.jsonl"))]


def _pref_files(round_dir: Path) -> list[Path]:
    """A round's new checked preference pairs: verified RS pairs and capability pipelines' pairs."""
    return [p for p in [round_dir / "rs" / "prefs.jsonl", *sorted(round_dir.glob("cap-*/prefs.jsonl"))] if p.is_file()]


def _capability_ctx(ctx: _Ctx, policy: Path, r: int) -> CapabilityContext:
    return CapabilityContext(policy=policy, chat=ctx.chat, bundle=ctx.bundle, seed=ctx.cfg.seed + r, round=r)


def _capability_stage(ctx: _Ctx, name: str, r: int, policy: Path, out: Path) -> Manifest:
    """Capability `name`'s data for round r, generated with the round's starting policy [P §4.3]."""
    options = ctx.cfg.capability.get(name, {})
    cap = get_capability(name, options)
    return run_fn(
        f"posttrain-cap-{name}-{r}",
        [policy, ctx.bundle],
        _stage_config(ctx, {"name": name, "options": options}),
        out,
        lambda tmp: cap.build(_capability_ctx(ctx, policy, r), tmp),
    )


def _capability_evals(ctx: _Ctx, model: Path, out: Path, r: int) -> Manifest:
    """Every capability's evaluation of `model` (the base when r = 0, else round r's final model)."""
    caps = {name: get_capability(name, ctx.cfg.capability.get(name, {})) for name in ctx.cfg.capabilities}
    section = {"capabilities": ctx.cfg.capabilities, "options": ctx.cfg.capability}
    fn = lambda tmp: {name: cap.evaluate(model, _capability_ctx(ctx, model, r)) for name, cap in caps.items()}
    return run_fn(f"posttrain-cap-eval-{r}", [model], _stage_config(ctx, section), out, fn)


def _maybe_prune(ctx: _Ctx, r: int, out: Path, stages: dict[str, Manifest], gathered: list[Path]) -> Path | None:
    """The prune stage when enabled; returns the kept dialogs file SFT trains on (None: prune is off)."""
    if not ctx.cfg.prune.enabled:
        return None
    stages["prune"] = run_fn(
        f"posttrain-prune-{r}",
        [ctx.bundle / "sft.jsonl", *(p.parent for p in gathered), out / "rm"],
        _stage_config(ctx, ctx.cfg.prune),
        out / "prune",
        lambda tmp: _prune_stage(ctx, out / "rm", gathered, r, tmp),
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


def _prune_stage(ctx: _Ctx, rm_dir: Path, gathered: list[Path], r: int, tmp: Path) -> dict[str, Any]:
    """This round's SFT train dialogs (bundle + gathered) → kept.jsonl, dropped/dropped.jsonl with reasons."""
    seed_everything(ctx.cfg.seed)
    train, _ = _sft_dialogs(ctx, gathered)
    rows = [{"messages": d.messages, "source": d.source, "category": _category(d)} for d in train]
    scorer = rm_scorer(RewardModel.load(rm_dir), ctx.chat, ctx.cfg.rm.max_len)
    kept, dropped, stats = prune(rows, ctx.cfg.prune, rm=scorer, judge=load_judge(ctx.cfg.prune))
    write_jsonl(tmp / "kept.jsonl", kept)
    write_jsonl(tmp / "dropped" / "dropped.jsonl", dropped)
    funnel = " → ".join(f"{f['step']} {f['kept']}" for f in stats["funnel"])
    print(f"round {r} pruning: {stats['in']} dialogs → {funnel}; dropped {stats['dropped']}")
    return stats


def _sft_stage(ctx: _Ctx, start: Path, gathered: list[Path], tmp: Path, pruned: Path | None = None) -> dict[str, Any]:
    seed_everything(ctx.cfg.seed)
    train_d, held_d = _sft_dialogs(ctx, gathered)
    if pruned is not None:
        train_d = read_dialogs(pruned)
    train_d, mix = resample(train_d, [_category(d) for d in train_d], ctx.cfg.mix)
    train, held = _encode(ctx, train_d), _encode(ctx, held_d)
    model = load_model(start)
    before = held_out_loss(model, held, ctx.cfg.sft, ctx.pad_id)
    metrics = train_sft(model, train, ctx.cfg.sft, ctx.pad_id)
    after = held_out_loss(model, held, ctx.cfg.sft, ctx.pad_id)
    save_model(model, tmp, ctx.tokenizer_file)
    log.info("sft: category mix %s (target %s)", mix["realised"], ctx.cfg.mix.target)
    return {"examples": len(train), "held_out_loss_before": before, "held_out_loss": after, "mix": mix, **metrics}


def _category(d: Dialog) -> str:
    return category_of({"category": d.category, "source": d.source})


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
