"""Reward model one-row form, DPO masking and cached reference, shared-prefill sampling, averaging."""

from __future__ import annotations

import copy
import random

import pytest
import torch

from herd.model import generate
from herd.posttrain.common import Variant, train_variants
from herd.posttrain.data import Preference
from herd.posttrain.dpo import DPOConfig, cache_reference, encode_pairs, logps, preference_metrics, train_dpo
from herd.posttrain.losses import ranked_bt_loss
from herd.posttrain.rejection import sample_k, sample_naive
from herd.posttrain.reward import (
    RewardModel,
    RMConfig,
    accuracy,
    encode_preference,
    one_row_batch,
    rewards_separate,
    train_rm,
)
from herd.train.averaging import average_state_dicts


def _prefs(n=6, three=True):
    out = []
    for i in range(n):
        prompt = [{"role": "user", "content": f"question {i}?"}]
        responses = ["edited answer", "good answer " * (i % 3 + 1), "bad"] if three and i % 2 else ["good", f"bad {i}"]
        out.append(Preference(prompt, responses))
    return out


def test_one_row_rewards_equal_separate_sequences(chat, model):
    rm = RewardModel(model)
    torch.nn.init.normal_(rm.head.weight)
    items = [encode_preference(chat, p, 256) for p in _prefs()]
    batch = one_row_batch(items, random.Random(0))  # shuffled order inside each row
    with torch.no_grad():
        one_row, separate = rm(batch), rewards_separate(rm, items)
    n = batch.n_valid
    valid = torch.arange(3)[None, :] < n[:, None]
    torch.testing.assert_close(one_row[valid], separate[valid], atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(ranked_bt_loss(one_row, n), ranked_bt_loss(separate, n), atol=1e-6, rtol=1e-6)


def test_rm_learns_held_out_preferences(chat, model):
    """A separable toy task: 'good' beats 'bad' for unseen questions."""
    prefs = [Preference([{"role": "user", "content": f"q{i}"}], ["good", "bad"]) for i in range(40)]
    items = [encode_preference(chat, p, 64) for p in prefs]
    rm = RewardModel(model)
    assert accuracy(rm, items[30:])["accuracy"] == 0.5  # zero head: every pair ties
    train_rm(rm, items[:30], RMConfig(lr=3e-3, epochs=3, batch_size=8))
    assert accuracy(rm, items[30:])["accuracy"] == 1.0


def test_dpo_mask_is_response_content_only(chat, tok):
    pair = encode_pairs(chat, [Preference([{"role": "user", "content": "hi"}], ["yes", "no"])], 256)[0]
    tokens, mask = pair.chosen
    assert [t for t, m in zip(tokens, mask) if m] == list(b"yes")  # no header, no <|eot_id|>
    assert tokens[-1] == tok.special_ids["<|eot_id|>"]


def test_dpo_reference_cached_and_training_raises_margin(chat, model):
    pairs = encode_pairs(chat, _prefs(8, three=False), 128)
    ref = copy.deepcopy(model)
    cache_reference(ref, pairs)
    c, r, _ = logps(ref, pairs)
    torch.testing.assert_close(torch.tensor([p.ref for p in pairs]), torch.stack([c, r], 1), atol=1e-5, rtol=1e-5)
    before = preference_metrics(model, pairs, 0.1)
    assert before["reward_margin"] == pytest.approx(0.0, abs=1e-5) and before["reward_accuracy"] == 0.5
    train_dpo(model, pairs, DPOConfig(lr=1e-3, epochs=4, batch_size=4))
    after = preference_metrics(model, pairs, 0.1)
    assert after["reward_margin"] > 0.1 and after["reward_accuracy"] > 0.5


def test_shared_prefill_equals_naive_generation(model):
    prompts = [[5, 6, 7, 8, 9], [10, 11], [12, 13, 14]]
    shared = sample_k(model, prompts, k=3, max_new_tokens=6, temperature=0.0)
    naive = sample_naive(model, prompts, k=3, max_new_tokens=6, temperature=0.0)
    assert shared == naive
    alone = [generate(model, [p], max_new_tokens=6)[0] for p in prompts]
    assert [s[0] for s in shared] == alone
    sampled = sample_k(model, prompts, k=4, max_new_tokens=6, temperature=1.0, seed=0)
    assert any(len({tuple(x) for x in s}) > 1 for s in sampled)  # K samples differ


def test_variant_average_is_the_average_of_runs(model):
    def train(m, v):
        with torch.no_grad():
            for p in m.parameters():
                p.add_(v.seed * v.lr_scale)
        return {}

    runs = []
    for v in (Variant(seed=1), Variant(seed=2, lr_scale=2.0, weight=3.0)):
        m = copy.deepcopy(model)
        train(m, v)
        runs.append(m.state_dict())
    expected = average_state_dicts(runs, [1.0, 3.0])
    merged, _ = train_variants(
        copy.deepcopy(model), [Variant(seed=1), Variant(seed=2, lr_scale=2.0, weight=3.0)], train
    )
    for k, v in merged.state_dict().items():
        torch.testing.assert_close(v, expected[k])


def test_steering_system_prompts_are_cycled_over_prompts(chat, model):
    """Rejection sampling's steering system prompts [P §4.2.2]: prompt i gets system prompt i mod S, a prompt
    with its own system message keeps it, and the kept dialog carries the system prompt it was sampled under."""
    from herd.posttrain.rejection import RSConfig, rejection_sample

    rows = [{"prompt": [{"role": "user", "content": f"q{i}"}], "source": "code"} for i in range(5)]
    rows.append({"prompt": [{"role": "system", "content": "own"}, {"role": "user", "content": "q5"}]})
    cfg = RSConfig(k=2, max_new_tokens=3, prompts_per_batch=4, system_prompts=["Be brief.", "Show working."])
    kept = rejection_sample(model, RewardModel(copy.deepcopy(model)), chat, rows, cfg)["kept"]
    systems = [d["messages"][0]["content"] for d in kept]
    assert systems == ["Be brief.", "Show working.", "Be brief.", "Show working.", "Be brief.", "own"]
    assert [d["messages"][1]["content"] for d in kept] == [f"q{i}" for i in range(6)]
    assert {d["category"] for d in kept[:5]} == {"code"} and kept[5]["category"] == "general"


def test_engine_sampler_matches_static_sampling_when_greedy(model):
    """Rejection sampling's default sampler (the paged engine) and the static batch give the same greedy
    samples for prompts of different lengths; a stop token ends a sample before it."""
    from herd.posttrain.rejection import sample_engine

    prompts = [[5, 9, 2, 7], [3, 1], [8, 8, 8, 8, 8, 8, 1]]
    static = sample_k(model, prompts, 3, max_new_tokens=6, temperature=0.0, stop_ids=[11])
    paged = sample_engine(model, prompts, 3, max_new_tokens=6, temperature=0.0, stop_ids=[11])
    assert paged == static and all(11 not in s for outs in paged for s in outs)
