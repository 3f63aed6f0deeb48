"""Small builders shared by tests (importable: `tests/` is on pytest's pythonpath)."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

from herd.model import ModelConfig, RopeScaling


def tiny_config(scaled: bool = True, tied: bool = False, **overrides: object) -> ModelConfig:
    """A random-shape-ish GQA config: 8 query heads sharing 2 KV heads; scaling active at short range."""
    fields = dict(
        dim=64,
        n_layers=2,
        n_heads=8,
        n_kv_heads=2,
        vocab_size=300,
        ffn_dim=96,
        rope_theta=500_000.0,
        rope_scaling=RopeScaling(factor=8.0, original_max_seq_len=64) if scaled else None,
        tie_embeddings=tied,
        max_seq_len=512,
    )
    fields.update(overrides)
    return ModelConfig(**fields)


def write_corpus(root, n_code: int = 40, n_prose: int = 150) -> dict[str, list[str]]:
    """A small real corpus from this interpreter's standard library: module sources ("code") and
    their long docstrings ("prose"). Present on every machine that runs the tests."""
    import ast
    import json
    import random
    import sysconfig
    from pathlib import Path

    root = Path(root)
    files = sorted(Path(sysconfig.get_paths()["stdlib"]).glob("*.py"))
    random.Random(0).shuffle(files)
    (root / "code").mkdir(parents=True, exist_ok=True)
    (root / "prose").mkdir(exist_ok=True)
    for f in files[:n_code]:
        (root / "code" / f"{f.stem}.txt").write_text(f.read_text(errors="replace"))
    rows = []
    for f in files[n_code:]:
        try:
            tree = ast.parse(f.read_text(errors="replace"))
        except SyntaxError:
            continue
        for node in ast.walk(tree):
            if isinstance(node, ast.FunctionDef | ast.ClassDef | ast.Module):
                doc = ast.get_docstring(node)
                if doc and len(doc) > 200:
                    rows.append(json.dumps({"text": doc}))
        if len(rows) >= n_prose:
            break
    (root / "prose" / "docs.jsonl").write_text("\n".join(rows) + "\n")
    return {"code": [str(root / "code")], "prose": [str(root / "prose")]}


# A 2-layer debug model for 5-step parallel parity runs (tests/dist): small, fp32, no evals or checkpoints.
PARITY_PRETRAIN = [
    "runtime.peak_flops=1e12", "runtime.tensorboard=false", "schedule.warmup_steps=2", "schedule.total_steps=20",
    "ramp.micro_batch_size=2", "ramp.stages=[{after_tokens=0, batch_tokens=2048, seq_len=128}]",
    "eval.every=0", "checkpoint.every=0", "optim.lr=3e-3", "model.n_heads=4", "model.n_kv_heads=2",
]  # fmt: skip


def pretrain_command(nproc: int, *args: str, restarts: int = 0) -> list[str]:
    """`herd pretrain /dev/null` with the parity settings and `args`, on one process or through torchrun
    (which restarts the whole group up to `restarts` times when a rank fails)."""
    args = ("pretrain", "/dev/null", *PARITY_PRETRAIN, *args)
    if nproc == 1:
        return [sys.executable, "-m", "herd.cli", *args]
    torchrun = shutil.which("torchrun", path=str(Path(sys.executable).parent))
    launch = [torchrun, "--standalone", f"--nproc_per_node={nproc}", f"--max-restarts={restarts}"]
    return [*launch, "-m", "herd.cli", *args]


def pretrain_losses(token_dir, run_dir, nproc: int, *extra: str) -> dict[int, float]:
    """Train-step losses of a parity run, by step."""
    from herd.train.metrics import read_metrics

    cmd = pretrain_command(nproc, f"data.shards={token_dir}", f"run_dir={run_dir}", *extra)
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stderr[-3000:]
    return {x["step"]: x["loss"] for x in read_metrics(Path(run_dir) / "metrics.jsonl") if x.get("kind") == "train"}


def assert_same_losses(got: dict[int, float], want: dict[int, float], rel: float = 1e-5) -> None:
    """Same steps, and each loss within `rel` of the reference (fp32 reduction order differs) [issue 6]."""
    assert sorted(got) == sorted(want) and want, (sorted(got), sorted(want))
    for step in want:
        assert abs(got[step] - want[step]) <= rel * abs(want[step]), (step, got[step], want[step])
