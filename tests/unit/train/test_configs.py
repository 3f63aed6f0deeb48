"""Every shipped config loads into its dataclass tree (typos would be errors naming the nearest key)."""

from pathlib import Path

import pytest

from herd.core.config import ConfigError, load_config
from herd.train.config import PretrainConfig
from herd.train.schedules import PAPER_405B_LR, PAPER_405B_RAMP

CONFIGS = Path(__file__).parents[3] / "configs" / "pretrain"


@pytest.mark.parametrize("path", sorted(CONFIGS.glob("*.toml")), ids=lambda p: p.stem)
def test_pretrain_configs_load(path: Path) -> None:
    cfg = load_config(PretrainConfig, path)
    cfg.ramp_schedule(), cfg.lr_schedule()


def test_405b_config_is_the_paper_recipe() -> None:
    cfg = load_config(PretrainConfig, CONFIGS / "llama3-405b.toml")
    assert cfg.lr_schedule() == PAPER_405B_LR
    assert cfg.ramp_schedule() == PAPER_405B_RAMP
    assert len(cfg.long_context) == 6 and cfg.long_context[-1].seq_len == 131_072


def test_typo_names_the_nearest_key() -> None:
    with pytest.raises(ConfigError, match=r"unknown key 'optim.lrr' \(did you mean 'optim.lr'\?\)"):
        load_config(PretrainConfig, CONFIGS / "debug.toml", ["optim.lrr=1"])
