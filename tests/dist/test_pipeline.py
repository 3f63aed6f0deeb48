"""Interleaved pipeline schedules, CP×PP, TP×PP and tied embeddings under TP/PP, through torchrun (gloo,
2-4 CPU ranks), against the single-process run of the same model: same losses for 5 steps, ≤ 1e-5
relative [issue 6]. A separate file from test_parallel.py so pytest-xdist runs the two on both workers.
"""

import pytest
from helpers import assert_same_losses, pretrain_losses

STEPS = f"schedule.max_steps={5}"
LAYERS4 = ("model.n_layers=4",)  # 2 ranks × 2 stages each
TIED = ("model.tie_embeddings=true",)
TIED4 = (*TIED, *LAYERS4)
# The batch and sequence grow after 2 steps: the pipeline builds a schedule per micro-batch shape.
RAMP4 = (*LAYERS4, "ramp.stages=[{after_tokens=0, batch_tokens=2048, seq_len=128}, "
                   "{after_tokens=4096, batch_tokens=4096, seq_len=256}]")  # fmt: skip


@pytest.fixture(scope="module")
def references(token_dir, tmp_path_factory):
    """The single-process losses of each model variant, computed once."""
    cache: dict[tuple[str, ...], dict[int, float]] = {}

    def get(model: tuple[str, ...]) -> dict[int, float]:
        if model not in cache:
            cache[model] = pretrain_losses(token_dir, tmp_path_factory.mktemp("single"), 1, STEPS, *model)
        return cache[model]

    return get


PP2 = ("parallel.pp=2", "parallel.dp_shard=1")
INTERLEAVED = (*PP2, "parallel.pp_stages_per_rank=2")


@pytest.mark.parametrize(
    ("nproc", "model", "layout"),
    [
        (2, RAMP4, (*INTERLEAVED, "parallel.pp_schedule=Interleaved1F1B", "parallel.pp_microbatches=4")),
        # 2 layers on 4 stages, ends lighter: the first stage only embeds, the last only projects [P §3.3.2].
        (2, (), (*INTERLEAVED, "parallel.pp_schedule=LoopedBFS", "parallel.pp_microbatches=2",
                 "parallel.pp_lighter_ends=true")),
        (2, LAYERS4, (*INTERLEAVED, "parallel.pp_schedule=InterleavedZeroBubble", "parallel.pp_microbatches=4")),
        (4, (), ("parallel.pp=2", "parallel.cp=2", "parallel.dp_shard=1", "parallel.pp_microbatches=2")),
        (4, (), ("parallel.pp=2", "parallel.tp=2", "parallel.dp_shard=1", "parallel.pp_microbatches=2")),
        (2, TIED, ("parallel.tp=2", "parallel.dp_shard=1")),
        (2, TIED, ("parallel.tp=2", "parallel.dp_shard=1", "parallel.loss_parallel=false")),
        (2, TIED, (*PP2, "parallel.pp_microbatches=2")),
        (4, TIED4, ("parallel.pp=2", "parallel.dp_shard=2", "parallel.pp_stages_per_rank=2",
                    "parallel.pp_schedule=Interleaved1F1B", "parallel.pp_microbatches=2")),
    ],
    ids=[
        "pp2x2-interleaved1f1b-ramp",
        "pp2x2-loopedbfs-empty-ends",
        "pp2x2-zerobubble",
        "cp2xpp2",
        "tp2xpp2",
        "tied-tp2",
        "tied-tp2-gathered-logits",
        "tied-pp2",
        "tied-fsdp2xpp2x2-interleaved",
    ],
)  # fmt: skip
def test_layout_matches_one_process(token_dir, tmp_path, references, nproc, model, layout) -> None:
    assert_same_losses(pretrain_losses(token_dir, tmp_path, nproc, STEPS, *model, *layout), references(model))


def test_tied_interleaved_checkpoint_resumes_on_one_process(token_dir, tmp_path) -> None:
    """Both end stages save the tied matrix under one name; DCP keeps one copy, and one process resumes
    from the 4-rank (FSDP × 2 pipeline ranks × 2 stages) checkpoint with the straight run's losses."""
    straight = pretrain_losses(token_dir, tmp_path / "straight", 1, "schedule.max_steps=4", *TIED4)
    run_dir = tmp_path / "resharded"
    layout = ("parallel.pp=2", "parallel.dp_shard=2", "parallel.pp_stages_per_rank=2",
              "parallel.pp_schedule=Interleaved1F1B", "parallel.pp_microbatches=2")  # fmt: skip
    pretrain_losses(token_dir, run_dir, 4, "schedule.max_steps=2", *TIED4, *layout)
    assert_same_losses(pretrain_losses(token_dir, run_dir, 1, "schedule.max_steps=4", *TIED4), straight)
