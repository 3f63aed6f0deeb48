"""Small builders shared by tests (importable: `tests/` is on pytest's pythonpath)."""

from __future__ import annotations

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
