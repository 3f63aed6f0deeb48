"""The memory-saving SFT path computes the same loss and the same update as the plain one: logits only at
trained positions (chunked), gradients accumulated over micro-batches, blocks checkpointed and unwrapped."""

from __future__ import annotations

import copy
import random

import pytest
import torch

from herd.model.layers import document_causal
from herd.posttrain import sft as sft_mod
from herd.posttrain.losses import sft_loss
from herd.posttrain.sft import Example, SFTConfig, batch_loss, make_batches, micro_batches, summed_nll, train_sft


def _examples(vocab: int, n: int = 12, seed: int = 0) -> list[Example]:
    rng = random.Random(seed)
    out = []
    for _ in range(n):
        length = rng.randint(6, 30)
        cut = rng.randint(2, length - 2)
        out.append(Example([rng.randrange(vocab) for _ in range(length)], [0] * cut + [1] * (length - cut)))
    return out


def _full_logits_loss(model, batch):
    layout = () if batch.doc_ids is None else document_causal(batch.doc_ids, model.cfg.attn_impl)
    return sft_loss(model(batch.inputs, *layout), batch.targets, batch.loss_mask)


def _grads(model):
    return {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}


@pytest.mark.parametrize("pack", [True, False])
def test_batch_loss_equals_sft_loss_on_full_logits(model, tok, monkeypatch, pack):
    monkeypatch.setattr(sft_mod, "LOSS_CHUNK", 7)  # several chunks, the last one short
    batch = make_batches(_examples(tok.vocab_size), SFTConfig(batch_rows=4, seq_len=64, pack=pack), 0, 0)[0]
    assert int(batch.loss_mask.sum()) > 7
    want_model, got_model = copy.deepcopy(model).train(), copy.deepcopy(model).train()
    want = _full_logits_loss(want_model, batch)
    got = batch_loss(got_model, batch)
    want.backward()
    got.backward()
    assert got.item() == pytest.approx(want.item(), rel=1e-6)
    gw, gg = _grads(want_model), _grads(got_model)
    assert gw.keys() == gg.keys()
    for name in gw:
        torch.testing.assert_close(gg[name], gw[name], rtol=1e-5, atol=1e-7, msg=name)


def test_micro_batches_accumulate_to_the_whole_batch_gradient(model, tok):
    batch = make_batches(_examples(tok.vocab_size, n=16), SFTConfig(batch_rows=4, seq_len=40), 0, 0)[0]
    parts = micro_batches(batch, 1)
    assert len(parts) == len(batch.inputs) and all(p.inputs.shape[1] <= batch.inputs.shape[1] for p in parts)
    assert sum(int(p.loss_mask.sum()) for p in parts) == int(batch.loss_mask.sum())
    whole, split = copy.deepcopy(model).train(), copy.deepcopy(model).train()
    batch_loss(whole, batch).backward()
    n = int(batch.loss_mask.sum())
    for p in parts:
        (summed_nll(split, p) / n).backward()
    gw, gs = _grads(whole), _grads(split)
    for name in gw:
        torch.testing.assert_close(gs[name], gw[name], rtol=1e-5, atol=1e-7, msg=name)


def test_checkpointed_micro_batched_training_matches_plain_training(model, tok):
    examples = _examples(tok.vocab_size, n=16)
    plain, saving = copy.deepcopy(model), copy.deepcopy(model)
    base = SFTConfig(lr=1e-3, epochs=1, batch_rows=4, seq_len=40, max_steps=3)
    m1 = train_sft(plain, examples, base)
    lean = SFTConfig(**{**base.__dict__, "activation_checkpointing": True, "micro_rows": 1})
    m2 = train_sft(saving, examples, lean)
    assert m2["variants"][0]["first_loss"] == pytest.approx(m1["variants"][0]["first_loss"], rel=1e-5)
    # the blocks are plain modules again, so the saved state dict keeps the model's own names
    assert list(saving.state_dict()) == list(plain.state_dict())
    assert all(type(b) is type(p) for b, p in zip(saving.layers.values(), plain.layers.values(), strict=True))
    # AdamW moves a weight by about lr (1e-3) a step whatever the gradient's size, so float-rounding
    # differences in tiny gradients show up as ~1e-6; 1e-5 is 1% of one step (measured max: 1.5e-6).
    for (name, a), b in zip(plain.state_dict().items(), saving.state_dict().values(), strict=True):
        torch.testing.assert_close(b, a, rtol=0, atol=1e-5, msg=name)
