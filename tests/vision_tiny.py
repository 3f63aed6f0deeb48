"""A tiny vision model on a random debug language model and a word-level tokenizer, for fast tests."""

from __future__ import annotations

import zlib
from dataclasses import replace

import torch

from herd.model.config import get_preset
from herd.vision.adapter import VisionLanguageModel
from herd.vision.config import ENCODER_PRESETS, VisionConfig


class WordTok:
    """Whitespace words → ids 8..511 by CRC32: deterministic, and " word" encodes to the word alone."""

    vocab_size = 512

    def encode(self, text: str) -> list[int]:
        return [8 + zlib.crc32(w.encode()) % 504 for w in text.split()]


def tiny_model(image_size: int = 32, seed: int = 0, layers: int = 4) -> VisionLanguageModel:
    text = get_preset("debug", n_layers=layers)
    enc = replace(ENCODER_PRESETS["tiny"], image_size=image_size, max_num_tiles=1)
    model = VisionLanguageModel(VisionConfig(encoder=enc, text=text, cross_layers=(1, 3)))
    model.text.init_weights(seed=seed)
    model.init_adapter(seed=seed + 1)
    model.freeze_text()
    torch.manual_seed(seed)
    return model
