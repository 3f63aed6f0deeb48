"""Vision model shapes and named presets [P §7.1, §7.2].

The image encoder is the paper's ViT-H/14 with the Llama 3.2 Vision additions: features tapped from
intermediate layers, a second "global" stack of gated self-attention layers, and tiles with aspect-ratio
embeddings. The adapter inserts gated cross-attention blocks into a frozen herd Llama.

Sizes: ViT-H/14 is 32 layers of width 1280, 16 heads, MLP 5120, 14-px patches, features from layers
4, 8, 16, 24 and 31 (1-based) plus the final layer, 8 gated layers on top: 40 blocks and a 7,680-dim
feature per patch [P §7.1]. 11B/90B are the released Llama 3.2 Vision shapes (transformers'
MllamaConfig defaults and the 90B release): 8B/70B text stacks with a cross-attention block before every
4th self-attention layer [P §7.1 "after every fourth"; the release counts from layer 3].
"""

from __future__ import annotations

import difflib
from dataclasses import dataclass, field, replace

from herd.model.config import ModelConfig, get_preset


@dataclass(frozen=True)
class EncoderConfig:
    dim: int = 1280
    n_layers: int = 32
    n_global_layers: int = 8  # gated self-attention layers added after the tapped stack [P §7.1]
    n_heads: int = 16
    ffn_dim: int = 5120
    image_size: int = 560  # one tile's side in pixels
    patch_size: int = 14
    max_num_tiles: int = 4  # up to 4 tiles per image [P §7.4]
    taps: tuple[int, ...] = (3, 7, 15, 23, 30)  # 0-based: the outputs of layers 4, 8, 16, 24, 31 [P §7.1]
    norm_eps: float = 1e-5
    in_channels: int = 3

    def __post_init__(self) -> None:
        if self.dim % self.n_heads:
            raise ValueError(f"vision encoder: dim {self.dim} is not divisible by n_heads {self.n_heads}")
        if self.image_size % self.patch_size:
            raise ValueError(f"vision encoder: image_size {self.image_size} is not a multiple of {self.patch_size}")
        bad = [t for t in self.taps if not 0 <= t < self.n_layers]
        if bad:
            raise ValueError(f"vision encoder: tap {bad[0]} is outside layers 0..{self.n_layers - 1}")

    @property
    def n_patches(self) -> int:
        """Tokens per tile: the patch grid plus one class token."""
        return (self.image_size // self.patch_size) ** 2 + 1

    @property
    def output_dim(self) -> int:
        """Final features concatenated with every tapped layer's (7,680 for ViT-H/14)."""
        return self.dim * (1 + len(self.taps))

    @property
    def aspect_ratios(self) -> list[tuple[int, int]]:
        """Tile layouts (rows, cols) with rows·cols ≤ max_num_tiles, in Mllama's order; id = index + 1."""
        n = self.max_num_tiles
        return [(r, c) for r in range(1, n + 1) for c in range(1, n + 1) if r * c <= n]


@dataclass(frozen=True)
class VisionConfig:
    encoder: EncoderConfig = field(default_factory=EncoderConfig)
    text: ModelConfig = field(default_factory=ModelConfig)
    # Self-attention layer indices a cross-attention block runs BEFORE (herd's text layer numbering).
    cross_layers: tuple[int, ...] = (3, 7, 11, 15, 19, 23, 27, 31)
    n_extra_tokens: int = 8  # learnable embeddings after the text vocabulary; the first is <|image|>

    def __post_init__(self) -> None:
        bad = [k for k in self.cross_layers if not 0 <= k < self.text.n_layers]
        if bad:
            raise ValueError(f"vision: cross layer {bad[0]} is outside text layers 0..{self.text.n_layers - 1}")
        if sorted(set(self.cross_layers)) != list(self.cross_layers):
            raise ValueError(f"vision: cross_layers {self.cross_layers} must be increasing and distinct")

    @property
    def image_token_id(self) -> int:
        """<|image|> sits right after the text vocabulary (128256 in Llama 3.2 Vision)."""
        return self.text.vocab_size


def every_fourth(n_layers: int, offset: int = 3, every: int = 4) -> tuple[int, ...]:
    """Cross-attention positions: before self-attention layers offset, offset+every, ... [P §7.1]."""
    return tuple(range(offset, n_layers, every))


ENCODER_PRESETS: dict[str, EncoderConfig] = {
    # A few seconds per step on one CPU core: 64-px tiles of 8-px patches (65 tokens per tile).
    "tiny": EncoderConfig(
        dim=64, n_layers=4, n_global_layers=2, n_heads=4, ffn_dim=256, image_size=64, patch_size=8, taps=(1, 3)
    ),
    # The paper's pre-training resolution: 224² images as 16×16 patches of 14 px [P §7.1].
    "ViT-H/14": EncoderConfig(image_size=224),
    # The released Llama 3.2 Vision encoder: the same ViT-H/14 at 560-px tiles.
    "ViT-H/14-560": EncoderConfig(image_size=560),
}

_TEXT_11B = get_preset("8B")  # Llama 3.1 8B: RoPE θ 500,000 with the 3.1 scaling (factor 8)
_TEXT_90B = get_preset("70B")

VISION_PRESETS: dict[str, VisionConfig] = {
    "tiny": VisionConfig(
        encoder=ENCODER_PRESETS["tiny"], text=get_preset("debug"), cross_layers=(1,), n_extra_tokens=8
    ),
    "11B": VisionConfig(
        encoder=ENCODER_PRESETS["ViT-H/14-560"], text=_TEXT_11B, cross_layers=every_fourth(_TEXT_11B.n_layers)
    ),
    "90B": VisionConfig(
        encoder=ENCODER_PRESETS["ViT-H/14-560"], text=_TEXT_90B, cross_layers=every_fourth(_TEXT_90B.n_layers)
    ),
}


def get_vision_preset(name: str, **overrides: object) -> VisionConfig:
    """A vision preset by name; an unknown name names the nearest one."""
    if name not in VISION_PRESETS:
        near = difflib.get_close_matches(name, VISION_PRESETS, n=1)
        hint = f" (did you mean '{near[0]}'?)" if near else ""
        raise ValueError(f"unknown vision preset '{name}'{hint}; presets: {', '.join(VISION_PRESETS)}")
    cfg = VISION_PRESETS[name]
    return replace(cfg, **overrides) if overrides else cfg
