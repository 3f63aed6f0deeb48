"""Meta consolidated and GGUF → herd, and one-line errors for bad checkpoints."""

import json
import sys
import types

import numpy as np
import pytest
import torch
from helpers import tiny_config

from herd.model import build_model, load_model
from herd.model.convert import interleaved_to_half, load_gguf, load_hf, load_meta, save_hf
from herd.model.layers import apply_rope, rope_cos_sin, rope_inv_freq


def half_to_interleaved(w: torch.Tensor, n_heads: int) -> torch.Tensor:
    """llama.cpp's `permute` in convert_hf_to_gguf.py (HF → GGUF/Meta layout)."""
    return w.reshape(n_heads, 2, w.shape[0] // n_heads // 2, w.shape[1]).swapaxes(1, 2).reshape(w.shape)


def meta_reference_rope():
    """Meta's own RoPE code from llama_models (its module imports fairscale only for parallel layers)."""
    for name in ("fairscale", "fairscale.nn", "fairscale.nn.model_parallel"):
        sys.modules.setdefault(name, types.ModuleType(name))
    init = sys.modules.setdefault(
        "fairscale.nn.model_parallel.initialize", types.ModuleType("fairscale.nn.model_parallel.initialize")
    )
    layers = sys.modules.setdefault(
        "fairscale.nn.model_parallel.layers", types.ModuleType("fairscale.nn.model_parallel.layers")
    )
    sys.modules["fairscale.nn.model_parallel"].initialize = init
    for cls in ("ColumnParallelLinear", "RowParallelLinear", "VocabParallelEmbedding", "ParallelEmbedding"):
        setattr(layers, cls, object)
    from llama_models.llama3 import model as meta_model

    return meta_model


def test_interleaved_permutation_and_31_scaling_match_meta_reference() -> None:
    meta = meta_reference_rope()
    head_dim, n_heads, T = 128, 4, 300
    freqs_cis = meta.precompute_freqs_cis(head_dim, T, theta=500_000.0, use_scaled=True)
    ours = rope_inv_freq(head_dim, 500_000.0, tiny_config().rope_scaling.__class__())  # factor 8, L=8192
    assert torch.allclose(freqs_cis[1].angle(), ours.float(), rtol=1e-6, atol=0)
    x = torch.randn(1, T, 2 * n_heads * head_dim)
    wq_meta = torch.randn(n_heads * head_dim, x.shape[-1])
    q_meta = (x @ wq_meta.T).view(1, T, n_heads, head_dim)
    q_meta, _ = meta.apply_rotary_emb(q_meta, q_meta, freqs_cis)  # interleaved-pair layout
    wq_half = interleaved_to_half(wq_meta, n_heads)
    q_half = (x @ wq_half.T).view(1, T, n_heads, head_dim).transpose(1, 2)
    cos, sin = rope_cos_sin(ours, torch.arange(T))
    q_half = apply_rope(q_half, cos, sin).transpose(1, 2)
    # Same rotated vectors, rows in the other layout: permute Meta's rows and compare.
    back = interleaved_to_half(q_meta.reshape(T * 1, -1).T.contiguous(), n_heads).T.reshape_as(q_half)
    assert torch.allclose(back, q_half, atol=1e-4, rtol=1e-4)


def write_meta_checkpoint(model, path, shards: int = 2) -> None:
    """Meta's consolidated layout: interleaved Q/K, tensors split across model-parallel ranks."""
    cfg = model.cfg
    path.mkdir()
    split = {"wq": 0, "wk": 0, "wv": 0, "w1": 0, "w3": 0, "output": 0, "tok_embeddings": 0, "wo": 1, "w2": 1}
    parts = [{} for _ in range(shards)]
    for name, t in model.state_dict().items():
        if name.endswith("wq.weight"):
            t = half_to_interleaved(t, cfg.n_heads)
        elif name.endswith("wk.weight"):
            t = half_to_interleaved(t, cfg.n_kv_heads)
        pieces = [t] * shards if t.dim() == 1 else t.chunk(shards, dim=split[name.split(".")[-2]])
        for rank, piece in enumerate(pieces):
            parts[rank][name] = piece.clone()
    for rank, part in enumerate(parts):
        torch.save(part, path / f"consolidated.{rank:02d}.pth")
    params = dict(
        dim=cfg.dim,
        n_layers=cfg.n_layers,
        n_heads=cfg.n_heads,
        n_kv_heads=cfg.n_kv_heads,
        vocab_size=cfg.vocab_size,
        ffn_dim_multiplier=1.3,
        multiple_of=32,
        norm_eps=cfg.norm_eps,
        rope_theta=cfg.rope_theta,
        use_scaled_rope=True,
    )
    (path / "params.json").write_text(json.dumps(params))


def test_meta_consolidated_two_shards(tmp_path) -> None:
    # ffn rule with multiplier 1.3, multiple_of 32 at dim 64: int(1.3 * 170) = 221 → 224.
    cfg = tiny_config(ffn_dim=224)
    model = build_model(cfg, seed=11)
    write_meta_checkpoint(model, tmp_path / "meta")
    loaded = load_meta(tmp_path / "meta")
    assert loaded.cfg.hidden_dim == 224 and loaded.cfg.rope_scaling.factor == 8.0
    for name, t in model.state_dict().items():
        assert torch.equal(loaded.state_dict()[name], t), name


def write_gguf(model, path) -> None:
    import gguf

    cfg = model.cfg
    w = gguf.GGUFWriter(str(path), "llama")
    w.add_block_count(cfg.n_layers)
    w.add_context_length(cfg.max_seq_len)
    w.add_embedding_length(cfg.dim)
    w.add_feed_forward_length(cfg.hidden_dim)
    w.add_head_count(cfg.n_heads)
    w.add_head_count_kv(cfg.n_kv_heads)
    w.add_rope_freq_base(cfg.rope_theta)
    w.add_layer_norm_rms_eps(cfg.norm_eps)
    w.add_vocab_size(cfg.vocab_size)
    w.add_tokenizer_model("gpt2")
    tokens = [bytes([i]).decode("latin-1") for i in range(256)] + [f"<t{i}>" for i in range(cfg.vocab_size - 256)]
    w.add_token_list(tokens)
    w.add_token_types([1] * cfg.vocab_size)
    w.add_token_merges([])
    names = {
        "tok_embeddings": "token_embd",
        "norm": "output_norm",
        "output": "output",
        "attention.wq": "attn_q",
        "attention.wk": "attn_k",
        "attention.wv": "attn_v",
        "attention.wo": "attn_output",
        "feed_forward.w1": "ffn_gate",
        "feed_forward.w3": "ffn_up",
        "feed_forward.w2": "ffn_down",
        "attention_norm": "attn_norm",
        "ffn_norm": "ffn_norm",
    }
    for name, t in model.state_dict().items():
        parts = name.removesuffix(".weight").split(".")
        if parts[0] == "layers":
            gname = f"blk.{parts[1]}.{names['.'.join(parts[2:])]}.weight"
        else:
            gname = f"{names[parts[0]]}.weight"
        if name.endswith("wq.weight"):
            t = half_to_interleaved(t, cfg.n_heads)
        elif name.endswith("wk.weight"):
            t = half_to_interleaved(t, cfg.n_kv_heads)
        w.add_tensor(gname, t.numpy().astype(np.float32))
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()


@pytest.mark.parametrize("tied", [False, True])
def test_gguf_matches_original_and_transformers_gguf_loader(tmp_path, tied: bool) -> None:
    cfg = tiny_config(scaled=False, tied=tied)
    model = build_model(cfg, seed=12).eval()
    write_gguf(model, tmp_path / "m.gguf")
    loaded = load_gguf(tmp_path / "m.gguf").eval()
    assert loaded.cfg.tie_embeddings == tied
    for name, t in model.state_dict().items():
        assert torch.equal(loaded.state_dict()[name], t), name
    transformers = pytest.importorskip("transformers")
    pytest.importorskip("accelerate")
    hf = transformers.AutoModelForCausalLM.from_pretrained(tmp_path, gguf_file="m.gguf").eval()
    tokens = torch.randint(0, cfg.vocab_size, (1, 50))
    with torch.no_grad():
        assert (hf(tokens).logits - loaded(tokens)).abs().max() <= 1e-5


# ---------------------------------------------------------------------------------------------------
# Bad input → one line naming the tensor or file


@pytest.fixture
def hf_dir(tmp_path):
    save_hf(build_model(tiny_config(), seed=0), tmp_path / "m")
    return tmp_path / "m"


def _rewrite(hf_dir, edit) -> None:
    from safetensors.torch import load_file, save_file

    state = load_file(str(hf_dir / "model.safetensors"))
    edit(state)
    save_file(state, str(hf_dir / "model.safetensors"))


def _one_line(exc: pytest.ExceptionInfo) -> str:
    msg = str(exc.value)
    assert "\n" not in msg
    return msg


def test_missing_tensor_is_named(hf_dir) -> None:
    _rewrite(hf_dir, lambda s: s.pop("model.layers.1.mlp.up_proj.weight"))
    with pytest.raises(ValueError) as e:
        load_hf(hf_dir)
    assert "missing tensor 'layers.1.feed_forward.w3.weight'" in _one_line(e)


def test_extra_tensor_is_named(hf_dir) -> None:
    _rewrite(hf_dir, lambda s: s.__setitem__("model.layers.0.self_attn.q_proj.bias", torch.zeros(64)))
    with pytest.raises(ValueError) as e:
        load_hf(hf_dir)
    assert "unexpected tensor 'model.layers.0.self_attn.q_proj.bias'" in _one_line(e)


def test_wrong_shape_is_named(hf_dir) -> None:
    _rewrite(hf_dir, lambda s: s.__setitem__("model.norm.weight", torch.ones(65)))
    with pytest.raises(ValueError) as e:
        load_hf(hf_dir)
    assert "tensor 'norm.weight' has shape (65,), expected (64,)" in _one_line(e)


def test_corrupt_safetensors_names_file(hf_dir) -> None:
    (hf_dir / "model.safetensors").write_bytes(b"\x10\x00\x00\x00\x00\x00\x00\x00{not json")
    with pytest.raises(ValueError) as e:
        load_hf(hf_dir)
    assert "model.safetensors: not a readable safetensors file" in _one_line(e)


def test_corrupt_config_names_file_and_line(hf_dir) -> None:
    (hf_dir / "config.json").write_text('{\n"hidden_size": 64,\n oops\n}')
    with pytest.raises(ValueError) as e:
        load_hf(hf_dir)
    assert "config.json: invalid JSON at line 3" in _one_line(e)


def test_corrupt_gguf_names_file(tmp_path) -> None:
    (tmp_path / "bad.gguf").write_bytes(b"GGUF" + b"\x00" * 20)
    with pytest.raises(ValueError) as e:
        load_gguf(tmp_path / "bad.gguf")
    assert "bad.gguf: not a readable GGUF file" in _one_line(e)


def test_pickle_payload_is_refused(tmp_path) -> None:
    class Evil:
        def __reduce__(self):
            return (print, ("pwned",))

    d = tmp_path / "meta"
    d.mkdir()
    torch.save({"x": Evil()}, d / "consolidated.00.pth")
    (d / "params.json").write_text(json.dumps(dict(dim=64, n_layers=1, n_heads=4, vocab_size=10)))
    with pytest.raises(ValueError) as e:
        load_meta(d)
    assert "consolidated.00.pth: cannot load with weights_only=True" in _one_line(e)


def test_unknown_path_or_preset(tmp_path) -> None:
    with pytest.raises(ValueError, match="did you mean '70B'"):
        load_model("70b")
    with pytest.raises(FileNotFoundError, match="not found"):
        load_model(tmp_path / "nope")
    with pytest.raises(ValueError, match="not a GGUF file, a HF Llama directory"):
        load_model(tmp_path)
