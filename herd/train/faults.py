"""Fault injection: the hook tests use to make a rank die or lag at a known step, so that recovery from
the interruptions of a long run (466 in 54 days for the 405B model [P §3.3.4]) is tested, not assumed.

Read in one place, the environment variable `HERD_FAULT`: comma-separated entries
    kill:RANK:STEP    global rank RANK kills itself (SIGKILL: no cleanup, like a lost host) right after
                      finishing step STEP, on the first attempt only (torchelastic's
                      TORCHELASTIC_RESTART_COUNT unset or 0), so a restarted group runs through
    slow:RANK:SECONDS global rank RANK sleeps SECONDS after each step's own work: a straggler
Unset (every real run), `inject` does nothing.
"""

from __future__ import annotations

import functools
import os
import signal
import time
from collections.abc import Mapping
from dataclasses import dataclass

ENV = "HERD_FAULT"
KINDS = ("kill", "slow")


@dataclass(frozen=True)
class Fault:
    kind: str  # "kill" or "slow"
    rank: int
    value: float  # kill: the step after which the rank dies; slow: seconds of delay per step


@functools.lru_cache(maxsize=8)
def parse(spec: str) -> tuple[Fault, ...]:
    """The faults a `HERD_FAULT` value names; a malformed entry is a one-line error."""
    faults = []
    for entry in filter(None, (e.strip() for e in spec.split(","))):
        parts = entry.split(":")
        try:
            kind, rank, value = parts[0], int(parts[1]), float(parts[2])
        except (IndexError, ValueError):
            kind, rank, value = "", -1, 0.0
        if len(parts) != 3 or kind not in KINDS or rank < 0 or value < 0:
            raise ValueError(f"{ENV}={spec!r}: {entry!r} is not kill:RANK:STEP or slow:RANK:SECONDS")
        faults.append(Fault(kind, rank, value))
    return tuple(faults)


def first_attempt(env: Mapping[str, str] = os.environ) -> bool:
    """True unless torchelastic has restarted this worker group (it counts restarts from 0)."""
    return env.get("TORCHELASTIC_RESTART_COUNT", "0") == "0"


def inject(rank: int, step: int, env: Mapping[str, str] = os.environ) -> None:
    """Apply the faults `HERD_FAULT` names for this rank after it finished `step` (called by every rank)."""
    spec = env.get(ENV)
    if not spec:
        return
    for f in parse(spec):
        if f.rank != rank:
            continue
        if f.kind == "slow":
            time.sleep(f.value)
        elif step == f.value and first_attempt(env):
            os.kill(os.getpid(), signal.SIGKILL)


def restart_warning(env: Mapping[str, str] = os.environ) -> str | None:
    """Why torchrun's restarts would fail here, or None. torchrun shares its rendezvous store with the
    workers by default; a restarted group then reads the dead group's gloo/NCCL addresses from it
    ("Connection refused" at init; pytorch/pytorch#135712). A store per restart avoids that."""
    restarts = int(env.get("TORCHELASTIC_MAX_RESTARTS", "0") or 0)
    if restarts > 0 and env.get("TORCHELASTIC_USE_AGENT_STORE") == "True":
        return (
            f"torchrun --max-restarts={restarts} with the rendezvous store shared: a restarted group cannot "
            "connect; launch with TORCH_DISABLE_SHARE_RDZV_TCP_STORE=1 (scripts/slurm_pretrain.sh does)"
        )
    return None
