"""Choosing the data mix by small-model runs [P §3.1.2]: candidate mixes over curation's buckets × small
model sizes × token budgets, a per-mix loss-vs-compute curve, and the mix whose predicted loss at the
target compute is lowest; then a held-out larger run of the chosen mix and of the heuristic mix (the
paper's 50% general / 25% math and reasoning / 17% code / 8% multilingual) measures both predictions.

The curve per mix is the compute-optimal envelope (at each budget the best size's held-out loss) as a line
in log10 C, `herd.scaling.fit.fit_loss_trend` — over one or two decades the saturating form is not
identifiable from so few points (the scaling module says the same). C = tokens × training FLOPs per token
(`herd.model.config.flops_per_token`, 6·N plus attention).

    out = "runs/experiments/mix-selection"
    [mix_selection]
    base = "configs/experiments/base/pretrain-tiny.toml"
    heuristic = "paper"
    budgets = [131072, 393216]          # training tokens of the small runs
    target = "large"                    # a size below, trained on target_tokens: the held-out run
    target_tokens = 1048576
    [mixes.paper]   general = 0.5 ...    # a candidate: data.mix weights
    [sizes.small]   dim = 32 ...         # model.* overrides

`herd experiment CONFIG` runs it when the file has a [mix_selection] table; runs are `herd experiment`
grids (`<out>/small/`, `<out>/target/`), so finished runs are skipped on a rerun.
"""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from herd.core.config import ConfigError, load_config, save_resolved
from herd.core.manifest import Manifest
from herd.experiment.analysis import compare, t_half_width
from herd.experiment.grid import ExperimentConfig, ExperimentSection, run_experiment


@dataclass
class MixSelectionSection:
    base: str = "configs/experiments/base/pretrain-tiny.toml"  # the pretraining config every run starts from
    heuristic: str = "paper"  # the mix the chosen one is compared with on the held-out run
    budgets: list[int] = field(default_factory=lambda: [131_072, 393_216])  # small runs' training tokens
    target: str = ""  # the size (a key of [sizes]) of the held-out larger run
    target_tokens: int = 1_048_576
    seeds: list[int] = field(default_factory=lambda: [0])
    target_seeds: list[int] = field(default_factory=lambda: [0])
    tokens_per_step: int = 4096  # to set the cosine horizon of each run to its length
    parallel: int = 2
    threads: int = 1


@dataclass
class MixSelectionConfig:
    out: str = "runs/experiments/mix-selection"
    mix_selection: MixSelectionSection = field(default_factory=MixSelectionSection)
    mixes: dict[str, dict[str, float]] = field(default_factory=dict)  # name -> data.mix
    sizes: dict[str, dict[str, int]] = field(default_factory=dict)  # name -> model.* overrides
    common: dict[str, Any] = field(default_factory=dict)  # overrides every run gets

    def __post_init__(self) -> None:
        m = self.mix_selection
        if len(self.mixes) < 2 or m.heuristic not in self.mixes:
            raise ConfigError(f"mixes: give two or more candidate mixes, the heuristic {m.heuristic!r} among them")
        if len(self.sizes) < 2 or (m.target and m.target not in self.sizes):
            raise ConfigError(f"mix_selection.target: {m.target!r} is not one of the sizes: {', '.join(self.sizes)}")
        if len(set(m.budgets)) < 2:
            raise ConfigError("mix_selection.budgets: a loss-vs-compute line needs two or more distinct budgets")


@dataclass
class MixPoint:
    mix: str
    size: str
    compute: float  # training FLOPs
    loss: float


@dataclass
class MixFit:
    mix: str
    slope: float  # held-out loss per decade of compute
    intercept: float
    envelope: list[tuple[float, float]]  # (compute, best loss) per budget
    predicted: float  # at the target compute


def fit_mix(mix: str, points: Sequence[MixPoint], target_compute: float) -> MixFit:
    """The compute-optimal envelope of one mix's runs (`envelope`: the best run in each group of runs
    within a factor 1.5 of compute) as a line in log10 C, and its prediction at `target_compute`."""
    from herd.scaling.fit import fit_loss_trend

    env = envelope([p for p in points if p.mix == mix])
    slope, icpt = fit_loss_trend([c for c, _ in env], [loss for _, loss in env])
    return MixFit(mix, slope, icpt, env, slope * math.log10(target_compute) + icpt)


def envelope(points: Sequence[MixPoint]) -> list[tuple[float, float]]:
    """(compute, lowest loss) per budget group; runs within a factor 1.5 of compute form one group (the
    sizes trained on one token budget differ in compute by their FLOPs per token)."""
    groups: list[list[MixPoint]] = []
    for p in sorted(points, key=lambda p: p.compute):
        if groups and p.compute <= 1.5 * groups[-1][0].compute:
            groups[-1].append(p)
        else:
            groups.append([p])
    best = [min(g, key=lambda p: p.loss) for g in groups]
    return [(b.compute, b.loss) for b in best]


def select_mix(points: Sequence[MixPoint], target_compute: float) -> tuple[str, list[MixFit]]:
    """The mix with the lowest predicted held-out loss at the target compute, and every mix's fit."""
    fits = [fit_mix(m, points, target_compute) for m in dict.fromkeys(p.mix for p in points)]
    return min(fits, key=lambda f: f.predicted).mix, fits


# ---------------------------------------------------------------------------------------------- running


def small_sizes(cfg: MixSelectionConfig) -> list[str]:
    """The sizes the curves are fitted on: all but the held-out run's."""
    target = cfg.mix_selection.target or list(cfg.sizes)[-1]
    return [s for s in cfg.sizes if s != target]


def _arm(cfg: MixSelectionConfig, mix: str, size: str, tokens: int) -> dict[str, Any]:
    steps = max(1, math.ceil(tokens / cfg.mix_selection.tokens_per_step))
    model = {f"model.{k}": v for k, v in cfg.sizes[size].items()}
    return {"data.mix": cfg.mixes[mix], **model, "schedule.tokens": tokens, "schedule.total_steps": steps}


def _grid(cfg: MixSelectionConfig, name: str, arms: dict[str, dict[str, Any]], seeds: list[int]) -> ExperimentConfig:
    m = cfg.mix_selection
    exp = ExperimentSection(
        command="pretrain", config=m.base, seeds=seeds, metric="held_out_loss_last", parallel=m.parallel,
        threads=m.threads,
    )  # fmt: skip
    return ExperimentConfig(out=str(Path(cfg.out) / name), experiment=exp, arms=arms, common=dict(cfg.common))


def run_compute(run_dir: Path) -> float:
    """Training FLOPs of a finished pretraining run: tokens × FLOPs per token of its model at its length."""
    from herd.model.config import flops_per_token
    from herd.train.config import PretrainConfig
    from herd.train.loop import model_config, shard_vocab, train_sources

    pcfg = load_config(PretrainConfig, run_dir / "config.resolved.toml")
    mcfg = model_config(pcfg, shard_vocab(train_sources(pcfg.data.shards), pcfg.model.vocab_size))
    tokens = Manifest.read(run_dir).counts["tokens"]
    return float(tokens * flops_per_token(mcfg, pcfg.ramp.stages[-1].seq_len))


def mix_selection(cfg: MixSelectionConfig) -> dict[str, Any]:
    """Small runs → fits → choice → held-out runs of the chosen and the heuristic mix; writes
    mix_selection.json, report.md and MANIFEST.json in `out`; returns the result."""
    m, out = cfg.mix_selection, Path(cfg.out)
    out.mkdir(parents=True, exist_ok=True)
    save_resolved(cfg, out)
    target_size = m.target or list(cfg.sizes)[-1]
    small = {f"{x}.{s}.{b}": _arm(cfg, x, s, b) for x in cfg.mixes for s in small_sizes(cfg) for b in m.budgets}
    grid = _grid(cfg, "small", small, m.seeds)
    records = run_experiment(grid)
    points = [_point(r, grid) for r in records]
    target_arms = {x: _arm(cfg, x, target_size, m.target_tokens) for x in cfg.mixes}
    target_grid = _grid(cfg, "target", target_arms, m.target_seeds)
    # The held-out run's compute comes from its config alone (the model and the token budget), so the
    # prediction is made before the held-out run exists.
    target_compute = _planned_compute(target_grid)
    chosen, fits = select_mix(points, target_compute)
    ranked = sorted(fits, key=lambda f: f.predicted)
    compared = (
        [chosen, m.heuristic] if chosen != m.heuristic else [chosen, next(f.mix for f in ranked if f.mix != chosen)]
    )
    target_grid.arms = {x: target_arms[x] for x in compared}
    target_records = run_experiment(target_grid)
    measured = _measured(target_records)
    result = {
        "target": {"size": target_size, "tokens": m.target_tokens, "compute": target_compute},
        "chosen": chosen,
        "heuristic": m.heuristic,
        "fits": [asdict(f) for f in fits],
        "points": [asdict(p) for p in points],
        "held_out": [{"mix": x, "predicted": _fit(fits, x).predicted, **measured[x]} for x in compared],
        # the chosen mix against the other on the held-out run's seeds (paired): does the choice hold?
        "comparison": asdict(compare(compared[0], compared[1], target_records, higher_is_better=False)),
    }
    (out / "mix_selection.json").write_text(json.dumps(result, indent=2) + "\n")
    (out / "report.md").write_text(report_markdown(result))
    Manifest.write(out, "mix-selection", [out / "small", out / "target"], cfg, result)
    return result


def _point(record: dict[str, Any], grid: ExperimentConfig) -> MixPoint:
    mix, size, _ = record["arm"].split(".")
    run = Path(grid.out) / record["arm"] / f"seed-{record['seed']}"
    return MixPoint(mix, size, run_compute(run), float(record["value"]))


def _planned_compute(grid: ExperimentConfig) -> float:
    from herd.model.config import flops_per_token
    from herd.train.config import PretrainConfig
    from herd.train.loop import model_config, shard_vocab, train_sources

    arm = next(iter(grid.arms.values()))
    over = [f"{k}={json.dumps(v)}" for k, v in {**grid.common, **arm}.items() if not isinstance(v, dict)]
    pcfg = load_config(PretrainConfig, grid.experiment.config, over)
    mcfg = model_config(pcfg, shard_vocab(train_sources(pcfg.data.shards), pcfg.model.vocab_size))
    return float(pcfg.schedule.tokens * flops_per_token(mcfg, pcfg.ramp.stages[-1].seq_len))


def _measured(records: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    out = {}
    for arm in dict.fromkeys(r["arm"] for r in records):
        values = [float(r["value"]) for r in records if r["arm"] == arm]
        out[arm] = {"measured": sum(values) / len(values), "ci95": t_half_width(values), "seeds": len(values)}
    return out


def _fit(fits: list[MixFit], mix: str) -> MixFit:
    return next(f for f in fits if f.mix == mix)


def report_markdown(result: dict[str, Any]) -> str:
    t = result["target"]
    lines = [
        "# Mix selection by small-model runs [P §3.1.2]",
        "",
        f"Target: size `{t['size']}` on {t['tokens']:,} tokens = {t['compute']:.3g} FLOPs. "
        f"Chosen mix: **{result['chosen']}**; heuristic: {result['heuristic']}.",
        "",
        "| mix | loss per decade of C | predicted at target |",
        "|---|---|---|",
        *[f"| {f['mix']} | {f['slope']:.3f} | {f['predicted']:.4f} |" for f in result["fits"]],
        "",
        "| held-out run | predicted | measured (mean ± 95% CI) | seeds |",
        "|---|---|---|---|",
        *[
            f"| {h['mix']} | {h['predicted']:.4f} | {h['measured']:.4f} ± {h['ci95']:.2g} | {h['seeds']} |"
            for h in result["held_out"]
        ],
        "",
        *_comparison_lines(result.get("comparison")),
    ]
    return "\n".join(lines)


def _comparison_lines(c: dict[str, Any] | None) -> list[str]:
    if not c:
        return []
    return [
        f"Paired over {c['n_pairs']} seeds: {c['arm']} − {c['baseline']} = {c['diff']:+.4f} ± {c['ci95']:.2g} "
        f"(p = {c['p_value']:.3g}): **{c['verdict']}**.",
        "",
    ]
