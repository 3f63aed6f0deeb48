"""Weights in and out, never through pickle: HF Llama directories ⇄ herd, Meta consolidated → herd,
GGUF → herd.

herd's own on-disk format IS the HF Llama format (config.json + model*.safetensors), so anything herd
saves loads in transformers, vLLM and llama.cpp's converter, and anything they save loads here.
RoPE: herd uses HF's half-split layout; Meta checkpoints and GGUF files hold Q/K rows for the
interleaved-pair layout, permuted here on load (`interleaved_to_half`).
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path

import numpy as np
import torch
from torch import Tensor

from herd.model.config import ModelConfig, RopeScaling
from herd.model.transformer import Transformer

# herd name pattern → HF name pattern; "{i}" is the layer index.
_HF_NAMES = {
    "tok_embeddings.weight": "model.embed_tokens.weight",
    "norm.weight": "model.norm.weight",
    "output.weight": "lm_head.weight",
    "layers.{i}.attention.wq.weight": "model.layers.{i}.self_attn.q_proj.weight",
    "layers.{i}.attention.wk.weight": "model.layers.{i}.self_attn.k_proj.weight",
    "layers.{i}.attention.wv.weight": "model.layers.{i}.self_attn.v_proj.weight",
    "layers.{i}.attention.wo.weight": "model.layers.{i}.self_attn.o_proj.weight",
    "layers.{i}.feed_forward.w1.weight": "model.layers.{i}.mlp.gate_proj.weight",
    "layers.{i}.feed_forward.w3.weight": "model.layers.{i}.mlp.up_proj.weight",
    "layers.{i}.feed_forward.w2.weight": "model.layers.{i}.mlp.down_proj.weight",
    "layers.{i}.attention_norm.weight": "model.layers.{i}.input_layernorm.weight",
    "layers.{i}.ffn_norm.weight": "model.layers.{i}.post_attention_layernorm.weight",
}
_GGUF_NAMES = {
    "tok_embeddings.weight": "token_embd.weight",
    "norm.weight": "output_norm.weight",
    "output.weight": "output.weight",
    "layers.{i}.attention.wq.weight": "blk.{i}.attn_q.weight",
    "layers.{i}.attention.wk.weight": "blk.{i}.attn_k.weight",
    "layers.{i}.attention.wv.weight": "blk.{i}.attn_v.weight",
    "layers.{i}.attention.wo.weight": "blk.{i}.attn_output.weight",
    "layers.{i}.feed_forward.w1.weight": "blk.{i}.ffn_gate.weight",
    "layers.{i}.feed_forward.w3.weight": "blk.{i}.ffn_up.weight",
    "layers.{i}.feed_forward.w2.weight": "blk.{i}.ffn_down.weight",
    "layers.{i}.attention_norm.weight": "blk.{i}.attn_norm.weight",
    "layers.{i}.ffn_norm.weight": "blk.{i}.ffn_norm.weight",
}
# Meta's names are herd's names (herd keeps the paper/reference naming).
_SAFETENSORS_INDEX = "model.safetensors.index.json"


def name_map(cfg: ModelConfig, patterns: Mapping[str, str]) -> dict[str, str]:
    """Every herd parameter name of this shape → its name in another format."""
    out: dict[str, str] = {}
    for herd_name, other in patterns.items():
        if herd_name == "output.weight" and cfg.tie_embeddings:
            continue
        if "{i}" in herd_name:
            for i in range(cfg.n_layers):
                out[herd_name.format(i=i)] = other.format(i=i)
        else:
            out[herd_name] = other
    return out


def interleaved_to_half(w: Tensor, n_heads: int) -> Tensor:
    """Q/K rows from the interleaved-pair RoPE layout (Meta, GGUF) to the half-split layout (HF, herd)."""
    rows, cols = w.shape
    return w.view(n_heads, rows // n_heads // 2, 2, cols).transpose(1, 2).reshape(rows, cols)


# ---------------------------------------------------------------------------------------------------
# Building a model from a state dict


def build_from_state_dict(
    cfg: ModelConfig, state: Mapping[str, Tensor], source: str, dtype: torch.dtype | None = None
) -> Transformer:
    """Allocate nothing twice: build on meta, check every tensor's name and shape, assign them."""
    with torch.device("meta"):
        model = Transformer(cfg)
    expected = {k: tuple(v.shape) for k, v in model.state_dict().items()}
    missing = sorted(set(expected) - set(state))
    extra = sorted(set(state) - set(expected))
    if missing:
        raise ValueError(f"{source}: missing tensor '{missing[0]}'" + _more(missing))
    if extra:
        raise ValueError(f"{source}: unexpected tensor '{extra[0]}'" + _more(extra))
    for name, shape in expected.items():
        if tuple(state[name].shape) != shape:
            got = tuple(state[name].shape)
            raise ValueError(f"{source}: tensor '{name}' has shape {got}, expected {shape}")
    tensors = {k: (v.to(dtype) if dtype is not None else v) for k, v in state.items()}
    model.load_state_dict(tensors, assign=True)
    model.init_buffers()
    return model


def _more(names: list[str]) -> str:
    return f" (and {len(names) - 1} more)" if len(names) > 1 else ""


# ---------------------------------------------------------------------------------------------------
# HF Llama directories


def config_from_hf(hf: Mapping[str, object], source: str = "config.json") -> ModelConfig:
    """ModelConfig from a HF LlamaConfig dict; reads both `rope_theta`/`rope_scaling` (transformers ≤ 4)
    and `rope_parameters` (transformers 5)."""
    try:
        dim, heads = int(hf["hidden_size"]), int(hf["num_attention_heads"])
        head_dim = int(hf.get("head_dim") or dim // heads)
        if head_dim * heads != dim:
            raise ValueError(f"{source}: head_dim {head_dim} × heads {heads} != hidden_size {dim}")
        rope = dict(hf.get("rope_parameters") or {})
        theta = float(rope.get("rope_theta", hf.get("rope_theta", 10_000.0)))
        scaling = dict(hf.get("rope_scaling") or {}) or (rope if rope.get("rope_type") == "llama3" else {})
        return ModelConfig(
            dim=dim,
            n_layers=int(hf["num_hidden_layers"]),
            n_heads=heads,
            n_kv_heads=int(hf.get("num_key_value_heads") or heads),
            vocab_size=int(hf["vocab_size"]),
            ffn_dim=int(hf["intermediate_size"]),
            norm_eps=float(hf.get("rms_norm_eps", 1e-5)),
            rope_theta=theta,
            rope_scaling=_rope_scaling_from_hf(scaling, source),
            max_seq_len=int(hf.get("max_position_embeddings", 8192)),
            tie_embeddings=bool(hf.get("tie_word_embeddings", False)),
        )
    except KeyError as e:
        raise ValueError(f"{source}: missing field {e.args[0]!r}") from None


def _rope_scaling_from_hf(scaling: Mapping[str, object], source: str) -> RopeScaling | None:
    kind = scaling.get("rope_type", scaling.get("type"))
    if not scaling or kind in (None, "default"):
        return None
    if kind != "llama3":
        raise ValueError(f"{source}: rope scaling type {kind!r} is not supported (only 'llama3')")
    return RopeScaling(
        factor=float(scaling["factor"]),
        low_freq_factor=float(scaling["low_freq_factor"]),
        high_freq_factor=float(scaling["high_freq_factor"]),
        original_max_seq_len=int(scaling["original_max_position_embeddings"]),
    )


def config_to_hf(cfg: ModelConfig, dtype: torch.dtype = torch.float32) -> dict[str, object]:
    rope: dict[str, object] = {"rope_type": "default", "rope_theta": cfg.rope_theta}
    if cfg.rope_scaling is not None:
        s = cfg.rope_scaling
        rope = {
            "rope_type": "llama3",
            "rope_theta": cfg.rope_theta,
            "factor": s.factor,
            "low_freq_factor": s.low_freq_factor,
            "high_freq_factor": s.high_freq_factor,
            "original_max_position_embeddings": s.original_max_seq_len,
        }
    return {
        "architectures": ["LlamaForCausalLM"],
        "model_type": "llama",
        "hidden_size": cfg.dim,
        "intermediate_size": cfg.hidden_dim,
        "num_hidden_layers": cfg.n_layers,
        "num_attention_heads": cfg.n_heads,
        "num_key_value_heads": cfg.n_kv_heads,
        "head_dim": cfg.head_dim,
        "vocab_size": cfg.vocab_size,
        "rms_norm_eps": cfg.norm_eps,
        "max_position_embeddings": cfg.max_seq_len,
        "tie_word_embeddings": cfg.tie_embeddings,
        "hidden_act": "silu",
        "attention_bias": False,
        "mlp_bias": False,
        # Both spellings, so transformers 4.x and 5.x read the same file.
        "rope_theta": cfg.rope_theta,
        "rope_scaling": None if cfg.rope_scaling is None else rope,
        "rope_parameters": rope,
        "torch_dtype": str(dtype).removeprefix("torch."),
    }


def load_hf(path: str | Path, dtype: torch.dtype | None = None) -> Transformer:
    """A HF Llama directory (config.json + model.safetensors or a sharded index) → herd Transformer."""
    path = Path(path)
    cfg = config_from_hf(_read_json(path / "config.json"), str(path / "config.json"))
    hf_state = _read_safetensors_dir(path)
    to_herd = {hf: herd for herd, hf in name_map(cfg, _HF_NAMES).items()}
    state = {to_herd.get(k, k): v for k, v in hf_state.items()}
    if cfg.tie_embeddings:
        state.pop("output.weight", None)  # some tied checkpoints still carry lm_head
        state.pop("lm_head.weight", None)
    return build_from_state_dict(cfg, state, str(path), dtype)


def save_hf(model: Transformer, path: str | Path, max_shard_bytes: int = 5 * 2**30) -> Path:
    """Write config.json and safetensors (sharded with an index above `max_shard_bytes`)."""
    from safetensors.torch import save_file

    path = Path(path)
    path.mkdir(parents=True, exist_ok=True)
    cfg = model.cfg
    names = name_map(cfg, _HF_NAMES)
    state = {names[k]: v.detach().contiguous().cpu() for k, v in model.state_dict().items()}
    dtype = next(iter(state.values())).dtype
    (path / "config.json").write_text(json.dumps(config_to_hf(cfg, dtype), indent=2) + "\n")
    shards = _shard(state, max_shard_bytes)
    if len(shards) == 1:
        save_file(shards[0], str(path / "model.safetensors"), metadata={"format": "pt"})
        return path
    weight_map = {}
    for i, shard in enumerate(shards):
        fname = f"model-{i + 1:05d}-of-{len(shards):05d}.safetensors"
        save_file(shard, str(path / fname), metadata={"format": "pt"})
        weight_map.update(dict.fromkeys(shard, fname))
    total = sum(t.numel() * t.element_size() for t in state.values())
    index = {"metadata": {"total_size": total}, "weight_map": weight_map}
    (path / _SAFETENSORS_INDEX).write_text(json.dumps(index, indent=2) + "\n")
    return path


def _shard(state: Mapping[str, Tensor], max_bytes: int) -> list[dict[str, Tensor]]:
    shards: list[dict[str, Tensor]] = [{}]
    size = 0
    for name, t in state.items():
        nbytes = t.numel() * t.element_size()
        if shards[-1] and size + nbytes > max_bytes:
            shards.append({})
            size = 0
        shards[-1][name] = t
        size += nbytes
    return shards


def _read_safetensors_dir(path: Path) -> dict[str, Tensor]:
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    index = path / _SAFETENSORS_INDEX
    if index.exists():
        files = sorted(set(_read_json(index).get("weight_map", {}).values()))
        if not files:
            raise ValueError(f"{index}: empty weight_map")
    elif (path / "model.safetensors").exists():
        files = ["model.safetensors"]
    else:
        raise FileNotFoundError(f"{path}: no model.safetensors or {_SAFETENSORS_INDEX}")
    state: dict[str, Tensor] = {}
    for name in files:
        f = path / name
        if not f.exists():
            raise FileNotFoundError(f"{f}: listed in the index but missing")
        try:
            state.update(load_file(str(f)))
        except (SafetensorError, OSError) as e:
            raise ValueError(f"{f}: not a readable safetensors file ({e})") from None
    return state


def _read_json(path: Path) -> dict:
    if not path.exists():
        raise FileNotFoundError(f"{path}: not found")
    try:
        return json.loads(path.read_text())
    except json.JSONDecodeError as e:
        raise ValueError(f"{path}: invalid JSON at line {e.lineno} ({e.msg})") from None


# ---------------------------------------------------------------------------------------------------
# Meta consolidated checkpoints (params.json + consolidated.NN.pth)

# How Meta's model-parallel shards split each tensor (fairscale layers in the reference model):
# column-parallel outputs and the vocab-parallel embedding split dim 0, row-parallel inputs dim 1.
_META_SPLIT_DIM = {
    "wq": 0,
    "wk": 0,
    "wv": 0,
    "w1": 0,
    "w3": 0,
    "output": 0,
    "tok_embeddings": 0,
    "wo": 1,
    "w2": 1,
}


def config_from_meta(params: Mapping[str, object], source: str = "params.json") -> ModelConfig:
    try:
        return ModelConfig(
            dim=int(params["dim"]),
            n_layers=int(params["n_layers"]),
            n_heads=int(params["n_heads"]),
            n_kv_heads=int(params.get("n_kv_heads") or params["n_heads"]),
            vocab_size=int(params["vocab_size"]),
            ffn_dim_multiplier=params.get("ffn_dim_multiplier"),  # type: ignore[arg-type]
            multiple_of=int(params.get("multiple_of", 256)),
            norm_eps=float(params.get("norm_eps", 1e-5)),
            rope_theta=float(params.get("rope_theta", 500_000.0)),
            rope_scaling=RopeScaling(factor=float(params.get("rope_scaling_factor", 8.0)))
            if params.get("use_scaled_rope")
            else None,
        )
    except KeyError as e:
        raise ValueError(f"{source}: missing field {e.args[0]!r}") from None


def load_meta(path: str | Path, dtype: torch.dtype | None = None) -> Transformer:
    """Meta's consolidated format → herd: merge model-parallel shards, permute Q/K to half-split."""
    path = Path(path)
    cfg = config_from_meta(_read_json(path / "params.json"), str(path / "params.json"))
    files = sorted(path.glob("consolidated.*.pth"))
    if not files:
        raise FileNotFoundError(f"{path}: no consolidated.*.pth files")
    shards = [_torch_load_safe(f) for f in files]
    state = {name: _merge_meta(name, [s[name] for s in shards]) for name in shards[0] if name != "rope.freqs"}
    for name, t in state.items():
        if name.endswith("attention.wq.weight"):
            state[name] = interleaved_to_half(t, cfg.n_heads)
        elif name.endswith("attention.wk.weight"):
            state[name] = interleaved_to_half(t, cfg.n_kv_heads)
    return build_from_state_dict(cfg, state, str(path), dtype)


def _merge_meta(name: str, parts: list[Tensor]) -> Tensor:
    if len(parts) == 1 or parts[0].dim() == 1:
        return parts[0]
    kind = name.split(".")[-2]
    return torch.cat(parts, dim=_META_SPLIT_DIM.get(kind, 0))


def _torch_load_safe(path: Path) -> dict[str, Tensor]:
    try:
        return torch.load(path, map_location="cpu", weights_only=True, mmap=True)
    except Exception as e:  # torch raises several types for corrupt or pickle-bearing files
        raise ValueError(f"{path}: cannot load with weights_only=True ({type(e).__name__})") from None


# ---------------------------------------------------------------------------------------------------
# GGUF (llama.cpp)


def config_from_gguf(fields: Mapping[str, object], source: str) -> ModelConfig:
    arch = fields.get("general.architecture")
    if arch != "llama":
        raise ValueError(f"{source}: general.architecture is {arch!r}, herd loads 'llama' GGUF files")

    def get(key: str, default: object = None) -> object:
        value = fields.get(f"llama.{key}", default)
        if value is None:
            raise ValueError(f"{source}: missing GGUF field 'llama.{key}'")
        return value

    vocab = fields.get("llama.vocab_size") or len(fields.get("tokenizer.ggml.tokens") or [])
    return ModelConfig(
        dim=int(get("embedding_length")),
        n_layers=int(get("block_count")),
        n_heads=int(get("attention.head_count")),
        n_kv_heads=int(get("attention.head_count_kv", get("attention.head_count"))),
        vocab_size=int(vocab),
        ffn_dim=int(get("feed_forward_length")),
        norm_eps=float(get("attention.layer_norm_rms_epsilon", 1e-5)),
        rope_theta=float(get("rope.freq_base", 10_000.0)),
        rope_scaling=None,
        max_seq_len=int(get("context_length", 8192)),
        tie_embeddings=False,  # decided by the presence of output.weight in load_gguf
    )


def gguf_fields(reader: object) -> dict[str, object]:
    """GGUF key/value metadata as plain Python values."""
    out = {}
    for key, field in reader.fields.items():  # type: ignore[attr-defined]
        try:
            out[key] = field.contents()
        except Exception:  # a field type the reader cannot decode is irrelevant to loading
            continue
    return out


def load_gguf(path: str | Path, dtype: torch.dtype | None = torch.float32, quantized: bool = False) -> Transformer:
    """A llama.cpp GGUF file → herd: dequantize every tensor, undo llama.cpp's Q/K permutation.

    `quantized`: the block linears keep the file's precision (herd.model.quant: Q4_0/Q4_1 as int4, Q8_0 as
    per-row int8) and a Q8_0 tied embedding's output projection becomes per-row int8; for generation."""
    from gguf import GGUFReader
    from gguf.quants import dequantize

    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"{path}: not found")
    try:
        reader = GGUFReader(str(path))
    except Exception as e:  # the reader raises ValueError/struct errors/IndexError on bad files
        raise ValueError(f"{path}: not a readable GGUF file ({type(e).__name__}: {e})") from None
    fields = gguf_fields(reader)
    cfg = config_from_gguf(fields, str(path))
    names = {t.name for t in reader.tensors}
    tied = "output.weight" not in names
    cfg = ModelConfig(**{**cfg.__dict__, "tie_embeddings": tied, "rope_scaling": _gguf_rope(reader, cfg, path)})
    to_herd = {g: h for h, g in name_map(cfg, _GGUF_NAMES).items()}
    state: dict[str, Tensor] = {}
    for t in reader.tensors:
        if t.name == "rope_freqs.weight":
            continue
        shape = tuple(int(d) for d in reversed(t.shape))  # GGUF lists dims innermost first
        w = torch.from_numpy(dequantize(t.data, t.tensor_type).reshape(shape).copy())
        name = to_herd.get(t.name, t.name)
        if name.endswith("attention.wq.weight"):
            w = interleaved_to_half(w, cfg.n_heads)
        elif name.endswith("attention.wk.weight"):
            w = interleaved_to_half(w, cfg.n_kv_heads)
        state[name] = w
    model = build_from_state_dict(cfg, state, str(path), dtype)
    return quantize_from_gguf(model, reader, to_herd) if quantized else model


# llama.cpp block layouts [ggml-common.h]: 32 weights per block along the row; fp16 scale d first.
_BLOCK = 32


def gguf_blocks(data: np.ndarray, kind: str) -> tuple[Tensor, Tensor, Tensor | None]:
    """Raw Q4_0 / Q4_1 / Q8_0 rows (N, bytes) → (codes (N, K), scale d (N, K/32), min m (N, K/32) or None).

    Q4_x packs element j of a block in the low nibble of byte j and element j + 16 in its high nibble;
    Q4_0 means w = (q − 8)·d, Q4_1 w = q·d + m, Q8_0 w = q·d with int8 q."""
    head = {"Q4_0": 2, "Q4_1": 4, "Q8_0": 2}[kind]
    body = _BLOCK // 2 if kind != "Q8_0" else _BLOCK
    rows = data.shape[0]
    blocks = data.reshape(rows, -1, head + body)
    d = torch.from_numpy(blocks[..., :2].copy().view(np.float16)[..., 0].astype(np.float32))
    m = (
        torch.from_numpy(blocks[..., 2:4].copy().view(np.float16)[..., 0].astype(np.float32))
        if kind == "Q4_1"
        else None
    )
    qs = blocks[..., head:]
    if kind == "Q8_0":
        codes = torch.from_numpy(qs.copy().view(np.int8).astype(np.int16))
    else:
        codes = torch.from_numpy(np.concatenate([qs & 0x0F, qs >> 4], axis=-1).astype(np.int16))
    return codes.reshape(rows, -1), d, m


def quantize_from_gguf(model: Transformer, reader: object, to_herd: Mapping[str, str]) -> Transformer:
    """Swap the block linears of a loaded GGUF model for weight-only int4/int8 layers built from the file's
    own blocks (herd.model.quant); other tensors keep the loaded precision."""
    from herd.model.quant import Int4Linear, Int8Linear

    cfg = model.cfg
    for t in reader.tensors:  # type: ignore[attr-defined]
        name, kind = to_herd.get(t.name, t.name), t.tensor_type.name
        if not name.startswith("layers.") or kind not in ("Q4_0", "Q4_1", "Q8_0"):
            continue
        codes, d, m = gguf_blocks(t.data, kind)
        heads = cfg.n_heads if name.endswith("wq.weight") else cfg.n_kv_heads if name.endswith("wk.weight") else 0
        if heads:  # the same row permutation load_gguf applies to the dequantized Q/K
            codes, d, m = (interleaved_to_half(x, heads) if x is not None else None for x in (codes, d, m))
        if kind == "Q8_0":
            layer = Int8Linear(codes, d, _BLOCK)
        else:
            zero = torch.zeros_like(d) if m is None else m + 8 * d
            layer = Int4Linear(codes, d, zero, _BLOCK)
        parent, attr = name.removesuffix(".weight").rsplit(".", 1)
        setattr(model.get_submodule(parent), attr, layer)
    embd = next(t for t in reader.tensors if t.name == "token_embd.weight")  # type: ignore[attr-defined]
    if cfg.tie_embeddings and embd.tensor_type.name == "Q8_0":  # the output projection reads the same blocks
        codes, d, _ = gguf_blocks(embd.data, "Q8_0")
        model.output = Int8Linear(codes, d, _BLOCK)
    return model


def _gguf_rope(reader: object, cfg: ModelConfig, path: Path) -> RopeScaling | None:
    """llama.cpp stores 3.1 scaling as per-pair divisors (`rope_freqs.weight`); match them to a RopeScaling."""
    from herd.model.layers import rope_inv_freq

    t = next((t for t in reader.tensors if t.name == "rope_freqs.weight"), None)  # type: ignore[attr-defined]
    if t is None:
        return None
    divisors = torch.from_numpy(t.data.astype("float32").copy())
    base = rope_inv_freq(cfg.head_dim, cfg.rope_theta, None)
    for factor in (8.0, 16.0, 32.0):
        candidate = RopeScaling(factor=factor)
        scaled = rope_inv_freq(cfg.head_dim, cfg.rope_theta, candidate)
        if torch.allclose(base / scaled, divisors, rtol=1e-3):
            return candidate
    raise ValueError(f"{path}: rope_freqs.weight does not match Llama 3.1 scaling with factor 8, 16 or 32")


# ---------------------------------------------------------------------------------------------------
# One entry point


def detect_format(path: Path) -> str:
    if path.is_file() and path.suffix == ".gguf":
        return "gguf"
    if path.is_dir() and (path / "params.json").exists():
        return "meta"
    if path.is_dir() and (path / "config.json").exists():
        return "hf"
    raise ValueError(f"{path}: not a GGUF file, a HF Llama directory (config.json) or a Meta directory (params.json)")


def load_checkpoint(path: str | Path, dtype: torch.dtype | None = None, quantized: bool = False) -> Transformer:
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"{path}: not found")
    fmt = detect_format(path)
    if fmt == "gguf":
        return load_gguf(path, dtype=dtype, quantized=quantized)
    return {"meta": load_meta, "hf": load_hf}[fmt](path, dtype=dtype)
