"""Every post-training loss against numbers worked out by hand, and DPO/reward losses against TRL."""

from __future__ import annotations

import math
from collections import defaultdict
from types import SimpleNamespace

import pytest
import torch

from herd.posttrain.losses import bt_loss, dpo_loss, ranked_bt_loss, sequence_logps, sft_loss


def _softplus(x: float) -> float:
    return math.log1p(math.exp(-x))  # −log σ(x)


def test_sft_loss_by_hand():
    # Position 0: uniform over 2 ids → −log ½. Position 1: logits (ln 3, 0), target 1 → p = ¼ → −log ¼.
    logits = torch.tensor([[[0.0, 0.0], [math.log(3), 0.0]]])
    targets = torch.tensor([[0, 1]])
    assert sft_loss(logits, targets, torch.tensor([[1, 0]])).item() == pytest.approx(math.log(2), abs=1e-6)
    both = (math.log(2) + math.log(4)) / 2
    assert sft_loss(logits, targets, torch.tensor([[1, 1]])).item() == pytest.approx(both, abs=1e-6)
    assert sequence_logps(logits, targets, torch.tensor([[1, 1]])).item() == pytest.approx(-math.log(8), abs=1e-6)


def test_bt_loss_by_hand_has_no_margin():
    loss = bt_loss(torch.tensor([1.0, 3.0]), torch.tensor([0.0, 3.0]))
    assert loss.item() == pytest.approx((_softplus(1.0) + math.log(2)) / 2, abs=1e-6)


def test_ranked_bt_loss_by_hand():
    # Row 0 ranks 3 responses (edited > chosen > rejected): pairs with gaps 1, 2, 1. Row 1 has only 2.
    rewards = torch.tensor([[2.0, 1.0, 0.0], [1.0, 0.0, 99.0]])
    loss = ranked_bt_loss(rewards, torch.tensor([3, 2]))
    expected = (2 * _softplus(1.0) + _softplus(2.0) + _softplus(1.0)) / 4
    assert loss.item() == pytest.approx(expected, abs=1e-6)


def test_ranked_bt_equals_separate_pairs():
    g = torch.Generator().manual_seed(0)
    r = torch.randn(5, 3, generator=g)
    ours = ranked_bt_loss(r, torch.full((5,), 3))
    c = torch.cat([r[:, 0], r[:, 0], r[:, 1]])
    rj = torch.cat([r[:, 1], r[:, 2], r[:, 2]])
    assert ours.item() == pytest.approx(bt_loss(c, rj).item(), abs=1e-6)


def test_dpo_loss_by_hand():
    # margin = (−1 − −2) − (−3 − −2) = 2; β = 0.1 → −log σ(0.2); NLL = 1 nat / 4 chosen tokens × 0.2.
    pi_c, pi_r, ref_c, ref_r = (torch.tensor([v]) for v in (-1.0, -3.0, -2.0, -2.0))
    loss, r_c, r_r = dpo_loss(pi_c, pi_r, ref_c, ref_r, beta=0.1)
    assert loss.item() == pytest.approx(_softplus(0.2), abs=1e-6)
    assert (r_c.item(), r_r.item()) == pytest.approx((0.1, -0.1))
    loss, _, _ = dpo_loss(pi_c, pi_r, ref_c, ref_r, 0.1, nll_coef=0.2, chosen_tokens=torch.tensor([4]))
    assert loss.item() == pytest.approx(_softplus(0.2) + 0.2 * 0.25, abs=1e-6)


# ---------------------------------------------------------------- TRL parity (test-only dependency)


def _trl_dpo_loss(chosen_tok: torch.Tensor, rejected_tok: torch.Tensor, mask_c, mask_r, ref_c, ref_r, beta, rpo):
    """TRL 1.x DPOTrainer._compute_loss on per-token log-probs we hand it through a stand-in model."""
    dpo = pytest.importorskip("trl.trainer.dpo_trainer")
    per_token = torch.cat([chosen_tok, rejected_tok])  # (2B, T-1), aligned with completion_mask[:, 1:]
    mask = torch.cat([mask_c, mask_r])  # (2B, T)
    out = SimpleNamespace(
        log_probs=per_token * mask[:, 1:],
        entropy=torch.zeros_like(per_token),
        mean_logits=torch.zeros_like(per_token),
        is_top1=torch.zeros_like(per_token, dtype=torch.bool),
    )
    acc = SimpleNamespace(device="cpu", gather=lambda x: x, gather_for_metrics=lambda x: x)
    self = SimpleNamespace(
        model=SimpleNamespace(training=False),
        accelerator=acc,
        aux_loss_enabled=False,
        ld_alpha=None,
        precompute_ref_logps=True,
        f_divergence_type="reverse_kl",
        loss_types=["sigmoid", "sft"],
        loss_weights=[1.0, rpo],
        beta=beta,
        use_weighting=False,
        _tp_size=1,
        _total_train_tokens=0,
        _metrics={"train": defaultdict(list), "eval": defaultdict(list)},
    )
    inputs = {
        "input_ids": torch.zeros_like(mask),
        "attention_mask": torch.ones_like(mask),
        "completion_mask": mask,
        "ref_chosen_logps": ref_c,
        "ref_rejected_logps": ref_r,
    }
    return dpo.DPOTrainer._compute_loss(self, lambda **kw: out, inputs, return_outputs=False)


def test_dpo_loss_equals_trl():
    g = torch.Generator().manual_seed(1)
    B, T = 3, 6
    tok_c, tok_r = -torch.rand(B, T - 1, generator=g) * 3, -torch.rand(B, T - 1, generator=g) * 3
    mask_c = torch.tensor([[0, 0, 1, 1, 1, 0], [0, 1, 1, 0, 0, 0], [0, 0, 0, 1, 1, 1]])
    mask_r = torch.tensor([[0, 0, 1, 1, 0, 0], [0, 1, 1, 1, 1, 0], [0, 0, 0, 0, 1, 1]])
    ref_c, ref_r = -torch.rand(B, generator=g) * 5, -torch.rand(B, generator=g) * 5
    trl_loss = _trl_dpo_loss(tok_c, tok_r, mask_c, mask_r, ref_c, ref_r, beta=0.1, rpo=0.2)
    pi_c, pi_r = (tok_c * mask_c[:, 1:]).sum(-1), (tok_r * mask_r[:, 1:]).sum(-1)
    ours, _, _ = dpo_loss(pi_c, pi_r, ref_c, ref_r, 0.1, nll_coef=0.2, chosen_tokens=mask_c[:, 1:].sum(-1))
    assert ours.item() == pytest.approx(float(trl_loss), abs=1e-6)


def test_reward_loss_equals_trl():
    rt = pytest.importorskip("trl.trainer.reward_trainer")
    g = torch.Generator().manual_seed(2)
    chosen, rejected = torch.randn(4, generator=g), torch.randn(4, generator=g)
    logits = torch.cat([chosen, rejected])[:, None]  # TRL stacks [chosen; rejected] as one batch
    acc = SimpleNamespace(gather=lambda x: x, gather_for_metrics=lambda x: x)
    self = SimpleNamespace(
        model=SimpleNamespace(training=False),
        accelerator=acc,
        args=SimpleNamespace(center_rewards_coefficient=None),
        _metrics={"train": defaultdict(list), "eval": defaultdict(list)},
        _total_train_tokens=0,
        _tp_size=1,
    )
    inputs = {"input_ids": torch.zeros(8, 3, dtype=torch.long), "attention_mask": torch.ones(8, 3)}
    trl_loss = rt.RewardTrainer.compute_loss(self, lambda **kw: SimpleNamespace(logits=logits), inputs)
    assert bt_loss(chosen, rejected).item() == pytest.approx(float(trl_loss), abs=1e-6)
