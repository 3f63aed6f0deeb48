"""Degree checks fail in one line before any process group exists."""

import pytest

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
    with pytest.raises(ValueError, match="leaves a stage without layers"):
        split_layers(1, 2)
