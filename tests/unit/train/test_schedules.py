"""Schedules against the paper's numbers [P §3.4.1, §3.4.3]."""

import math

import pytest

from herd.train.schedules import PAPER_405B_LR, PAPER_405B_RAMP, LRSchedule, Ramp, RampStage, anneal_lr


def test_405b_lr_warmup_peak_and_floor() -> None:
    s = PAPER_405B_LR
    assert s(0) == pytest.approx(8e-5 / 8000)
    assert s(3999) == pytest.approx(4e-5)
    assert s(7999) == pytest.approx(8e-5)  # last warmup step reaches the peak
    assert s(8000) == pytest.approx(8e-5)  # cosine starts at the peak
    mid = 8000 + (1_200_000 - 8000) // 2
    assert s(mid) == pytest.approx(8e-7 + 0.5 * (8e-5 - 8e-7), rel=1e-6)  # halfway: mean of peak and floor
    assert s(1_200_000) == pytest.approx(8e-7)
    assert s(2_000_000) == pytest.approx(8e-7)  # stays at the floor


def test_cosine_shape() -> None:
    s = LRSchedule(peak=1.0, warmup_steps=0, total_steps=100, floor=0.0)
    for step in (0, 10, 25, 60, 99):
        assert s(step) == pytest.approx(0.5 * (1 + math.cos(math.pi * step / 100)))


def test_405b_ramp_switch_points() -> None:
    r = PAPER_405B_RAMP
    assert (r.at(0).batch_tokens, r.at(0).seq_len) == (4_194_304, 4096)  # 2^22: 1,024 sequences
    assert r.at(251_999_999).seq_len == 4096
    assert (r.at(252_000_000).batch_tokens, r.at(252_000_000).seq_len) == (8_388_608, 8192)
    assert r.at(2_869_999_999_999).batch_tokens == 8_388_608
    assert r.at(2_870_000_000_000).batch_tokens == 16_777_216  # Table 4: 16 seqs × DP128 × 8,192


def test_paper_step_count_close_to_the_cosine_horizon() -> None:
    # 252M / 4M + (2.87T - 252M) / 8M + (15.6T - 2.87T) / 16M ≈ 1.10M steps vs the 1.2M horizon [D].
    r, steps, tokens = PAPER_405B_RAMP, 0, 0
    for start, end in ((0, 252e6), (252e6, 2.87e12), (2.87e12, 15.6e12)):
        steps += (end - start) / r.at(int(start)).batch_tokens
        tokens = end
    assert tokens == 15.6e12 and 1.1e6 < steps < 1.2e6


def test_anneal_linear_to_zero() -> None:
    assert anneal_lr(2e-4, 0, 40_000_000) == 2e-4
    assert anneal_lr(2e-4, 10_000_000, 40_000_000) == pytest.approx(1.5e-4)
    assert anneal_lr(2e-4, 40_000_000, 40_000_000) == 0.0


def test_bad_ramps_fail_clearly() -> None:
    with pytest.raises(ValueError, match="multiple of seq_len"):
        Ramp((RampStage(0, 1000, 512),))
    with pytest.raises(ValueError, match="start at after_tokens = 0"):
        Ramp((RampStage(5, 1024, 512),))
