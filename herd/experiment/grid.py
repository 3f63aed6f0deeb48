"""The experiment grid: every (arm, seed) is one run of a herd command with the arm's overrides.

    [experiment]
    command = "pretrain"                     # any herd command that takes CONFIG [a.b=c ...]
    config = "configs/pretrain/debug.toml"   # the base config every arm starts from
    out_key = "run_dir"                      # the config key naming the run's output folder
    seed_key = "seed"
    seeds = [0, 1]
    metric = "held_out_loss_last"            # dotted path into the run's MANIFEST.json counts
    higher_is_better = false
    baseline = "plain"                       # the arm every other arm is compared with
    [arms.plain]
    [arms.filtered]
    "data.shards" = "runs/tokens-filtered"

Runs go to `<out>/<arm>/seed-<s>/`; each is a subprocess (`python -m herd.cli COMMAND CONFIG ...`) whose
command skips the stages it already finished, so a rerun of the experiment redoes only unfinished runs.
`parallel` runs that many at once (each with `threads` torch threads): on 2 cores, 2 × 1 thread.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from herd.core.config import ConfigError, parse_override
from herd.core.logging import get_logger
from herd.core.manifest import Manifest

log = get_logger(__name__)

JUDGES = ("rm_win_rate",)  # herd.experiment.judge.<name>


@dataclass
class ExperimentSection:
    command: str = "pretrain"
    config: str = ""
    out_key: str = "run_dir"  # pretrain: run_dir; posttrain / eval / safety / capability: out
    seed_key: str = "seed"
    seeds: list[int] = field(default_factory=lambda: [0, 1])
    metric: str = "held_out_loss_last"
    higher_is_better: bool = False
    baseline: str = ""  # "" = the first arm
    parallel: int = 1
    threads: int = 1  # OMP/torch threads per run
    claim: str = ""  # the sentence the experiment tests, printed with its verdict
    # A measurement run on each finished run folder, in a process of its own, as a stage in <run>/judge/:
    # "rm_win_rate" (posttrain: the last round's DPO model vs its SFT model, judged by that round's RM).
    judge: str = ""
    # Further metrics of the same runs, each analysed like `metric` (metric path -> higher is better), e.g.
    # an in-loop benchmark beside the held-out loss.
    also: dict[str, bool] = field(default_factory=dict)


@dataclass
class DerivedArm:
    """An arm read from another arm's runs under another metric: two models one run produces (the Polyak
    average and the last annealing snapshot; the DPO model and the SFT model it started from) are compared
    paired on the same seeds without training anything twice."""

    of: str = ""  # the arm whose runs it reads
    metric: str = ""
    also: dict[str, str] = field(default_factory=dict)  # experiment.also metric -> this arm's path for it


@dataclass
class ExperimentConfig:
    out: str = "runs/experiments/example"
    experiment: ExperimentSection = field(default_factory=ExperimentSection)
    arms: dict[str, dict[str, Any]] = field(default_factory=dict)  # arm -> {dotted key: value}
    common: dict[str, Any] = field(default_factory=dict)  # overrides every arm gets
    derived: dict[str, DerivedArm] = field(default_factory=dict)  # arm -> (runs of another arm, its metric)

    def __post_init__(self) -> None:
        if not self.arms:
            raise ConfigError("arms: an experiment needs at least one [arms.<name>] table")
        for name, d in self.derived.items():
            if name in self.arms or d.of not in self.arms or not d.metric:
                raise ConfigError(f"derived.{name}: needs `of` (one of the arms: {', '.join(self.arms)}), a "
                                  "`metric`, and a name that is not an arm's")  # fmt: skip
        if self.experiment.judge and self.experiment.judge not in JUDGES:
            raise ConfigError(f"experiment.judge: {self.experiment.judge!r} is not one of {', '.join(JUDGES)}")
        if self.experiment.baseline and self.experiment.baseline not in {**self.arms, **self.derived}:
            arms = ", ".join([*self.arms, *self.derived])
            raise ConfigError(f"experiment.baseline: {self.experiment.baseline!r} is not one of the arms: {arms}")
        if len(set(self.experiment.seeds)) != len(self.experiment.seeds) or not self.experiment.seeds:
            raise ConfigError("experiment.seeds: give one or more distinct seeds")

    @property
    def baseline(self) -> str:
        return self.experiment.baseline or next(iter(self.arms))


@dataclass
class Run:
    arm: str
    seed: int
    out: Path
    overrides: list[str]

    def command(self, exp: ExperimentSection) -> list[str]:
        return [sys.executable, "-m", "herd.cli", exp.command, exp.config or "/dev/null", *self.overrides]


def _override(key: str, value: Any) -> str:
    """`key=value` with value in TOML syntax, so strings, lists and booleans survive the command line."""
    text = toml_value(value)
    parse_override(f"{key}={text}")  # fails here, naming the key, rather than in a subprocess
    return f"{key}={text}"


def toml_value(value: Any) -> str:
    """One TOML value on one line: a table becomes an inline table (tomli_w would write a [section])."""
    import tomli_w

    if isinstance(value, dict):
        return "{" + ", ".join(f"{json.dumps(str(k))} = {toml_value(v)}" for k, v in value.items()) + "}"
    return tomli_w.dumps({"v": value}).strip()[len("v = ") :]


def plan_runs(cfg: ExperimentConfig) -> list[Run]:
    """Every (arm, seed), seeds outermost so a partial run has every arm at the first seeds."""
    exp, runs = cfg.experiment, []
    for seed in exp.seeds:
        for arm, over in cfg.arms.items():
            out = Path(cfg.out) / arm / f"seed-{seed}"
            items = {**cfg.common, **over, exp.seed_key: seed, exp.out_key: str(out)}
            runs.append(Run(arm, seed, out, [_override(k, v) for k, v in items.items()]))
    return runs


def run_experiment(cfg: ExperimentConfig, only_plan: bool = False) -> list[dict[str, Any]]:
    """Run (or skip) every run of the grid; returns one record per run: arm, seed, metric value, wall time."""
    runs = plan_runs(cfg)
    if only_plan:
        return [{"arm": r.arm, "seed": r.seed, "command": r.command(cfg.experiment)} for r in runs]
    with ThreadPoolExecutor(max_workers=max(1, cfg.experiment.parallel)) as pool:
        records = list(pool.map(lambda r: _run_one(cfg.experiment, r), runs))
    return records + derived_records(cfg, runs)


def derived_records(cfg: ExperimentConfig, runs: list[Run]) -> list[dict[str, Any]]:
    """One record per run of each derived arm's source arm, read under the derived arm's metric."""
    out = []
    for name, d in cfg.derived.items():
        for r in (r for r in runs if r.arm == d.of):
            record = {"arm": name, "seed": r.seed, "value": read_metric(r.out, d.metric), "wall_s": 0.0}
            out.append(record | ({"also": {m: read_metric(r.out, p) for m, p in d.also.items()}} if d.also else {}))
    return out


def _run_one(exp: ExperimentSection, run: Run) -> dict[str, Any]:
    run.out.mkdir(parents=True, exist_ok=True)
    done, cmd = run.out.parent / f"seed-{run.seed}.done.json", run.command(exp)
    if (wall := _finished(done, cmd, run.out)) is not None:
        log.info("experiment: %s seed %d finished earlier, skipped", run.arm, run.seed)
    else:
        wall = _execute(cmd, run, exp.threads)
        done.write_text(json.dumps({"command": cmd, "key": Manifest.read(run.out).key, "wall_s": wall}) + "\n")
    if exp.judge:  # a stage of its own: skipped when its manifest matches the run it judges
        cmd = [sys.executable, "-m", "herd.experiment.judge", exp.judge, str(run.out)]
        wall += _execute(cmd, run, exp.threads, "judge")
    also = {m: read_metric(run.out, m) for m in exp.also}
    record = {"arm": run.arm, "seed": run.seed, "value": read_metric(run.out, exp.metric), "wall_s": wall}
    return record | ({"also": also} if also else {})


def read_metric(out: Path, metric: str) -> float:
    """`metric` of the run in `out`: a dotted path into its MANIFEST.json counts, or `sub:path` into
    `out/sub/MANIFEST.json` (e.g. `judge:win_rate`, what the experiment's judge recorded)."""
    sub, _, path = metric.rpartition(":")
    folder = out / sub if sub else out
    return metric_value(Manifest.read(folder).counts, path, folder)


def _finished(done: Path, cmd: list[str], out: Path) -> float | None:
    """The recorded wall time when this exact command finished before and its MANIFEST.json is unchanged:
    the command would only skip its stages, so starting a process for it is not needed."""
    if not done.is_file() or not (out / "MANIFEST.json").is_file():
        return None
    record = json.loads(done.read_text())
    return record["wall_s"] if record["command"] == cmd and record["key"] == Manifest.read(out).key else None


def _execute(cmd: list[str], run: Run, threads: int, what: str = "run") -> float:
    env = {**os.environ, "OMP_NUM_THREADS": str(threads)}  # torch reads it at start-up
    log.info("experiment: %s %s seed %d → %s", what, run.arm, run.seed, run.out)
    start = time.perf_counter()
    log_path = run.out.parent / (f"seed-{run.seed}.log" if what == "run" else f"seed-{run.seed}.{what}.log")
    with open(log_path, "w") as logf:
        proc = subprocess.run(cmd, stdout=logf, stderr=subprocess.STDOUT, env=env, check=False)
    if proc.returncode != 0:
        tail = log_path.read_text().strip().splitlines()[-1:]
        raise RuntimeError(f"experiment {what} {run.arm}/seed-{run.seed} failed (exit {proc.returncode}): {tail}")
    return time.perf_counter() - start


def metric_value(counts: dict[str, Any], path: str, where: Path) -> float:
    """counts[a][b]… for the dotted `path` (a list index may be a number, e.g. `metrics.-1.sft_loss`)."""
    node: Any = counts
    for part in path.split("."):
        if isinstance(node, list):
            try:
                node = node[int(part)]
                continue
            except (ValueError, IndexError):
                pass
        elif isinstance(node, dict) and part in node:
            node = node[part]
            continue
        keys = list(node) if isinstance(node, dict) else f"a list of {len(node)}" if isinstance(node, list) else node
        raise ValueError(f"{where}/MANIFEST.json: metric {path!r}: no {part!r} in {json.dumps(keys)[:200]}")
    if not isinstance(node, int | float):
        raise ValueError(f"{where}/MANIFEST.json: metric {path!r} is {type(node).__name__}, not a number")
    return float(node)
