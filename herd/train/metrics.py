"""Training metrics: one JSON line per step, TensorBoard scalars, PNG curves, MFU and memory."""

from __future__ import annotations

import itertools
import json
import resource
import sys
import time
from pathlib import Path

import torch

from herd.core.io import atomic_write_text
from herd.core.logging import get_logger

log = get_logger(__name__)


class MetricsLogger:
    def __init__(self, run_dir: str | Path, tensorboard: bool = True, enabled: bool = True) -> None:
        self.run_dir = Path(run_dir)
        self.path = self.run_dir / "metrics.jsonl"
        self.enabled = enabled  # only rank 0 of a parallel run writes
        self.tb = self._tensorboard() if tensorboard and enabled else None

    def _tensorboard(self, purge_step: int | None = None) -> object | None:
        try:
            from torch.utils.tensorboard import SummaryWriter
        except ImportError:
            log.info("tensorboard is not installed; metrics go to metrics.jsonl only")
            return None
        return SummaryWriter(str(self.run_dir / "tensorboard"), purge_step=purge_step)

    def log(self, record: dict) -> None:
        if not self.enabled:
            return
        with open(self.path, "a") as f:
            f.write(json.dumps(record) + "\n")
        if self.tb is not None:
            kind = record.get("kind", "train")  # train/loss and val/loss are two curves, not one
            for k, v in record.items():
                if isinstance(v, int | float) and k != "step":
                    self.tb.add_scalar(f"{kind}/{k}", v, record["step"])

    def rewind(self, step: int) -> None:
        """Forget the records after `step`, which a resume or a rollback is about to redo: metrics.jsonl
        keeps one record per step, and TensorBoard hides the old events (its purge_step marker)."""
        if not self.enabled:
            return
        if self.path.is_file():
            kept = [line for line in self.path.read_text().splitlines() if _step(line) <= step]
            atomic_write_text(self.path, "".join(f"{line}\n" for line in kept))
        if self.tb is not None:
            self.tb.close()
            self.tb = self._tensorboard(purge_step=step + 1)

    def close(self) -> None:
        if self.tb is not None:
            self.tb.close()


def _step(line: str) -> float:
    """A record's step; a torn line (the process killed mid-write) or a blank one sorts after every step."""
    try:
        return json.loads(line)["step"]
    except (json.JSONDecodeError, KeyError, TypeError):
        return float("inf")


def read_metrics(path: str | Path) -> list[dict]:
    """Records of a run, the last one per (kind, step) kept (a resumed run rewrites the steps it redid)."""
    latest: dict[tuple, dict] = {}
    for line in Path(path).read_text().splitlines():
        if line.strip():
            r = json.loads(line)
            latest[(r.get("kind", "train"), r["step"])] = r
    return sorted(latest.values(), key=lambda r: (r["step"], r.get("kind", "train")))


def memory_bytes(device: torch.device) -> int:
    if device.type == "cuda":
        return torch.cuda.max_memory_allocated(device)
    peak_kib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak_kib * (1 if sys.platform == "darwin" else 1024)


def measure_peak_flops(device: torch.device, dtype: torch.dtype, n: int = 1024, seconds: float = 0.5) -> float:
    """Achievable matmul FLOP/s on this device and dtype (the denominator of MFU on machines with no
    published peak, such as these CPUs)."""
    a = torch.randn(n, n, device=device, dtype=dtype)
    b = torch.randn(n, n, device=device, dtype=dtype)
    a @ b  # warm up kernels and caches
    iters, start = 0, time.perf_counter()
    while time.perf_counter() - start < seconds:
        a @ b
        iters += 1
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    return 2 * n**3 * iters / (time.perf_counter() - start)


def plot_run(run_dir: str | Path, boundaries: dict[str, int] | None = None) -> Path:
    """loss.png: train and held-out loss, and the LR, against tokens, with stage boundaries marked."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    run_dir = Path(run_dir)
    records = read_metrics(run_dir / "metrics.jsonl")
    train = [r for r in records if r.get("kind", "train") == "train"]
    val = [r for r in records if r.get("kind") == "val"]
    fig, (ax, ax_lr) = plt.subplots(2, 1, figsize=(8, 6), sharex=True, height_ratios=(3, 1))
    ax.plot([r["tokens"] for r in train], [r["loss"] for r in train], lw=0.8, label="train")
    if val:
        ax.plot([r["tokens"] for r in val], [r["loss"] for r in val], "o-", label="held-out")
    ax_lr.plot([r["tokens"] for r in train], [r["lr"] for r in train], color="tab:green")
    for name, tokens in (boundaries or {}).items():
        for a in (ax, ax_lr):
            a.axvline(tokens, color="gray", ls="--", lw=0.8)
        ax.annotate(name, (tokens, ax.get_ylim()[1]), fontsize=8, ha="left", va="top")
    ax.set_ylabel("loss (nats/token)")
    ax.legend()
    ax_lr.set_ylabel("LR")
    ax_lr.set_xlabel("tokens")
    fig.tight_layout()
    out = run_dir / "loss.png"
    fig.savefig(out, dpi=120)
    plt.close(fig)
    return out


def boundaries(train: list[dict]) -> list[tuple[int, str]]:
    """(tokens, label) where the phase, sequence length or batch changes: ramp steps, long-context stages
    and the start of annealing [P §3.4]."""
    marks = []
    for prev, r in itertools.pairwise(train):
        changes = [f"{r.get('phase')} starts"] if r.get("phase") != prev.get("phase") else []
        changes += [
            f"{k} {r.get(key)}"
            for k, key in (("seq", "seq_len"), ("batch", "batch_tokens"))
            if r.get(key) != prev.get(key)
        ]
        if changes:
            marks.append((prev["tokens"], ", ".join(changes)))  # a record's tokens are counted after its step
    return marks


def curve_record(path: str | Path, max_points: int = 500) -> dict:
    """What pretraining records for the run report: train loss and schedules vs tokens (about
    `max_points`, both sides of every boundary kept), held-out loss, and the boundaries themselves."""
    records = read_metrics(path) if Path(path).is_file() else []
    train = [r for r in records if r.get("kind", "train") == "train" and "loss" in r]
    val = [r for r in records if r.get("kind") == "val" and "loss" in r]
    marks = boundaries(train)
    stride = max(1, -(-len(train) // max_points))
    edges = {i for i in range(1, len(train)) if _phase(train[i]) != _phase(train[i - 1])}
    keep = [r for i, r in enumerate(train) if i % stride == 0 or i == len(train) - 1 or i in edges or i + 1 in edges]
    train_keys = ("tokens", "loss", "lr", "batch_tokens", "seq_len")
    return {
        "curve": {k: [_round(r.get(k)) for r in keep] for k in train_keys},
        "held_out_curve": {k: [_round(r.get(k)) for r in val] for k in ("tokens", "loss")},
        "boundaries": [[t, label] for t, label in marks],
    }


def _phase(r: dict) -> tuple:
    return r.get("phase"), r.get("seq_len"), r.get("batch_tokens")


def _round(v: object) -> object:
    return float(f"{v:.6g}") if isinstance(v, float) else v  # six digits: a plot's worth, a small manifest
