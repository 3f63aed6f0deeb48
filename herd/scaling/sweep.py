"""IsoFLOP sweeps: one resumable pretraining run per (budget C, size N) [P §3.2.1].

Tokens per run come from the model's own accounting, D = C / flops_per_token(N, seq_len), rounded to
whole optimizer steps (the run records the FLOPs it actually spent). Each run uses the paper's
scaling-run schedule scaled to its length: linear warmup, cosine to 0.1 × peak over the run, weight decay
0.1 × the current LR. Each run is a Stage (`ScalingRun`): a finished one is skipped by the runner and
leaves `result.json`; an interrupted one resumes from its checkpoints.
Runs are claimed with an OS file lock, so several `herd scaling sweep` processes (or `workers`) can share
one grid without training a run twice.
"""

from __future__ import annotations

import fcntl
import json
import math
import os
import sysconfig
import time
from collections.abc import Iterator
from concurrent.futures import ProcessPoolExecutor
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from multiprocessing import get_context
from pathlib import Path
from typing import Any, ClassVar

from herd.core.config import from_dict
from herd.core.io import atomic_write_text
from herd.core.logging import get_logger
from herd.core.stage import Stage, finished, run_stage
from herd.scaling.config import BenchmarkSection, ScalingConfig, SizeSection
from herd.train.config import PretrainConfig

log = get_logger(__name__)

RESULT = "result.json"
TOKENIZER = "tokenizer.model"  # written beside token shards by the tokenize stage
SWEEP_LOG = "sweeps.jsonl"  # one line per `sweep` call: wall time, runs trained, workers


# ------------------------------------------------------------------------------------------------ data


_NOT_STDLIB = {"site-packages", "test", "tests", "idlelib"}  # installed packages; test data is odd text


def stdlib_files() -> list[str]:
    """This interpreter's standard-library modules (~11 MB on CPython 3.11): real text on every machine."""
    root = Path(sysconfig.get_paths()["stdlib"])
    return [str(p) for p in sorted(root.rglob("*.py")) if not _NOT_STDLIB & set(p.relative_to(root).parts)]


def prepare_shards(cfg: ScalingConfig) -> Path:
    """Token shards for the sweep. With `data.build` unset, `data.shards` as it is; else build them: a
    small BPE tokenizer, `tokenize` into `<shards>-docs`, then cut into windows in `<shards>`. Every
    stage writes a manifest, so a second call only checks hashes."""
    shards = Path(cfg.data.shards)
    b = cfg.data.build
    if b is None:
        if not shards.is_dir():
            raise FileNotFoundError(f"{shards}: no token shards (run `herd tokenize`, or set data.build)")
        return shards
    from herd.data.tokenize import TokenizeConfig, tokenize
    from herd.data.tokenizer_stage import TokenizerTrainConfig, train_stage

    inputs = [f for i in b.inputs for f in (stdlib_files() if i == "stdlib" else [i])]
    tok_dir = shards.parent / f"{shards.name}-tokenizer"
    docs = shards.parent / f"{shards.name}-docs" if b.windows else shards
    train_stage(TokenizerTrainConfig(inputs=inputs, out=str(tok_dir), vocab_size=b.vocab_size))
    tok = TokenizeConfig(
        tokenizer=str(tok_dir / "tokenizer.model"), sources={"text": inputs}, out=str(docs),
        val_fraction=b.val_fraction, workers=1,
    )  # fmt: skip
    tokenize(tok)
    if b.windows:
        cut_windows(docs, shards, cfg.seq_len + 1)
    return shards


def cut_windows(src: Path, out: Path, length: int) -> Path:
    """Every document of `src` cut into windows of `length` tokens (a remainder shorter than that is
    dropped), same layout and shard names, in `out`.

    The loader reads a document's tokens consecutively, so with whole files as documents one optimizer
    step sees one or two files and the last steps of a run decide its loss: on the stdlib corpus two seeds
    of one run differed by up to 0.12 nats. With windows of seq_len + 1 as documents, each row of a batch
    is one window from a random file and every label keeps its full context. The tokenizer the shards
    were made with (`tokenizer.model` beside them) is carried along: herd.train copies it into the
    exported models, which the benchmark needs."""
    import shutil

    from herd.core.stage import run_fn
    from herd.data.shards import TokenShard, write_shard

    bins = sorted(src.glob("*/*/*.bin"))
    if not bins:
        raise FileNotFoundError(f"{src}: no token shards (<source>/<split>/*.bin)")

    def stage(tmp: Path) -> dict[str, Any]:
        kept = dropped = windows = 0
        for path in bins:
            shard = TokenShard(path)
            pieces = []
            for doc in shard.docs():
                n = len(doc) // length
                pieces.extend(doc[i * length : (i + 1) * length] for i in range(n))
                kept, dropped = kept + n * length, dropped + len(doc) - n * length
            dest = tmp / path.relative_to(src)
            dest.parent.mkdir(parents=True, exist_ok=True)
            write_shard(dest, pieces, shard.vocab_size)
            windows += len(pieces)
        if tokenizer.is_file():
            shutil.copyfile(tokenizer, tmp / TOKENIZER)
        return {"windows": windows, "tokens_kept": kept, "tokens_dropped": dropped}

    tokenizer = src / TOKENIZER
    inputs = [*bins, *([tokenizer] if tokenizer.is_file() else [])]
    run_fn("windows", inputs, {"length": length}, out, stage, version=2)  # 2: carries tokenizer.model
    return out


# ------------------------------------------------------------------------------------------------ the grid


@dataclass(frozen=True)
class RunSpec:
    budget: float  # FLOPs asked for
    size: str
    params: int  # all weights, embeddings included
    matmul_params: int  # the weights that cost FLOPs (non-embedding + output projection)
    flops_per_token: float
    steps: int
    batch_tokens: int
    tokens: int  # steps × batch_tokens: the D actually trained
    flops: float  # tokens × flops_per_token: the C actually spent
    holdout: bool
    run_dir: str


def run_name(budget: float, size: str) -> str:
    return f"C{budget:.2e}-{size}".replace("+", "")


def pretrain_config(
    cfg: ScalingConfig, size: SizeSection, shards: Path, run_dir: str, steps: int, batch: int
) -> PretrainConfig:
    """The herd.train config for one run: the paper's scaling-run schedule stretched over `steps`."""
    lr = size.lr or cfg.lr
    warmup = max(1, min(cfg.warmup_steps, int(cfg.warmup_max_fraction * steps)))
    model = {k: getattr(size, k) for k in ("preset", "dim", "n_layers", "n_heads", "n_kv_heads", "ffn_dim")}
    tree: dict[str, Any] = {
        "run_dir": run_dir,
        "seed": cfg.seed,
        "model": {**model, "max_seq_len": max(cfg.seq_len, 2048), "attn_impl": "sdpa"},
        "data": {"shards": str(shards), "seed": cfg.seed, "tokenizer": ""},
        "optim": {"lr": lr, "weight_decay": cfg.weight_decay},
        "schedule": {"warmup_steps": warmup, "total_steps": steps, "min_lr": cfg.min_lr_ratio * lr, "max_steps": steps},
        "ramp": {
            "stages": [{"after_tokens": 0, "batch_tokens": batch, "seq_len": cfg.seq_len}],
            "micro_batch_size": min(cfg.micro_batch_size, batch // cfg.seq_len),
        },
        "eval": {"every": 0, "batches": cfg.eval_batches, "batch_size": 16},
        "checkpoint": {"every": max(1, math.ceil(steps / max(cfg.checkpoints, 1))), "keep": 1, "verify": False},
        # A fixed peak skips the start-up matmul benchmark: MFU is not what a sweep measures.
        "runtime": {"device": cfg.device, "dtype": cfg.dtype, "tensorboard": False, "peak_flops": 1e12,
                    "log_every": max(1, steps // 20)},
    }  # fmt: skip
    return from_dict(PretrainConfig, tree)


def plan(cfg: ScalingConfig, shards: Path) -> list[RunSpec]:
    """Every (budget, size) run, plus the held-out run, with D = C / FLOPs-per-token(N)."""
    from herd.data.loader import split_sources
    from herd.data.shards import TokenShard
    from herd.model.config import flops_per_token, param_count
    from herd.train.loop import model_config

    if not cfg.sizes:
        raise ValueError("no sizes: add [[sizes]] tables to the config")
    vocab = max(TokenShard(p).vocab_size for ps in split_sources(shards, "train").values() for p in ps)
    grid = [(c, s, False) for c in cfg.budgets for s in cfg.sizes]
    if cfg.holdout.budget:
        grid.append((cfg.holdout.budget, next(s for s in cfg.sizes if s.name == cfg.holdout.size), True))
    specs = []
    for budget, size, held in grid:
        run_dir = str(Path(cfg.run_dir) / "runs" / run_name(budget, size.name))
        batch = cfg.batch_for(budget)
        mcfg = model_config(pretrain_config(cfg, size, shards, run_dir, 1, batch), vocab)
        fpt = flops_per_token(mcfg, cfg.seq_len)
        steps = max(1, round(budget / fpt / batch))
        matmul = param_count(mcfg, embeddings=False) + mcfg.vocab_size * mcfg.dim
        specs.append(
            RunSpec(budget, size.name, param_count(mcfg), matmul, fpt, steps, batch, steps * batch,
                    steps * batch * fpt, held, run_dir)
        )  # fmt: skip
    return specs


# ------------------------------------------------------------------------------------------------ running


@contextmanager
def claim(run_dir: Path) -> Iterator[bool]:
    """An exclusive, non-blocking lock on the run: False when another process is training it. The OS
    drops the lock when its holder dies, so a crashed run never blocks a rerun."""
    run_dir.mkdir(parents=True, exist_ok=True)
    with open(run_dir / ".lock", "w") as f:
        try:
            fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            yield False
            return
        try:
            yield True
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)


@dataclass
class RunConfig:
    """What one run's result depends on: its pretraining config and the benchmark it is scored on."""

    pretrain: PretrainConfig
    benchmark: BenchmarkSection
    device: str


@dataclass
class ScalingRun(Stage):
    """One run of the grid as a stage: pretraining, then the downstream benchmark; `result.json` and the
    manifest's counts hold its numbers. Resumable: an interrupted run continues from its checkpoints."""

    name: ClassVar[str] = "scaling-run"
    resumable: ClassVar[bool] = True
    config: RunConfig
    spec: RunSpec

    @property
    def out(self) -> Path:
        return Path(self.spec.run_dir)

    def inputs(self) -> list[Path]:
        return [Path(self.config.pretrain.data.shards)]

    def run(self, workdir: Path) -> dict[str, Any]:
        import torch

        from herd.train.loop import Trainer

        torch.set_num_threads(int(os.environ.get("OMP_NUM_THREADS", "1")))
        start, cpu = time.perf_counter(), time.process_time()
        summary = Trainer(self.config.pretrain).fit()
        result: dict[str, Any] = {**asdict(self.spec), "val_loss": summary["held_out_loss_last"]}
        result["train_seconds"] = time.perf_counter() - start
        result.update(score(self.config.benchmark, self.config.device, workdir / "final"))
        result["seconds"] = time.perf_counter() - start
        # CPU time of this process: what the run costs on an idle core (wall time counts other jobs' share)
        result["cpu_seconds"] = time.process_time() - cpu
        atomic_write_text(workdir / RESULT, json.dumps(result, indent=2) + "\n")
        log.info("%s: val loss %.4f in %.0fs", workdir, result["val_loss"], result["seconds"])
        return result


def scaling_run(cfg: ScalingConfig, spec: RunSpec, shards: Path) -> ScalingRun:
    size = next(s for s in cfg.sizes if s.name == spec.size)
    pcfg = pretrain_config(cfg, size, shards, spec.run_dir, spec.steps, spec.batch_tokens)
    return ScalingRun(RunConfig(pcfg, cfg.benchmark, cfg.device), spec)


def run_one(cfg: ScalingConfig, spec: RunSpec, shards: Path) -> dict[str, Any] | None:
    """Train (or resume) one run and score it, unless it is finished; None if another process has it."""
    with claim(Path(spec.run_dir)) as mine:
        if not mine:
            log.info("skip %s: another process is training it", spec.run_dir)
            return None
        # The runner skips a finished run (same config, shards and code version) and resumes a killed one.
        return dict(run_stage(scaling_run(cfg, spec, shards), fresh=False).counts)


def benchmark(cfg: ScalingConfig, model_dir: Path) -> dict[str, Any]:
    """The sweep's benchmark on one exported model (see `score`)."""
    return score(cfg.benchmark, cfg.device, model_dir)


def score(b: BenchmarkSection, device: str, model_dir: Path) -> dict[str, Any]:
    """Normalized NLL of the correct answer (per character of the answer text, the normalization of
    lm-eval's acc_norm) and accuracy; {} with a note when the task's data is not on this machine."""
    from herd.scaling.downstream import score_task

    if not (b.task or b.path):
        return {}
    try:
        return score_task(model_dir, b.task, b.path, b.limit, device)
    except FileNotFoundError as e:  # herd.eval's DataMissing included
        log.warning("benchmark skipped: %s", e)
        return {"benchmark_skipped": str(e)}


def _worker_init() -> None:
    os.environ["OMP_NUM_THREADS"] = "1"
    import torch

    torch.set_num_threads(1)


def _run_entry(args: tuple[dict, dict, str]) -> dict[str, Any] | None:
    cfg_data, spec_data, shards = args
    return run_one(from_dict(ScalingConfig, cfg_data), RunSpec(**spec_data), Path(shards))


def run_sweep(cfg: ScalingConfig, workers: int | None = None) -> list[dict[str, Any]]:
    """Train every run not yet done, `workers` at a time (each in its own process); return all results."""
    start = time.perf_counter()
    shards = prepare_shards(cfg)
    specs = plan(cfg, shards)
    todo = [s for s in specs if finished(scaling_run(cfg, s, shards)) is None]
    workers = max(1, workers or cfg.workers)
    log.info("sweep: %d runs, %d to train, %d worker(s)", len(specs), len(todo), workers)
    # Larger runs first: the last worker to finish then waits on a short run, not a long one.
    todo.sort(key=lambda s: -s.flops)
    if workers == 1:
        done = [run_one(cfg, s, shards) for s in todo]
    else:
        jobs = [(asdict(cfg), asdict(s), str(shards)) for s in todo]
        ctx = get_context("spawn")  # no forked torch thread pools
        with ProcessPoolExecutor(workers, mp_context=ctx, initializer=_worker_init) as pool:
            done = list(pool.map(_run_entry, jobs))
    trained = [r for r in done if r is not None]
    if trained:
        record = {"wall_seconds": time.perf_counter() - start, "trained": len(trained), "workers": workers,
                  "run_seconds_sum": sum(r["seconds"] for r in trained),
                  "run_cpu_seconds_sum": sum(r.get("cpu_seconds", 0.0) for r in trained)}  # fmt: skip
        with open(Path(cfg.run_dir) / SWEEP_LOG, "a") as f:
            f.write(json.dumps(record) + "\n")
    return collect(cfg)


def load_result(run_dir: Path) -> dict[str, Any]:
    return json.loads((run_dir / RESULT).read_text())


def collect(cfg: ScalingConfig) -> list[dict[str, Any]]:
    """result.json of every finished run under the sweep's folder."""
    root = Path(cfg.run_dir) / "runs"
    return [load_result(p.parent) for p in sorted(root.glob(f"*/{RESULT}"))] if root.is_dir() else []
