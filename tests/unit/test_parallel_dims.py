"""Degree checks fail in one line before any process group exists."""

import pytest
import torch

from herd.model import get_preset
from herd.parallel.dims import ParallelConfig, ParallelDims


def test_dp_shard_takes_the_rest_and_mesh_order_is_the_papers() -> None:
    d = ParallelDims.resolve(ParallelConfig(tp=2, cp=2), world_size=16)
    assert (d.dp_replicate, d.dp_shard, d.cp, d.tp, d.pp) == (1, 4, 2, 2, 1)
    assert d.names == ("dp_replicate", "dp_shard", "pp", "cp", "tp")  # DP outermost, TP innermost [P §3.3.2]


@pytest.mark.parametrize(
    ("cfg", "world", "message"),
    [
        (ParallelConfig(tp=3), 8, "dp_replicate·tp·cp·pp = 3 does not divide the world size 8"),
        (ParallelConfig(tp=2, dp_shard=3), 8, "= 6, but the world size is 8"),
        (ParallelConfig(pp=0), 8, "parallel.pp = 0: degrees must be ≥ 1"),
    ],
)
def test_bad_degrees(cfg: ParallelConfig, world: int, message: str) -> None:
    with pytest.raises(ValueError) as e:
        ParallelDims.resolve(cfg, world)
    assert message in str(e.value) and "\n" not in str(e.value)


def test_bad_model_splits() -> None:
    d = ParallelDims.resolve(ParallelConfig(tp=16, dp_shard=1), 16)
    with pytest.raises(ValueError, match="tp = 16 does not divide the model's 8 KV heads"):
        d.check_model(get_preset("8B"), [8192])
    d = ParallelDims.resolve(ParallelConfig(cp=3, dp_shard=1), 3)
    with pytest.raises(ValueError, match="sequence length 8192 is not divisible by 2·cp = 6"):
        d.check_model(get_preset("8B"), [8192])


def test_pipeline_split_even_and_with_lighter_ends() -> None:
    from herd.parallel.pp import split_layers

    assert split_layers(4, 2) == [[0, 1], [2, 3]]
    assert [len(s) for s in split_layers(10, 4)] == [3, 3, 2, 2]
    # Llama 3 405B: 126 layers on 16 stages, first and last one layer lighter [P §3.3.2].
    sizes = [len(s) for s in split_layers(126, 16, lighter_ends=True)]
    assert sizes == [7] + [8] * 14 + [7] and sum(sizes) == 126
    # 16 ranks × 8 interleaved stages: the first holds only the embedding, the last only the output.
    sizes = [len(s) for s in split_layers(126, 128, lighter_ends=True)]
    assert sizes == [0] + [1] * 126 + [0]
    with pytest.raises(ValueError, match="leave a stage without layers"):
        split_layers(1, 2)


def test_interleaved_stages_are_looped_and_fit_the_layers() -> None:
    from herd.parallel.pp import rank_stages

    # pp 4 × 2 stages per rank: rank 1 holds stages 1 and 5 (the looped placement of interleaved 1F1B).
    assert rank_stages(1, 4, 2) == [1, 5]
    assert sorted(s for r in range(4) for s in rank_stages(r, 4, 2)) == list(range(8))
    d = ParallelDims.resolve(ParallelConfig(pp=4, pp_stages_per_rank=2, dp_shard=1), 4)
    with pytest.raises(ValueError, match="pp_stages_per_rank = 8 stages is more than the model's 2 layers"):
        d.check_model(get_preset("debug"), [128])
    with pytest.raises(ValueError, match="pp_stages_per_rank = 0: degrees must be"):
        ParallelDims.resolve(ParallelConfig(pp_stages_per_rank=0), 1)


def test_tied_last_stage_keeps_the_embedding_matrix_for_its_output() -> None:
    from herd.model import Transformer
    from herd.parallel.pp import StageParts, stage_model

    with torch.device("meta"):
        model = Transformer(get_preset("debug", tie_embeddings=True, n_layers=4))
    first, middle, last = (stage_model(model, i, 4) for i in (0, 1, 3))
    assert first.tok_embeddings is not None and middle.tok_embeddings is None and last.tok_embeddings is not None
    assert last.output is None and last.norm is not None
    # A rank's stages 1 and 3 seen as one model: full-model names, the same parameter objects.
    parts = StageParts([middle, last])
    assert list(parts.layers) == ["1", "3"] and parts.layers["3"] is last.layers["3"]
    assert {n for n, _ in parts.named_parameters() if not n.startswith("layers.")} == {
        "norm.weight",
        "tok_embeddings.weight",
    }


def test_one_stage_schedule_refuses_several_stages_per_rank() -> None:
    from herd.parallel.pp import Pipeline

    parts = {0: object(), 2: object()}
    with pytest.raises(ValueError, match="'1F1B' runs one stage per rank; use one of"):
        Pipeline(parts, 4, None, torch.device("cpu"), "1F1B", 4, lambda x, y: x)
