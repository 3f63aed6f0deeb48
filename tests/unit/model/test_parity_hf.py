"""herd vs transformers' LlamaForCausalLM: the reference implementation nobody here wrote."""

import json

import pytest
import torch
from helpers import tiny_config

from herd.model import build_model
from herd.model.convert import load_hf, save_hf

transformers = pytest.importorskip("transformers")


@pytest.mark.parametrize("scaled", [False, True], ids=["rope", "rope31"])
@pytest.mark.parametrize("tied", [False, True], ids=["untied", "tied"])
def test_logits_match_transformers(tmp_path, scaled: bool, tied: bool) -> None:
    cfg = tiny_config(scaled=scaled, tied=tied)
    model = build_model(cfg, seed=3)
    save_hf(model, tmp_path)
    hf = transformers.LlamaForCausalLM.from_pretrained(tmp_path, attn_implementation="eager").eval()
    # 300 positions: past the 3.1 scaling's original context (64 here), so blended/divided pairs matter.
    tokens = torch.randint(0, cfg.vocab_size, (2, 300), generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        ours, theirs = model(tokens), hf(tokens).logits
    # fp32 matmuls in a different order differ by ~1e-6 at these magnitudes; 1e-5 is the bound.
    assert (ours - theirs).abs().max().item() <= 1e-5


def test_round_trip_is_bit_identical(tmp_path) -> None:
    model = build_model(tiny_config(), seed=5)
    save_hf(model, tmp_path / "a")
    hf = transformers.LlamaForCausalLM.from_pretrained(tmp_path / "a")
    hf.save_pretrained(tmp_path / "b")  # herd → HF → (HF writes) → herd
    back = load_hf(tmp_path / "b")
    for name, tensor in model.state_dict().items():
        assert torch.equal(tensor, back.state_dict()[name]), name
    assert back.cfg == model.cfg


def test_sharded_checkpoint_round_trip(tmp_path) -> None:
    model = build_model(tiny_config(), seed=6)
    save_hf(model, tmp_path, max_shard_bytes=50_000)
    index = json.loads((tmp_path / "model.safetensors.index.json").read_text())
    assert len(set(index["weight_map"].values())) > 1
    back = load_hf(tmp_path)
    assert all(torch.equal(v, back.state_dict()[k]) for k, v in model.state_dict().items())
    hf = transformers.LlamaForCausalLM.from_pretrained(tmp_path).eval()
    tokens = torch.randint(0, 300, (1, 20))
    with torch.no_grad():
        assert (hf(tokens).logits - model(tokens)).abs().max() <= 1e-5


def test_reads_old_and_new_rope_config_keys(tmp_path) -> None:
    model = build_model(tiny_config(scaled=True), seed=7)
    save_hf(model, tmp_path)
    cfg = json.loads((tmp_path / "config.json").read_text())
    old = {k: v for k, v in cfg.items() if k != "rope_parameters"}  # transformers 4.x spelling
    new = {k: v for k, v in cfg.items() if k not in ("rope_theta", "rope_scaling")}  # 5.x spelling
    for variant in (old, new):
        (tmp_path / "config.json").write_text(json.dumps(variant))
        assert load_hf(tmp_path).cfg == model.cfg
