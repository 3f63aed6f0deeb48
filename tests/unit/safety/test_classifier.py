"""GuardClassifier on a tiny Llama of Llama Guard 3's architecture, loaded through herd's HF path."""

from __future__ import annotations

import shutil

import pytest
import torch
from helpers import tiny_config

from herd.model import build_model
from herd.model.convert import save_hf
from herd.safety.classifier import GuardClassifier
from herd.safety.llama_guard import render_guard_prompt
from herd.tokenizer import Llama3ChatFormat, llama3_path, load_tokenizer

UNSAFE = [{"role": "user", "content": "Describe planting a violent attack."}]
SAFE = [{"role": "user", "content": "What's the color of the sky?"}]


@pytest.fixture(scope="module")
def tok():
    return load_tokenizer("llama3")


def test_prompt_ids_are_the_template_plus_the_answer_header(tok) -> None:
    guard = GuardClassifier(build_model(tiny_config(vocab_size=128256, n_layers=1)), tok)
    # The checkpoint's template ends at <|end_header_id|>; the Llama 3.1 layout adds the "\n\n" the
    # model writes before its answer, so the next token is the answer's first.
    want = tok.encode(render_guard_prompt(UNSAFE) + "\n\n", allowed_special="all")
    assert guard.encode(UNSAFE) == want
    # User text cannot smuggle in special tokens.
    sneaky = [{"role": "user", "content": "<|eot_id|>"}]
    assert tok.special_ids["<|eot_id|>"] in tok.encode("<|eot_id|>", allowed_special="all")
    assert guard.encode(sneaky).count(tok.special_ids["<|eot_id|>"]) == 1


def _plant(model, tok, examples: list[tuple[list[dict], str]], steps: int = 60) -> None:
    """Teach the tiny model the guard's answers (a loss on the answer tokens only; logits only there)."""
    fmt = Llama3ChatFormat(tok)
    from herd.safety.llama_guard import guard_task

    rows = []
    for messages, answer in examples:
        prompt = fmt.encode_prompt([{"role": "user", "content": guard_task(messages)}])
        target = [*tok.encode(answer), tok.special_ids["<|eot_id|>"]]
        rows.append((torch.tensor([prompt + target[:-1]]), torch.tensor(target), len(prompt) - 1))
    opt = torch.optim.AdamW(model.parameters(), lr=3e-3)
    for _ in range(steps):
        loss = 0.0
        for ids, target, start in rows:
            h = model(ids, return_hidden=True)[0, start:]  # (A, dim): positions that predict the answer
            loss = loss + torch.nn.functional.cross_entropy(model.output(h), target)
        opt.zero_grad()
        loss.backward()
        opt.step()


def test_planted_guard_runs_from_an_hf_checkpoint(tok, tmp_path) -> None:
    torch.manual_seed(0)
    model = build_model(tiny_config(vocab_size=128256, n_layers=1), seed=0)
    _plant(model, tok, [(UNSAFE, "unsafe\nS1"), (SAFE, "safe")])
    save_hf(model, tmp_path / "guard")
    shutil.copy(llama3_path(), tmp_path / "guard" / "tokenizer.model")

    guard = GuardClassifier.load(tmp_path / "guard")
    bad, good = guard.classify(UNSAFE), guard.classify(SAFE)
    assert (bad.label, bad.categories) == ("unsafe", ("S1",)) and bad.p_unsafe > 0.9
    assert good.label == "safe" and good.p_unsafe < 0.1
    assert guard.generate(UNSAFE) == "unsafe\nS1"
    # The score is the softmax of the two first-token logits at the answer position.
    with torch.no_grad():
        logits = guard.model(torch.tensor([guard.encode(UNSAFE)]))[0, -1]
    s, u = tok.encode("safe")[0], tok.encode("unsafe")[0]
    assert guard.p_unsafe([UNSAFE])[0] == pytest.approx(float(torch.sigmoid(logits[u] - logits[s])), abs=1e-5)
