"""One rank of a 4-rank gloo run is killed (SIGKILL, no cleanup) after step 3; `torchrun --max-restarts=1`
restarts the whole group, which resumes from the last verified checkpoint (step 2), redoes step 3 and
ends bit-identical to the uninterrupted run of the same layout: the paper's 405B run went through 466
interruptions in 54 days [P §3.3.4]. The uninterrupted run has a straggler injected, which the straggler
report must name; the injected delay does not change the arithmetic.
"""

import hashlib
import json
import os
import subprocess
from pathlib import Path

import pytest
from helpers import pretrain_command

from herd.train.metrics import read_metrics
from herd.train.steptimes import rank_file, read_jsonl

STEPS = ("schedule.max_steps=3", "checkpoint.every=2", "eval.batches=1")


def train(token_dir: Path, run_dir: Path, layout: tuple[str, ...], fault: str) -> dict:
    """A 4-rank run that torchrun may restart once, with `fault` injected (herd.train.faults)."""
    cmd = pretrain_command(4, f"data.shards={token_dir}", f"run_dir={run_dir}", *STEPS, *layout, restarts=1)
    # A store per restart: torchrun's shared one hands a restarted group the dead group's addresses.
    env = os.environ | {"HERD_FAULT": fault, "TORCH_DISABLE_SHARE_RDZV_TCP_STORE": "1"}
    r = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr[-3000:]
    records = read_metrics(run_dir / "metrics.jsonl")
    return {
        "train": {x["step"]: x["loss"] for x in records if x.get("kind") == "train"},
        "val": {x["step"]: x["loss"] for x in records if x.get("kind") == "val"},
        "weights": hashlib.sha256((run_dir / "final" / "model.safetensors").read_bytes()).hexdigest(),
        "summary": json.loads((run_dir / "summary.json").read_text()),
    }


@pytest.mark.parametrize(
    ("layout", "killed", "slow"),
    [
        (("parallel.dp_shard=2", "parallel.tp=2"), 1, 2),
        (("parallel.pp=2", "parallel.cp=2", "parallel.dp_shard=1", "parallel.pp_microbatches=2"), 3, 0),
    ],
    ids=["fsdp2xtp2", "pp2xcp2"],
)
def test_killed_rank_restarts_and_continues_bit_identically(token_dir, tmp_path, layout, killed, slow) -> None:
    straight = train(token_dir, tmp_path / "straight", layout, f"slow:{slow}:0.5")
    restarted = train(token_dir, tmp_path / "restarted", layout, f"kill:{killed}:3")
    assert sorted(straight["train"]) == [1, 2, 3]
    for key in ("train", "val", "weights"):
        assert restarted[key] == straight[key], key  # exact: same layout, same reduction order

    s = restarted["summary"]
    assert s["resumed"] and s["attempts"] == 2 and straight["summary"]["attempts"] == 1
    # The wall time counts from the first start: the lost attempt and the restart are in it.
    first, second = (a["start"] for a in read_jsonl(tmp_path / "restarted" / "steptimes" / "attempts.jsonl"))
    assert s["wall_s_since_first_start"] > (second - first) + s["wall_s"]
    assert 0 < s["effective_training_time"] < 1
    # The killed rank logged steps 1-2 before dying after step 3; the restarted group redid step 3.
    log = read_jsonl(rank_file(tmp_path / "restarted", killed))
    assert [(r["step"], r["restart"]) for r in log] == [(1, 0), (2, 0), (3, 1)]

    report = json.loads((tmp_path / "straight" / "stragglers.json").read_text())
    assert report["ranks"] == 4 and report["steps"] == 3
    assert report["stragglers"][:1] == [slow], report["per_rank"]
    assert straight["summary"]["slowest_rank"] == slow
