"""Vision DPO with an EMA reference [P §7.5.4]: the EMA update by hand, DPO loss ln 2 at step 0 (policy =
reference), the reference shares the frozen text model, and training moves the policy's preference."""

from __future__ import annotations

import math

import pytest
import torch
from vision_tiny import WordTok, tiny_model

from herd.vision.dpo import VisionDPOConfig, dpo_step_loss, ema_update, reference_model, train_vision_dpo


def prefs_and_images(n: int = 6):
    images = {f"im{i}": torch.randn(1, 3, 32, 32, generator=torch.Generator().manual_seed(i)) for i in range(n)}
    colours = ["red", "green", "blue", "yellow"]
    prefs = [{"id": f"im{i}", "image": "", "question": "What colour is the circle?", "chosen": colours[i % 4],
              "rejected": colours[(i + 1) % 4]} for i in range(n)]  # fmt: skip
    return prefs, images


def test_ema_update_is_decay_times_ref_plus_rest_times_policy():
    policy = tiny_model()
    ref = reference_model(policy)
    assert ref.text is policy.text  # the frozen text model is shared, not copied
    name = "cross_layers.1.attention.wq.weight"
    r0 = dict(ref.named_parameters())[name].clone()
    with torch.no_grad():
        for p in policy.adapter_parameters():
            p.add_(torch.randn_like(p))
    p1 = dict(policy.named_parameters())[name].clone()
    ema_update(ref, policy, decay=0.75)
    torch.testing.assert_close(dict(ref.named_parameters())[name], 0.75 * r0 + 0.25 * p1, rtol=0, atol=1e-6)
    assert not any(p.requires_grad for n, p in ref.named_parameters() if not n.startswith("text."))
    ema_update(ref, policy, decay=0.0)  # decay 0: the reference becomes the policy
    for (n, a), (_, b) in zip(ref.named_parameters(), policy.named_parameters(), strict=True):
        assert torch.equal(a, b), n


def test_dpo_loss_is_ln2_at_step_0():
    policy = tiny_model()
    with torch.no_grad():  # open the gates so the image matters, then copy: policy = reference
        for block in policy.cross_layers.values():
            block.gate_attn.fill_(0.5)
            block.gate_ffwd.fill_(0.5)
    ref = reference_model(policy)
    prefs, images = prefs_and_images()
    loss, r_c, r_r = dpo_step_loss(policy, ref, WordTok(), images, prefs, VisionDPOConfig(nll_coef=0.0))
    assert loss.item() == pytest.approx(math.log(2), abs=1e-6)
    assert torch.equal(r_c, torch.zeros_like(r_c)) and torch.equal(r_r, torch.zeros_like(r_r))


def test_dpo_training_raises_the_chosen_margin():
    policy = tiny_model()
    prefs, images = prefs_and_images()
    cfg = VisionDPOConfig(steps=12, lr=3e-3, batch_size=6, nll_coef=0.0, ema_decay=0.9)
    hist = train_vision_dpo(policy, WordTok(), images, prefs, cfg)
    assert hist["loss"][0] == pytest.approx(math.log(2), abs=1e-5)
    assert sum(hist["margin"][-3:]) / 3 > 0.05 and hist["loss"][-1] < math.log(2) - 0.02
