"""Running one curation phase (a list of datatrove steps) on datatrove's Local, Slurm or Ray executor.

Local is the default. Slurm and Ray take the same phases: herd submits a phase, waits until datatrove's
completion markers show every task done, then submits the next (so each phase sees the previous phase's
files), and counts the funnel at the end exactly as on one machine. Slurm and Ray need a logging/work
folder on a filesystem every node sees (`out` on shared storage).
"""

from __future__ import annotations

import contextlib
import os
import select
import signal
import sys
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from herd.core.logging import get_logger

log = get_logger(__name__)


@dataclass
class ExecutorConfig:
    """Where phases run. `tasks` splits the input files; `workers` run at once (local and Ray)."""

    kind: Literal["local", "slurm", "ray"] = "local"
    tasks: int = 2
    workers: int = 2
    start_method: Literal["fork", "forkserver", "spawn"] = "forkserver"
    # slurm / ray only
    partition: str = ""
    time: str = "4:00:00"
    cpus_per_task: int = 1
    mem_per_cpu_gb: float = 2.0
    sbatch_args: dict[str, str] = field(default_factory=dict)
    venv_path: str = ""
    poll_s: float = 30.0
    quiet: bool = True  # silence datatrove's per-task console logs (its log files are kept either way)

    def __post_init__(self) -> None:
        if self.tasks < 1 or self.workers < 1:
            raise ValueError(f"executor.tasks and executor.workers must be >= 1, got {self.tasks}, {self.workers}")
        if self.kind == "slurm" and not self.partition:
            raise ValueError("executor.partition is required when executor.kind = 'slurm'")


@dataclass
class Phase:
    """One datatrove pipeline run over `tasks` tasks (1 for the single-task 'decide' passes)."""

    name: str
    steps: list[Any]
    tasks: int
    max_workers: int = 0  # 0: executor.workers; 1 runs tasks one after another in this process


def run_phase(phase: Phase, logging_dir: Path, cfg: ExecutorConfig) -> None:
    """Run `phase` to completion; tasks completed by an earlier (killed) run are skipped.

    Raises when a task did not complete: on Ray once every task has returned, on Slurm once the job array
    has left the queue (a failed array task never writes its completion marker; waiting on would be forever).
    """
    if cfg.quiet:
        quiet_datatrove()
    ex = build_executor(phase, logging_dir, cfg)
    with children_die_with_driver() if cfg.kind == "local" else contextlib.nullcontext():
        ex.run()  # local and Ray return when every task has; Slurm returns once the job array is submitted
    if cfg.kind == "slurm":
        _wait_for_slurm(ex, phase, cfg.poll_s)
    _check_complete(ex, phase)


def build_executor(phase: Phase, logging_dir: Path, cfg: ExecutorConfig) -> Any:
    """datatrove's executor for `phase`: LocalPipelineExecutor, SlurmPipelineExecutor or RayPipelineExecutor."""
    if cfg.kind == "local":
        from datatrove.executor import LocalPipelineExecutor

        return LocalPipelineExecutor(
            phase.steps,
            tasks=phase.tasks,
            workers=max(1, min(cfg.workers, phase.tasks, phase.max_workers or cfg.workers)),
            logging_dir=str(logging_dir),
            start_method=cfg.start_method,
        )
    if cfg.kind == "slurm":
        from datatrove.executor import SlurmPipelineExecutor

        return SlurmPipelineExecutor(
            phase.steps,
            tasks=phase.tasks,
            time=cfg.time,
            partition=cfg.partition,
            cpus_per_task=cfg.cpus_per_task,
            mem_per_cpu_gb=int(cfg.mem_per_cpu_gb),
            job_name=f"herd-{phase.name}",
            sbatch_args=dict(cfg.sbatch_args) or None,
            venv_path=cfg.venv_path or None,
            logging_dir=str(logging_dir),
        )
    from datatrove.executor import RayPipelineExecutor

    # Ray joins the cluster `ray.init()` finds (RAY_ADDRESS, a `ray start` on this node) or starts a local one;
    # each task is one Ray actor holding `cpus_per_task` CPUs. The single-process limit `max_workers` is a
    # fork-safety rule of the local executor (see quality.py): Ray tasks are processes of their own.
    return RayPipelineExecutor(
        phase.steps,
        tasks=phase.tasks,
        workers=cfg.workers,
        cpus_per_task=cfg.cpus_per_task,
        mem_per_cpu_gb=cfg.mem_per_cpu_gb,
        logging_dir=str(logging_dir),
    )


PR_SET_PDEATHSIG = 1  # linux/prctl.h: the signal a process gets when the thread that forked it ends


def die_with_driver(driver: int) -> None:
    """In a child process: end when the driver process ends, however it ends.

    `kill -9` of the driver runs no cleanup. A direct child (datatrove's manager) gets SIGKILL from the
    kernel when its parent dies (prctl PR_SET_PDEATHSIG). Pool workers are children of the forkserver,
    which stays up while they hold its liveness pipe: they watch the driver's pidfd from a thread."""
    if sys.platform.startswith("linux"):
        import ctypes

        ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
    threading.Thread(target=_watch_driver, args=(driver,), name="herd-driver-watch", daemon=True).start()


def _watch_driver(driver: int) -> None:
    try:
        fd = os.pidfd_open(driver)  # readable once the driver has exited (Linux 5.3+)
        select.select([fd], [], [])
    except ProcessLookupError:
        pass  # already gone (died between our start and now)
    except (AttributeError, OSError):  # no pidfd here: poll
        while _alive(driver):
            time.sleep(1.0)
    os.kill(os.getpid(), signal.SIGKILL)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _guarded_init(driver: int, initializer: Callable[..., Any] | None, initargs: tuple) -> None:
    die_with_driver(driver)
    if initializer is not None:
        initializer(*initargs)


@contextlib.contextmanager
def children_die_with_driver() -> Iterator[None]:
    """While datatrove's local executor runs: its manager and pool start `die_with_driver` first.

    datatrove creates them (`multiprocess.Manager()`, `ctx.Pool(workers)`) without an initializer and
    offers no hook, so the two factories are wrapped for the duration of one `run()` in this process."""
    import multiprocess
    import multiprocess.context as mpc
    from multiprocess.managers import SyncManager

    driver = os.getpid()
    manager, pool = multiprocess.Manager, mpc.BaseContext.Pool

    def guarded_manager() -> Any:
        m = SyncManager(ctx=manager.__self__.get_context())
        m.start(die_with_driver, (driver,))
        return m

    def guarded_pool(self: Any, processes: int | None = None, initializer: Any = None, initargs: tuple = (),
                     maxtasksperchild: int | None = None) -> Any:  # fmt: skip
        return pool(self, processes, _guarded_init, (driver, initializer, initargs), maxtasksperchild)

    multiprocess.Manager, mpc.BaseContext.Pool = guarded_manager, guarded_pool
    try:
        yield
    finally:
        multiprocess.Manager, mpc.BaseContext.Pool = manager, pool


# Warnings datatrove repeats for every document or phase: an empty document, and the Ray executor's note
# that a POSIX path "points to a local filesystem" (it cannot tell NFS or Lustre from a local disk).
NOISE = ("document without text", "Logging directory points to a local filesystem")


def quiet_datatrove() -> None:
    """datatrove logs every task at INFO on the console; keep its log files, show only warnings.

    Its executor calls `add_task_logger` / `close_task_logger` around each task: wrap them so the console
    handler they install is at ERROR level (what datatrove itself uses for non-zero local ranks) and the
    default handler it restores afterwards is at WARNING. Forked workers inherit the wrapping.
    """
    import sys

    import datatrove.executor.base as base
    from datatrove.utils import logging as dt_logging
    from loguru import logger

    def console_warnings() -> None:
        logger.remove()
        logger.add(sys.stderr, level="WARNING", filter=lambda r: not any(n in r["message"] for n in NOISE))

    def add_task_logger(logging_dir: Any, rank: int, local_rank: int = 0, node_rank: int = -1) -> Any:
        return dt_logging.add_task_logger(logging_dir, rank, local_rank=1, node_rank=node_rank)

    def close_task_logger(logfile: Any) -> None:
        logger.complete()
        console_warnings()
        logfile.close()

    base.add_task_logger, base.close_task_logger = add_task_logger, close_task_logger
    console_warnings()


def _wait_for_slurm(ex: Any, phase: Phase, poll_s: float) -> None:
    """Poll the completion markers while the job array is queued or running (datatrove requeues preempted tasks)."""
    while incomplete := ex.get_incomplete_ranks():
        if not _slurm_queued(ex.job_id):
            # Gone from the queue: what is still incomplete failed (`_check_complete` names it). One more
            # poll first, as markers written just before the job ended may reach this node's view late.
            time.sleep(poll_s)
            return
        log.info("%s: %d/%d tasks still running (Slurm job %s)", phase.name, len(incomplete), phase.tasks, ex.job_id)
        time.sleep(poll_s)


def _slurm_queued(job_id: Any) -> bool:
    """Whether `squeue` still lists the job (pending, running or requeued).

    A finished job is listed empty or, once purged, an "Invalid job id"; any other squeue error (a busy
    controller) counts as still queued, so a slow slurmctld never fails a running phase.
    """
    import subprocess

    out = subprocess.run(["squeue", "--noheader", "--jobs", str(job_id)], capture_output=True, text=True)
    if out.returncode == 0:
        return bool(out.stdout.strip())
    if "invalid job id" in out.stderr.lower():
        return False
    log.warning("squeue --jobs %s failed (%s); still waiting", job_id, out.stderr.strip())
    return True


def _check_complete(ex: Any, phase: Phase) -> None:
    missing = ex.get_incomplete_ranks()
    if missing:
        raise RuntimeError(
            f"curation phase {phase.name!r}: tasks {missing} did not complete (see {ex.logging_dir.path})"
        )


def step_stats(logging_dir: Path) -> dict[str, dict[str, float]]:
    """Summed datatrove stats per step name over the tasks of one phase: {step: {label: total}}."""
    import json

    out: dict[str, dict[str, float]] = {}
    for f in sorted((logging_dir / "stats").glob("*.json")):
        for step in json.loads(f.read_text()):
            name = step.get("name", "").split(": ", 1)[-1]  # "📊 - TALLY: in" -> "in"
            bucket = out.setdefault(name, {})
            for label, value in (step.get("stats") or {}).items():
                total = value.get("total", 0) if isinstance(value, dict) else value
                bucket[label] = bucket.get(label, 0) + total
    return out
