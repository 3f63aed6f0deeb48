"""The share sweep's SFT mix and its VR–FRR plot."""

from __future__ import annotations

import pytest

from herd.safety.sweep import SweepConfig, mix, plot_tradeoff


def test_mix_keeps_the_total_and_the_share() -> None:
    safety, general = [f"s{i}" for i in range(10)], [f"g{i}" for i in range(100)]
    for share in (0.0, 0.25, 0.5, 1.0):
        got = mix(safety, general, share, 40, seed=0)
        assert len(got) == 40 and sum(x.startswith("s") for x in got) == round(share * 40)
    half = mix(safety, general, 0.5, 40, seed=0)  # 20 safety from 10: two full passes, no dialog thrice
    assert max(half.count(s) for s in safety) == 2 and mix(safety, general, 0.5, 40, seed=0) == half
    assert mix(safety, general, 0.5, 40, seed=1) != half


def test_shares_are_checked() -> None:
    with pytest.raises(ValueError, match="not in"):
        SweepConfig(shares=[0.2, 1.5])


def test_tradeoff_plot(tmp_path) -> None:
    points = [{"share": s, "seed": 0, "vr": 1 - s, "vr_ci95": 0.1, "frr": s / 2, "frr_ci95": 0.05} for s in (0, 0.5)]
    path = plot_tradeoff(points, tmp_path / "f.png")
    assert path.read_bytes()[:4] == b"\x89PNG" and path.stat().st_size > 5_000


def test_cli_subcommands_need_a_config_and_check_keys(tmp_path) -> None:
    import argparse

    from herd.cli.safety import safety_command
    from herd.core.config import ConfigError

    with pytest.raises(SystemExit, match="give a TOML config"):
        safety_command(argparse.Namespace(config="train-guard", overrides=[]))
    bad = tmp_path / "s.toml"
    bad.write_text("sharez = [0.1]\n")
    with pytest.raises(ConfigError, match="shares"):  # a typo names the nearest key
        safety_command(argparse.Namespace(config="sweep", overrides=[str(bad)]))
