"""Issue 16: numeric settings out of range are one-line errors naming the key, not a crash later."""

from __future__ import annotations

import pytest

from herd.core.config import ConfigError, load_config
from herd.train.config import PretrainConfig


@pytest.mark.parametrize(
    ("override", "names"),
    [
        ("optim.lr=nan", "optim.lr: expected a finite float"),
        ("optim.lr=inf", "optim.lr: expected a finite float"),
        ("optim.lr=0", "optim: lr must be >= 1e-30"),
        ("optim.grad_clip=-1", "optim: grad_clip must be >= 0"),
        ("ramp.micro_batch_size=0", "ramp: micro_batch_size must be >= 1"),
        ("schedule.total_steps=0", "schedule: total_steps must be >= 1"),
    ],
)
def test_out_of_range_is_one_line_naming_the_key(override: str, names: str) -> None:
    with pytest.raises(ConfigError) as e:
        load_config(PretrainConfig, None, [override])
    assert names in str(e.value) and "\n" not in str(e.value)


def test_the_shipped_configs_are_in_range() -> None:
    for name in ("debug", "llama3-8b", "llama3-405b"):
        load_config(PretrainConfig, f"configs/pretrain/{name}.toml")
