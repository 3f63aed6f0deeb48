"""`herd recipe --dry-run` on the real-scale configs, and overrides given after a flag."""

from __future__ import annotations

import pytest

from herd.cli.main import main


@pytest.mark.parametrize(
    ("config", "layout"), [("llama3-405b", "TP8 CP1 PP16 DP128"), ("llama3-8b", "TP2 CP1 PP1 DP256")]
)
def test_dry_run_plans_real_scale_configs(config: str, layout: str, capsys) -> None:
    assert main(["recipe", f"configs/recipe/{config}.toml", "--dry-run"]) == 0
    out = capsys.readouterr().out
    assert f"main layout: {layout}" in out and "GPU-hours" in out


def test_override_after_a_flag_is_checked_and_names_the_nearest_key(capsys) -> None:
    code = main(["recipe", "configs/recipe/tiny.toml", "--dry-run", "pretrain.optim.lrr=1e-3"])
    assert code == 2
    assert "did you mean 'pretrain.optim.lr'" in capsys.readouterr().err


def test_dry_run_of_the_tiny_recipe_plans_its_own_tokenizer(capsys) -> None:
    assert main(["recipe", "configs/recipe/tiny.toml", "--dry-run"]) == 0
    out = capsys.readouterr().out
    assert "(0.62M parameters" in out and "4,096 ids" in out and "128,256" not in out
