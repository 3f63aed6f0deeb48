"""HF Mllama (Llama 3.2 Vision) checkpoints ⇄ herd's VisionLanguageModel, through safetensors only.

HF interleaves the cross-attention blocks into one text layer list (`cross_attention_layers` holds their
indices there); herd keeps the text model's own numbering and keys each block by the self-attention layer
it runs before. HF's `embed_tokens` has vocab + 8 rows: the first vocab rows are the text table, the
rest herd's `learnable_embedding`.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path

import torch
from torch import Tensor

from herd.model.convert import _HF_NAMES as _TEXT_NAMES
from herd.model.convert import _read_json, _read_safetensors_dir, config_from_hf, config_to_hf
from herd.vision.adapter import VisionLanguageModel
from herd.vision.config import EncoderConfig, VisionConfig

_V = "model.vision_model."
_ENCODER_NAMES = {
    "conv1.weight": "patch_embedding.weight",
    "class_embedding": "class_embedding",
    "gated_positional_embedding.embedding": "gated_positional_embedding.embedding",
    "gated_positional_embedding.tile_embedding.weight": "gated_positional_embedding.tile_embedding.weight",
    "gated_positional_embedding.gate": "gated_positional_embedding.gate",
    "pre_tile_pos_embed.embedding.weight": "pre_tile_positional_embedding.embedding.weight",
    "pre_tile_pos_embed.gate": "pre_tile_positional_embedding.gate",
    "post_tile_pos_embed.embedding.weight": "post_tile_positional_embedding.embedding.weight",
    "post_tile_pos_embed.gate": "post_tile_positional_embedding.gate",
    "ln_pre.weight": "layernorm_pre.weight",
    "ln_pre.bias": "layernorm_pre.bias",
    "ln_post.weight": "layernorm_post.weight",
    "ln_post.bias": "layernorm_post.bias",
}
_ENCODER_LAYER = {
    "attention.wq.weight": "self_attn.q_proj.weight",
    "attention.wk.weight": "self_attn.k_proj.weight",
    "attention.wv.weight": "self_attn.v_proj.weight",
    "attention.wo.weight": "self_attn.o_proj.weight",
    "feed_forward.c_fc.weight": "mlp.fc1.weight",
    "feed_forward.c_fc.bias": "mlp.fc1.bias",
    "feed_forward.c_proj.weight": "mlp.fc2.weight",
    "feed_forward.c_proj.bias": "mlp.fc2.bias",
    "attention_norm.weight": "input_layernorm.weight",
    "attention_norm.bias": "input_layernorm.bias",
    "ffn_norm.weight": "post_attention_layernorm.weight",
    "ffn_norm.bias": "post_attention_layernorm.bias",
}
_GATES = {"gate_attn": "gate_attn", "gate_ffn": "gate_ffn"}
_CROSS_BLOCK = {
    "attention.wq.weight": "cross_attn.q_proj.weight",
    "attention.wk.weight": "cross_attn.k_proj.weight",
    "attention.wv.weight": "cross_attn.v_proj.weight",
    "attention.wo.weight": "cross_attn.o_proj.weight",
    "attention.q_norm.weight": "cross_attn.q_norm.weight",
    "attention.k_norm.weight": "cross_attn.k_norm.weight",
    "attention_norm.weight": "input_layernorm.weight",
    "gate_attn": "cross_attn_attn_gate",
    "feed_forward.w1.weight": "mlp.gate_proj.weight",
    "feed_forward.w3.weight": "mlp.up_proj.weight",
    "feed_forward.w2.weight": "mlp.down_proj.weight",
    "ffn_norm.weight": "post_attention_layernorm.weight",
    "gate_ffwd": "cross_attn_mlp_gate",
}


def hf_layer_index(cfg: VisionConfig) -> tuple[dict[int, int], dict[int, int]]:
    """herd self-layer index → HF layer index, and herd cross key → HF layer index."""
    cross = sorted(cfg.cross_layers)
    self_map = {s: s + sum(k <= s for k in cross) for s in range(cfg.text.n_layers)}
    cross_map = {k: k + r for r, k in enumerate(cross)}
    return self_map, cross_map


def name_map(cfg: VisionConfig) -> dict[str, str]:
    """Every herd parameter name (except the split embedding) → its HF Mllama name."""
    out = {f"encoder.{h}": _V + f for h, f in _ENCODER_NAMES.items()}
    for stack, gated, n in (("transformer", False, cfg.encoder.n_layers),
                            ("global_transformer", True, cfg.encoder.n_global_layers)):  # fmt: skip
        names = {**_ENCODER_LAYER, **(_GATES if gated else {})}
        for i in range(n):
            out.update({f"encoder.{stack}.{i}.{h}": f"{_V}{stack}.layers.{i}.{f}" for h, f in names.items()})
    out["vision_projection.weight"] = "model.multi_modal_projector.weight"
    out["vision_projection.bias"] = "model.multi_modal_projector.bias"
    self_map, cross_map = hf_layer_index(cfg)
    for herd_name, hf in _TEXT_NAMES.items():
        if herd_name in ("tok_embeddings.weight",) or (herd_name == "output.weight" and cfg.text.tie_embeddings):
            continue
        hf = hf.replace("model.", "model.language_model.", 1) if hf.startswith("model.") else hf
        if "{i}" not in herd_name:
            out[f"text.{herd_name}"] = hf
            continue
        for s, j in self_map.items():
            out[f"text.{herd_name.format(i=s)}"] = hf.format(i=j)
    for k, j in cross_map.items():
        out.update({f"cross_layers.{k}.{h}": f"model.language_model.layers.{j}.{f}" for h, f in _CROSS_BLOCK.items()})
    return out


_EMBED = "model.language_model.embed_tokens.weight"
# Released checkpoints (and transformers' save_pretrained) store the pre-v5 layout; transformers ≥ 5 renames
# on load. herd reads both and writes the stored layout, so any transformers version reads herd's files.
_ON_DISK = (
    ("model.vision_model.", "vision_model."),
    ("model.language_model.", "language_model.model."),
    ("model.multi_modal_projector.", "multi_modal_projector."),
    ("lm_head.", "language_model.lm_head."),
)


def to_disk_names(state: Mapping[str, Tensor]) -> dict[str, Tensor]:
    return {_swap(k, _ON_DISK): v for k, v in state.items()}


def from_disk_names(state: Mapping[str, Tensor]) -> dict[str, Tensor]:
    return {_swap(k, [(b, a) for a, b in _ON_DISK]): v for k, v in state.items()}


def _swap(name: str, pairs) -> str:
    for old, new in pairs:
        if name.startswith(old):
            return new + name[len(old) :]
    return name


def to_hf_state(model: VisionLanguageModel) -> dict[str, Tensor]:
    names = name_map(model.cfg)
    state = {names[k]: v for k, v in model.state_dict().items() if k in names}
    state[_EMBED] = torch.cat([model.text.tok_embeddings.weight, model.learnable_embedding.weight])
    if model.cfg.text.tie_embeddings:
        state["lm_head.weight"] = model.text.tok_embeddings.weight
    return {k: v.detach().contiguous().cpu() for k, v in state.items()}


def from_hf_state(cfg: VisionConfig, hf: Mapping[str, Tensor], source: str) -> VisionLanguageModel:
    """Build on meta, check every name and shape, assign."""
    names = name_map(cfg)
    hf = from_disk_names(hf)
    missing = sorted(v for v in [*names.values(), _EMBED] if v not in hf)
    if missing:
        raise ValueError(
            f"{source}: missing tensor '{missing[0]}'" + (f" (and {len(missing) - 1} more)" * (len(missing) > 1))
        )
    extra = sorted(set(hf) - set(names.values()) - {_EMBED, "lm_head.weight"})
    if extra:
        raise ValueError(f"{source}: unexpected tensor '{extra[0]}'")
    state = {h: hf[f] for h, f in names.items()}
    V = cfg.text.vocab_size
    state["text.tok_embeddings.weight"], state["learnable_embedding.weight"] = hf[_EMBED][:V], hf[_EMBED][V:]
    with torch.device("meta"):
        model = VisionLanguageModel(cfg)
    for name, want in model.state_dict().items():
        if tuple(state[name].shape) != tuple(want.shape):
            raise ValueError(
                f"{source}: tensor '{name}' has shape {tuple(state[name].shape)}, expected {tuple(want.shape)}"
            )
    model.load_state_dict(state, assign=True)
    model.text.init_buffers()
    return model


# ---------------------------------------------------------------------------------------------------
# Configs


def config_to_hf_dict(cfg: VisionConfig) -> dict[str, object]:
    e, t = cfg.encoder, cfg.text
    _, cross_map = hf_layer_index(cfg)
    text = config_to_hf(t)
    text.update(
        model_type="mllama_text_model",
        num_hidden_layers=t.n_layers + len(cfg.cross_layers),
        cross_attention_layers=sorted(cross_map.values()),
        # Llama 3's <|finetune_right_pad_id|> where the vocabulary has it; none in a smaller vocabulary.
        pad_token_id=128004 if t.vocab_size > 128004 else None,
        bos_token_id=128000 if t.vocab_size > 128000 else 1,  # transformers requires an int
        eos_token_id=128001 if t.vocab_size > 128001 else 2,
    )
    for k in ("architectures", "torch_dtype", "attention_bias", "mlp_bias", "head_dim"):
        text.pop(k, None)
    vision = {
        "model_type": "mllama_vision_model",
        "hidden_size": e.dim,
        "num_hidden_layers": e.n_layers,
        "num_global_layers": e.n_global_layers,
        "attention_heads": e.n_heads,
        "intermediate_size": e.ffn_dim,
        "vision_output_dim": e.output_dim,
        "image_size": e.image_size,
        "patch_size": e.patch_size,
        "norm_eps": e.norm_eps,
        "max_num_tiles": e.max_num_tiles,
        "num_channels": e.in_channels,
        "intermediate_layers_indices": list(e.taps),
        "supported_aspect_ratios": [list(a) for a in e.aspect_ratios],
        "hidden_act": "gelu",
    }
    return {
        "architectures": ["MllamaForConditionalGeneration"],
        "model_type": "mllama",
        "image_token_index": cfg.image_token_id,
        "text_config": text,
        "vision_config": vision,
    }


def config_from_hf_dict(hf: Mapping[str, object], source: str = "config.json") -> VisionConfig:
    try:
        t, v = dict(hf["text_config"]), dict(hf["vision_config"])  # type: ignore[arg-type]
        hf_cross = sorted(int(i) for i in t["cross_attention_layers"])
        n_self = int(t["num_hidden_layers"]) - len(hf_cross)
        text = config_from_hf({**t, "num_hidden_layers": n_self}, source)
        cross = tuple(j - r for r, j in enumerate(hf_cross))  # HF index → self layers run before it
        if v.get("hidden_act", "gelu") != "gelu":
            raise ValueError(f"{source}: vision hidden_act {v['hidden_act']!r} is not supported (only 'gelu')")
        encoder = EncoderConfig(
            dim=int(v["hidden_size"]),
            n_layers=int(v["num_hidden_layers"]),
            n_global_layers=int(v["num_global_layers"]),
            n_heads=int(v.get("attention_heads") or v["num_attention_heads"]),
            ffn_dim=int(v["intermediate_size"]),
            image_size=int(v["image_size"]),
            patch_size=int(v["patch_size"]),
            max_num_tiles=int(v["max_num_tiles"]),
            taps=tuple(int(i) for i in v["intermediate_layers_indices"]),
            norm_eps=float(v.get("norm_eps", 1e-5)),
            in_channels=int(v.get("num_channels", 3)),
        )
    except KeyError as e:
        raise ValueError(f"{source}: missing field {e.args[0]!r}") from None
    ratios = v.get("supported_aspect_ratios")
    if ratios is not None and [tuple(r) for r in ratios] != encoder.aspect_ratios:
        raise ValueError(
            f"{source}: supported_aspect_ratios {ratios} differ from all layouts of ≤ {encoder.max_num_tiles} tiles"
        )
    if int(v.get("vision_output_dim", encoder.output_dim)) != encoder.output_dim:
        raise ValueError(
            f"{source}: vision_output_dim {v['vision_output_dim']} != hidden_size × (1 + taps) = {encoder.output_dim}"
        )
    image_token = int(hf.get("image_token_index", text.vocab_size))
    if image_token != text.vocab_size:
        raise ValueError(f"{source}: image_token_index {image_token} must be vocab_size {text.vocab_size}")
    return VisionConfig(encoder=encoder, text=text, cross_layers=cross)


# ---------------------------------------------------------------------------------------------------
# Directories


def save_hf_vision(model: VisionLanguageModel, path: str | Path) -> Path:
    """config.json + model.safetensors that MllamaForConditionalGeneration.from_pretrained reads."""
    from safetensors.torch import save_file

    path = Path(path)
    path.mkdir(parents=True, exist_ok=True)
    state = to_hf_state(model)
    (path / "config.json").write_text(json.dumps(config_to_hf_dict(model.cfg), indent=2) + "\n")
    save_file(to_disk_names(state), str(path / "model.safetensors"), metadata={"format": "pt"})
    return path


def load_hf_vision(path: str | Path, dtype: torch.dtype | None = None) -> VisionLanguageModel:
    path = Path(path)
    cfg = config_from_hf_dict(_read_json(path / "config.json"), str(path / "config.json"))
    model = from_hf_state(cfg, _read_safetensors_dir(path), str(path))
    return model.to(dtype) if dtype is not None else model
