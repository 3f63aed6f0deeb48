"""The recipe embeds each stage's config: base TOML ← recipe keys ← dotted overrides, key by key."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest

from herd.core.config import ConfigError, load_config, to_dict
from herd.recipe.config import load_recipe
from herd.train.config import PretrainConfig

ROOT = Path(__file__).parents[3]
TINY = ROOT / "configs" / "recipe" / "tiny.toml"


@pytest.fixture(autouse=True)
def _in_repo(monkeypatch) -> None:
    monkeypatch.chdir(ROOT)  # the recipe names its stages' base TOMLs relative to the repository


def _diff(a, b, prefix: str = "") -> set[str]:
    """Dotted keys whose values differ between two plain dicts."""
    keys = set(a) | set(b)
    out: set[str] = set()
    for k in keys:
        x, y = a.get(k), b.get(k)
        if isinstance(x, dict) and isinstance(y, dict):
            out |= _diff(x, y, f"{prefix}{k}.")
        elif x != y:
            out.add(f"{prefix}{k}")
    return out


def test_readme_override_changes_only_the_learning_rate() -> None:
    # The README's example: `herd recipe configs/recipe/tiny.toml pretrain.optim.lr=1e-3 --stage pretrain`.
    before, after = load_recipe(TINY), load_recipe(TINY, ["pretrain.optim.lr=1e-3"])
    assert after.pretrain.optim.lr == 1e-3 and before.pretrain.optim.lr == 3e-3
    assert _diff(to_dict(before), to_dict(after)) == {"pretrain.optim.lr"}


def test_one_key_of_a_stage_keeps_every_other_key_of_its_config() -> None:
    cfg = load_recipe(TINY, ["pretrain.schedule.warmup_steps=7"])
    s = cfg.pretrain
    # From the recipe's own [pretrain.*] tables, untouched by the override of a sibling key:
    assert (s.model.dim, s.model.n_layers, s.model.ffn_dim) == (64, 2, 192)
    assert (s.schedule.warmup_steps, s.schedule.total_steps, s.schedule.tokens) == (7, 436, 3_276_800)
    assert (s.anneal.tokens, s.anneal.checkpoints, s.data.chunk_tokens) == (327_680, 8, 512)
    # From the stage's own TOML (configs/pretrain/debug.toml), under the recipe's keys:
    base = load_config(PretrainConfig, ROOT / "configs" / "pretrain" / "debug.toml")
    assert s.optim == base.optim and s.ramp.micro_batch_size == base.ramp.micro_batch_size
    # Wired under run_dir:
    assert s.run_dir == "runs/recipe/tiny/pretrain" and s.data.shards == "runs/recipe/tiny/tokens"


def test_a_table_override_merges_into_the_stage_config() -> None:
    cfg = load_recipe(TINY, ["posttrain.sft={epochs=1}"])
    assert cfg.posttrain.sft.epochs == 1 and cfg.posttrain.sft.lr == 2e-3  # lr from the recipe's table is kept
    assert cfg.posttrain.rounds == 2


@pytest.mark.parametrize(
    ("override", "hint"),
    [
        ("pretrain.optim.lrr=1e-3", "pretrain.optim.lr"),
        ("pretrain.shedule.tokens=5", "pretrain.schedule"),
        ("curate.dedup.line_max_cont=3", "curate.dedup.line_max_count"),
        ("posttrain.sft.epoch=2", "posttrain.sft.epochs"),
    ],
)
def test_typo_in_a_nested_stage_key_names_the_nearest_full_path(override: str, hint: str) -> None:
    with pytest.raises(ConfigError, match=f"did you mean '{hint}'") as e:
        load_recipe(TINY, [override])
    assert "\n" not in str(e.value)


def test_typo_in_the_recipe_file_names_the_full_path(tmp_path: Path) -> None:
    bad = tmp_path / "r.toml"
    bad.write_text('[pretrain]\nconfig = "configs/pretrain/debug.toml"\n[pretrain.optim]\nlrr = 1e-3\n')
    with pytest.raises(ConfigError, match=r"unknown key 'pretrain.optim.lrr' \(did you mean 'pretrain.optim.lr'"):
        load_recipe(bad)


def test_a_wired_path_set_by_hand_is_an_error_not_silently_replaced() -> None:
    with pytest.raises(ConfigError, match=r"pretrain\.data\.shards is wired by the recipe"):
        load_recipe(TINY, ["pretrain.data.shards=elsewhere"])


def test_the_base_toml_can_be_swapped_by_override() -> None:
    cfg = load_recipe(TINY, ["pretrain.config=configs/pretrain/llama3-8b.toml"])
    assert cfg.pretrain.model.dim == 64  # the recipe's keys still win over the new base file
    assert cfg.pretrain.optim.lr == load_config(PretrainConfig, "configs/pretrain/llama3-8b.toml").optim.lr


def test_every_stage_config_is_the_stage_dataclass() -> None:
    cfg = load_recipe(TINY)
    for name in ("curate", "tokenizer", "tokenize", "pretrain", "posttrain", "eval"):
        assert dataclasses.is_dataclass(getattr(cfg, name))
    assert cfg.tokenize.out == "runs/recipe/tiny/tokens" and cfg.eval.contamination.shards == cfg.tokenize.out
