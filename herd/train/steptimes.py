"""Per-rank step times, the straggler report and the effective training time: the diagnosis the paper
relies on to keep a 16K-GPU job above 90% effective training time through 466 interruptions [P §3.3.4].

Every rank appends one line per step to `run_dir/steptimes/rank00003.jsonl` (its own file: no
collective, and the lines of a rank that dies are kept up to its last step). A line holds
    work_s  the rank's own part of the step: from the start of the step to the moment it is ready
            to finish it (before the end-of-step barrier). A rank that is slow in local work (data,
            optimizer, host stalls) shows here; the others' wait for it falls into their barrier.
            Slowness inside a collective reaches every rank alike and needs a collective tracer.
    step_s  the whole step up to the end-of-step barrier (equal on every rank).
Rank 0 also appends one line per start of the run to `steptimes/attempts.jsonl`, so that the wall time
counts from the first start, through every restart and every redone step.
"""

from __future__ import annotations

import json
import os
import statistics
import time
from collections.abc import Callable
from pathlib import Path

from herd.core.io import atomic_write_text
from herd.core.logging import get_logger
from herd.train import faults

log = get_logger(__name__)

FOLDER = "steptimes"
ATTEMPTS = "attempts.jsonl"
REPORT = "stragglers.json"
STRAGGLER_THRESHOLD = 0.10  # a rank whose work is ≥ 10% above the step median on average is flagged


def rank_file(run_dir: Path, rank: int) -> Path:
    return Path(run_dir) / FOLDER / f"rank{rank:05d}.jsonl"


def _append(path: Path, record: dict) -> None:
    # Opened per line and closed: what a killed rank wrote before dying is on disk.
    with open(path, "a") as f:
        f.write(json.dumps(record) + "\n")


def read_jsonl(path: Path) -> list[dict]:
    """The whole lines of a log (a line torn by a kill is dropped)."""
    if not path.is_file():
        return []
    records = []
    for line in path.read_text().splitlines():
        try:
            records.append(json.loads(line))
        except json.JSONDecodeError:
            continue
    return records


class StepClock:
    """Times this rank's steps, applies the test faults (herd.train.faults) and writes the step log."""

    def __init__(self, run_dir: Path, rank: int, barrier: Callable[[], None], started: float) -> None:
        self.path, self.rank, self.barrier = rank_file(run_dir, rank), rank, barrier
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.restart = int(os.environ.get("TORCHELASTIC_RESTART_COUNT", "0"))
        self._step, self._start = 0, 0.0
        if rank == 0:
            _append(self.path.parent / ATTEMPTS, {"start": started, "elastic_restart": self.restart})
            if self.restart == 0 and (why := faults.restart_warning()):
                log.warning(why)

    def start(self, step: int) -> None:
        """Before step `step` (the one that will be counted as that step if its update is applied)."""
        self._step, self._start = step, time.perf_counter()

    def stop(self) -> None:
        """After the step's own work: this rank's faults, then every rank meets, then one log line."""
        faults.inject(self.rank, self._step)
        work = time.perf_counter() - self._start
        self.barrier()
        total = time.perf_counter() - self._start
        record = {"step": self._step, "work_s": round(work, 6), "step_s": round(total, 6), "end": time.time()}
        _append(self.path, record | {"restart": self.restart})


def final_records(records: list[dict]) -> dict[int, dict]:
    """Each step's last record: the attempt that counted (earlier ones were lost to a restart, a rollback
    or a skipped update)."""
    return {r["step"]: r for r in records}


def straggler_report(run_dir: Path, threshold: float = STRAGGLER_THRESHOLD) -> dict:
    """Per step, the rank with the most work and how much above the median rank it was; per rank, how
    often it was the slowest and its mean excess over the median. Steps every rank logged are compared."""
    files = sorted((Path(run_dir) / FOLDER).glob("rank*.jsonl"))
    by_rank = {int(f.stem.removeprefix("rank")): final_records(read_jsonl(f)) for f in files}
    steps = sorted(set.intersection(*(set(recs) for recs in by_rank.values()))) if by_rank else []
    per_step, excess = [], {r: [] for r in by_rank}
    for step in steps:
        work = {r: recs[step]["work_s"] for r, recs in by_rank.items()}
        median = statistics.median(work.values())
        slowest = max(work, key=work.__getitem__)
        for r, w in work.items():
            excess[r].append(w / median - 1 if median > 0 else 0.0)
        per_step.append({"step": step, "rank": slowest, "work_s": work[slowest], "median_s": round(median, 6),
                         "slower_by": round(excess[slowest][-1], 4)})  # fmt: skip
    per_rank = {
        r: {
            "slowest_steps": sum(p["rank"] == r for p in per_step),
            "mean_work_s": round(statistics.fmean(by_rank[r][s]["work_s"] for s in steps), 6) if steps else 0.0,
            "mean_slower_by": round(statistics.fmean(xs), 4) if xs else 0.0,
        }
        for r, xs in excess.items()
    }
    flagged = sorted((r for r, p in per_rank.items() if p["mean_slower_by"] >= threshold),
                     key=lambda r: -per_rank[r]["mean_slower_by"])  # fmt: skip
    return {"ranks": len(by_rank), "steps": len(steps), "threshold": threshold, "stragglers": flagged,
            "per_rank": per_rank, "per_step": per_step}  # fmt: skip


def effective_time(run_dir: Path, now: float | None = None) -> dict:
    """Productive step time ÷ wall time since the run first started [P §3.3.4]. Productive: each step's
    final attempt on rank 0; the wall time also holds startup, checkpoints, evaluation, restarts and the
    steps redone after them (a run resumed by hand counts the time between its runs, like a requeued job)."""
    now = time.time() if now is None else now
    attempts = read_jsonl(Path(run_dir) / FOLDER / ATTEMPTS)
    records = read_jsonl(rank_file(run_dir, 0))
    final = final_records(records)
    productive = sum(r["step_s"] for r in final.values())
    wall = max(now - (attempts[0]["start"] if attempts else now), 1e-9)
    return {
        "effective_training_time": round(min(productive / wall, 1.0), 4),
        "productive_step_s": round(productive, 3),
        "wall_s_since_first_start": round(wall, 3),
        "attempts": max(len(attempts), 1),
        "steps_redone": len(records) - len(final),  # after restarts, rollbacks and skipped updates
    }


def report(run_dir: Path) -> dict:
    """Write stragglers.json and return the summary numbers (rank 0, at the end of the run)."""
    run_dir = Path(run_dir)
    stragglers = straggler_report(run_dir)
    atomic_write_text(run_dir / REPORT, json.dumps(stragglers, indent=1) + "\n")
    summary = effective_time(run_dir)
    worst = max(stragglers["per_rank"].items(), key=lambda kv: kv[1]["mean_slower_by"], default=None)
    if worst is not None:
        summary |= {"slowest_rank": worst[0], "slowest_rank_slower_by": worst[1]["mean_slower_by"]}
    log.info(
        "effective training time %.1f%% (%.1f s of steps in %.1f s since the first start; %d attempts, %d steps "
        "redone); stragglers: %s", 100 * summary["effective_training_time"], summary["productive_step_s"],
        summary["wall_s_since_first_start"], summary["attempts"], summary["steps_redone"],
        stragglers["stragglers"] or "none",
    )  # fmt: skip
    return summary
