"""A tiny Llama 3 tokenizer (byte-level, 256 ranks + the 256 specials) and a tiny model over it."""

from __future__ import annotations

import pytest
import torch

from herd.model import build_model, get_preset
from herd.tokenizer.bpe import Tokenizer
from herd.tokenizer.chat import Llama3ChatFormat


@pytest.fixture(scope="session")
def tok() -> Tokenizer:
    return Tokenizer({bytes([i]): i for i in range(256)})  # every byte is a token: no training needed


@pytest.fixture(scope="session")
def chat(tok):
    return Llama3ChatFormat(tok)


@pytest.fixture
def model(tok):
    torch.manual_seed(0)
    cfg = get_preset("debug", vocab_size=tok.vocab_size, dim=32, n_heads=4, n_kv_heads=2, ffn_dim=64)
    return build_model(cfg, seed=0).eval()
