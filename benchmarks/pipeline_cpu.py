"""Pipeline schedules on 2 CPU ranks: how much of the pipeline bubble interleaving removes.

    .venv/bin/python benchmarks/pipeline_cpu.py [--shards runs/recipe/tiny/tokens] [--steps 8]

Each variant is a real `torchrun -m herd.cli pretrain` (gloo, one thread per rank) on the same model,
data and global batch; tokens/s is the median over steps after the first two. The peers, measured in the
same run: one process on one thread (what two pipeline ranks at best double) and torch's `1F1B` schedule.
Theory [P §3.3.2]: the bubble is (PP−1)/(V·M) of the compute, so with PP=2 and M micro-batches a
schedule can reach at most 2 / (1 + (PP−1)/(V·M)) of the one-process speed.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

import torch

MODEL = ["model.dim=256", "model.n_layers=8", "model.n_heads=8", "model.n_kv_heads=2", "model.ffn_dim=768"]
COMMON = [
    "runtime.dtype=fp32", "runtime.tensorboard=false", "runtime.peak_flops=1e12", "eval.every=0",
    "checkpoint.every=0", "anneal.tokens=0", "schedule.warmup_steps=2", "schedule.total_steps=100",
    "ramp.micro_batch_size=2", "ramp.stages=[{after_tokens=0, batch_tokens=8192, seq_len=256}]",
]  # fmt: skip
PP2 = ["parallel.pp=2", "parallel.dp_shard=1"]
VARIANTS = {  # name: (ranks, stages per rank, overrides)
    "one process": (1, 1, []),
    "1F1B": (2, 1, [*PP2, "parallel.pp_schedule=1F1B"]),
    "GPipe": (2, 1, [*PP2, "parallel.pp_schedule=GPipe"]),
    "Interleaved1F1B": (2, 2, [*PP2, "parallel.pp_schedule=Interleaved1F1B", "parallel.pp_stages_per_rank=2"]),
    "LoopedBFS": (2, 2, [*PP2, "parallel.pp_schedule=LoopedBFS", "parallel.pp_stages_per_rank=2"]),
    "InterleavedZeroBubble": (
        2, 2, [*PP2, "parallel.pp_schedule=InterleavedZeroBubble", "parallel.pp_stages_per_rank=2"],
    ),
}  # fmt: skip


def run(shards: str, nproc: int, overrides: list[str], steps: int, micro: int) -> float:
    """Median tokens/s of steps 3.. of one pretraining run."""
    run_dir = tempfile.mkdtemp(prefix="herd-pp-bench-")
    args = ["pretrain", "/dev/null", f"data.shards={shards}", f"run_dir={run_dir}", f"schedule.max_steps={steps}",
            f"parallel.pp_microbatches={micro}", *MODEL, *COMMON, *overrides]  # fmt: skip
    if nproc == 1:
        cmd = [sys.executable, "-m", "herd.cli", *args]
    else:
        torchrun = shutil.which("torchrun", path=str(Path(sys.executable).parent))
        cmd = [torchrun, "--standalone", f"--nproc_per_node={nproc}", "-m", "herd.cli", *args]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}  # one core per rank; one process gets one core too
    r = subprocess.run(cmd, capture_output=True, text=True, env=env)
    if r.returncode:
        raise SystemExit(f"pipeline_cpu: {' '.join(overrides) or 'one process'} failed: {r.stderr[-1500:]}")
    rows = [json.loads(line) for line in (Path(run_dir) / "metrics.jsonl").read_text().splitlines()]
    shutil.rmtree(run_dir, ignore_errors=True)
    return statistics.median(x["tokens_per_s"] for x in rows if x.get("kind") == "train" and x["step"] > 2)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--shards", default="runs/recipe/tiny/tokens", help="a `herd tokenize` output folder")
    ap.add_argument("--steps", type=int, default=8)
    ap.add_argument("--microbatches", type=int, default=4)
    ap.add_argument("--out", default=f"benchmarks/results/pipeline_cpu-{datetime.date.today()}.json")
    a = ap.parse_args()
    if not Path(a.shards).is_dir():
        raise SystemExit(f"pipeline_cpu: no token shards at {a.shards} (run `make demo`, or pass --shards)")
    speed = {name: run(a.shards, n, o, a.steps, a.microbatches) for name, (n, _, o) in VARIANTS.items()}
    one = speed["one process"]
    print(f"herd pipeline schedules, PP=2, M={a.microbatches}, 8-layer dim-256 model, 8,192 tokens/step, fp32")
    print(f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores, torch {torch.__version__}, "
          f"{datetime.date.today()}")  # fmt: skip
    print(f"{'variant':24} {'tokens/s':>9} {'vs 1 process':>13} {'vs 1F1B':>8} {'bound (PP=2)':>13}")
    rows = []
    for name, (n, v, _) in VARIANTS.items():
        bound = 1.0 if n == 1 else 2 / (1 + 1 / (v * a.microbatches))
        rows.append({"variant": name, "tokens_per_s": speed[name], "vs_one_process": speed[name] / one,
                     "vs_1f1b": speed[name] / speed["1F1B"], "bound": bound})  # fmt: skip
        print(f"{name:24} {speed[name]:9.0f} {speed[name] / one:12.2f}× {speed[name] / speed['1F1B']:7.2f}× "
              f"{bound:12.2f}×")  # fmt: skip
    meta = {"date": str(datetime.date.today()), "torch": torch.__version__, "cores": os.cpu_count(),
            "machine": platform.processor() or platform.machine(), "microbatches": a.microbatches}  # fmt: skip
    Path(a.out).write_text(json.dumps({"meta": meta, "rows": rows}, indent=1) + "\n")
    print(f"→ {a.out}")


if __name__ == "__main__":
    main()
