"""Parallel runs through torchrun (gloo, 2-4 CPU ranks) against the single-process run: same losses.

Every layout trains on the same global batches (each data-parallel rank takes its rows), so the
losses of 5 steps must match one process up to fp32 reduction order: ≤ 1e-5 relative [issue 6].
"""

import subprocess

import pytest
from helpers import assert_same_losses, pretrain_command
from helpers import pretrain_losses as run

STEPS = 5


@pytest.fixture(scope="module")
def reference(token_dir, tmp_path_factory) -> dict[int, float]:
    return run(token_dir, tmp_path_factory.mktemp("single"), 1, f"schedule.max_steps={STEPS}")


@pytest.mark.parametrize(
    ("nproc", "layout"),
    [
        (2, ["parallel.dp_shard=2"]),
        (2, ["parallel.dp_replicate=2", "parallel.dp_shard=1"]),
        (2, ["parallel.tp=2", "parallel.dp_shard=1"]),  # loss parallel (the default under TP)
        (2, ["parallel.tp=2", "parallel.dp_shard=1", "parallel.loss_parallel=false"]),  # logits gathered
        (2, ["parallel.cp=2", "parallel.dp_shard=1"]),
        (4, ["parallel.dp_shard=2", "parallel.tp=2"]),
        (4, ["parallel.tp=2", "parallel.cp=2", "parallel.dp_shard=1"]),
        (2, ["parallel.pp=2", "parallel.dp_shard=1", "parallel.pp_microbatches=4"]),
        (2, ["parallel.pp=2", "parallel.dp_shard=1", "parallel.pp_schedule=GPipe", "parallel.pp_microbatches=2"]),
        (4, ["parallel.pp=2", "parallel.dp_shard=2", "parallel.pp_microbatches=2"]),
    ],
    ids=[
        "fsdp2",
        "hsdp2x1",
        "tp2",
        "tp2-gathered-logits",
        "cp2",
        "fsdp2xtp2",
        "tp2xcp2",
        "pp2-1f1b",
        "pp2-gpipe",
        "fsdp2xpp2",
    ],
)
def test_layout_matches_one_process(token_dir, tmp_path, reference, nproc: int, layout: list[str]) -> None:
    assert_same_losses(run(token_dir, tmp_path, nproc, f"schedule.max_steps={STEPS}", *layout), reference)


def test_reshard_4_to_2_to_1_continues_identically(token_dir, tmp_path) -> None:
    """DCP checkpoints written by 4 ranks (FSDP×TP) resume on 2 (FSDP), then on 1 process."""
    straight = run(token_dir, tmp_path / "straight", 1, "schedule.max_steps=6")
    run_dir = tmp_path / "resharded"
    run(token_dir, run_dir, 4, "schedule.max_steps=2", "parallel.dp_shard=2", "parallel.tp=2")
    run(token_dir, run_dir, 2, "schedule.max_steps=4", "parallel.dp_shard=2")
    resharded = run(token_dir, run_dir, 1, "schedule.max_steps=6")
    assert sorted(resharded) == sorted(straight) == list(range(1, 7))
    for step, loss in straight.items():
        assert abs(resharded[step] - loss) <= 1e-5 * abs(loss), (step, resharded[step], loss)


@pytest.mark.parametrize(
    ("layout", "message"),
    [
        (["parallel.tp=3"], "does not divide the world size 2"),
        (
            ["parallel.tp=2", "model.n_kv_heads=1", "model.n_heads=4", "parallel.dp_shard=1"],
            "does not divide the model's 1 KV heads",
        ),
        (["parallel.dp_shard=4"], "but the world size is 2"),
    ],
    ids=["tp-world", "tp-kv-heads", "product"],
)
def test_bad_mesh_is_one_line_error(token_dir, tmp_path, layout: list[str], message: str) -> None:
    cmd = pretrain_command(2, f"data.shards={token_dir}", f"run_dir={tmp_path}", *layout)
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    assert r.returncode != 0
    lines = [line for line in r.stderr.splitlines() if line.startswith("herd pretrain: error:")]
    assert lines and message in lines[0], r.stderr[-2000:]
