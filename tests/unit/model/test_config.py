import pytest

from herd.model.config import (
    PRESETS,
    flops_per_token,
    get_preset,
    kv_cache_bytes_per_token,
    param_count,
    training_memory_bytes,
)


@pytest.mark.parametrize(
    ("name", "count"),
    [("8B", 8_030_261_248), ("70B", 70_553_706_496), ("405B", 405_853_388_800)],
)
def test_exact_parameter_counts(name: str, count: int) -> None:
    assert param_count(PRESETS[name]) == count


def test_llama32_counts_with_tied_embeddings() -> None:
    # Llama 3.2 1B / 3B as published on their model cards: 1,235,814,400 and 3,212,749,824.
    assert param_count(PRESETS["1B"]) == 1_235_814_400
    assert param_count(PRESETS["3B"]) == 3_212_749_824


@pytest.mark.parametrize(("name", "ffn"), [("8B", 14_336), ("70B", 28_672), ("405B", 53_248), ("1B", 8192)])
def test_ffn_size_rule_reproduces_table3(name: str, ffn: int) -> None:
    assert PRESETS[name].hidden_dim == ffn


def test_table3_shapes() -> None:
    for name, (layers, dim, heads) in {
        "8B": (32, 4096, 32),
        "70B": (80, 8192, 64),
        "405B": (126, 16384, 128),
    }.items():
        cfg = PRESETS[name]
        assert (cfg.n_layers, cfg.dim, cfg.n_heads, cfg.n_kv_heads) == (layers, dim, heads, 8)
        assert (cfg.vocab_size, cfg.norm_eps, cfg.rope_theta) == (128_256, 1e-5, 500_000.0)


def test_kv_cache_bytes_match_facts_sheet() -> None:
    # bf16 KV cache per token: 128 KiB (8B), 320 KiB (70B), 504 KiB (405B).
    assert [kv_cache_bytes_per_token(PRESETS[n]) for n in ("8B", "70B", "405B")] == [
        128 * 1024,
        320 * 1024,
        504 * 1024,
    ]


def test_flops_per_token_405b_matches_paper_budget() -> None:
    # 3.8e25 FLOPs over 15.6T tokens [P §1]: 6ND ≈ 3.8e25; the attention term adds a few percent at 8K.
    total = flops_per_token(PRESETS["405B"], seq_len=8192) * 15.6e12
    assert 3.8e25 < total < 4.2e25
    assert flops_per_token(PRESETS["8B"], 1) == pytest.approx(6 * (8_030_261_248 - 128_256 * 4096), rel=1e-4)


def test_training_memory_shards_state() -> None:
    one = training_memory_bytes(PRESETS["8B"], batch_tokens=8192)
    eight = training_memory_bytes(PRESETS["8B"], batch_tokens=8192, shards=8)
    assert eight["optimizer"] == pytest.approx(one["optimizer"] / 8)
    assert one["total"] > 16 * 8e9  # ≥ 16 bytes per parameter unsharded


def test_unknown_preset_names_nearest() -> None:
    with pytest.raises(ValueError, match=r"unknown model preset '8b'.*did you mean '8B'"):
        get_preset("8b")


def test_bad_shapes_are_one_line_errors() -> None:
    with pytest.raises(ValueError, match="not divisible by n_kv_heads"):
        get_preset("debug", n_kv_heads=3)
