"""The phase machine and the guard as plain functions of (state, config): no model, no data."""

import dataclasses

import pytest

from herd.core.config import load_config
from herd.data.loader import MixSchedule
from herd.model.config import ModelConfig, RopeScaling
from herd.train import guard, phases
from herd.train.config import PretrainConfig, tokenizer_file
from herd.train.phases import TrainState

LONG = (
    "long_context=[{seq_len=1024, tokens=4096, max_tokens=8192, rope_theta=1000000.0, loss_tolerance=0.1}, "
    "{seq_len=2048, tokens=4096, rope_scaling_factor=8.0}]"
)
RAMP = (
    "ramp.stages=[{after_tokens=0, batch_tokens=2048, seq_len=256}, "
    "{after_tokens=10000, batch_tokens=4096, seq_len=512}]"
)


def cfg(*extra: str) -> PretrainConfig:
    base = ["schedule.warmup_steps=10", "schedule.total_steps=100", "optim.lr=1e-3", "schedule.max_steps=50", RAMP]
    return load_config(PretrainConfig, None, [*base, LONG, "anneal.tokens=8000", "anneal.checkpoints=4", *extra])


def test_batch_shape_follows_the_ramp_then_the_long_stage() -> None:
    c = cfg()
    assert phases.batch_shape(TrainState(tokens=0), c).seq_len == 256
    assert phases.batch_shape(TrainState(tokens=10_000), c).batch_tokens == 4096
    long = TrainState(tokens=20_000, phase="long", long_stage=0, long_start_tokens=20_000)
    shape = phases.batch_shape(long, c)
    # The ramp's 4,096-token batch as whole 1,024-token sequences, starting where the stage started.
    assert (shape.seq_len, shape.batch_tokens, shape.after_tokens) == (1024, 4096, 20_000)


def test_learning_rate_warms_up_then_anneals_linearly_to_zero() -> None:
    c = cfg()
    assert phases.learning_rate(TrainState(step=0), c) == pytest.approx(1e-4)
    assert phases.learning_rate(TrainState(step=9), c) == pytest.approx(1e-3)
    anneal = TrainState(step=60, tokens=14_000, phase="anneal", anneal_start_tokens=10_000, anneal_start_lr=5e-4)
    assert phases.learning_rate(anneal, c) == pytest.approx(5e-4 * (1 - 4000 / 8000))


def test_transitions_main_long_long_anneal_done() -> None:
    c = cfg()
    s = TrainState(step=50, tokens=30_000)
    assert phases.main_done(s, c)
    s = phases.begin(s, c, 0, baseline=3.0)
    assert (s.phase, s.long_stage, s.long_start_tokens, s.long_baseline) == ("long", 0, 30_000, 3.0)
    s = dataclasses.replace(s, tokens=34_096, step=100)
    assert phases.gate_due(s, c)  # 4,096 tokens seen, on an eval step (eval.every = 50)
    s = phases.begin(s, c, 1, baseline=2.9)
    assert (s.phase, s.long_stage, s.long_start_tokens) == ("long", 1, 34_096)
    s = phases.begin(dataclasses.replace(s, tokens=40_000, step=60), c, 2)
    assert s.phase == "anneal" and s.anneal_start_tokens == 40_000
    assert s.anneal_start_lr == pytest.approx(c.lr_schedule()(60))
    assert not phases.anneal_done(dataclasses.replace(s, tokens=47_999), c)
    assert phases.anneal_done(dataclasses.replace(s, tokens=48_000), c)
    assert phases.begin(TrainState(), cfg("long_context=[]", "anneal.tokens=0"), 0).phase == "done"


def test_long_gate_waits_for_tokens_and_eval_steps_and_ends_at_the_cap() -> None:
    c = cfg("eval.every=10")
    s = TrainState(step=20, tokens=12_000, phase="long", long_stage=0, long_start_tokens=10_000, long_baseline=3.0)
    assert not phases.gate_due(s, c)  # 2,000 of 4,096 tokens
    s = dataclasses.replace(s, tokens=14_096, step=21)
    assert not phases.gate_due(s, c)  # not an eval step
    assert phases.gate_due(dataclasses.replace(s, step=30), c)
    assert phases.recovered(s, c, 3.3) and not phases.recovered(s, c, 3.31) and phases.recovered(s, c, None)
    assert not phases.gate_ends(s, c, passed=False) and phases.gate_ends(s, c, passed=True)
    capped = dataclasses.replace(s, tokens=18_192, step=31)  # max_tokens 8,192 seen: measured and ended anyway
    assert phases.gate_due(capped, c) and phases.gate_ends(capped, c, passed=False)
    ended = phases.end_long_stage(s, {"stage": 0})
    assert ended.long_results == [{"stage": 0}] and s.long_results == []


def test_rope_config_accumulates_stages_later_ones_win() -> None:
    c = cfg()
    base = ModelConfig(dim=64, n_layers=2, n_heads=4, n_kv_heads=2, vocab_size=512, max_seq_len=512)
    assert phases.rope_config(base, c, -1) == base
    first = phases.rope_config(base, c, 0)
    assert (first.rope_theta, first.max_seq_len, first.rope_scaling) == (1e6, 1024, base.rope_scaling)
    second = phases.rope_config(base, c, 1)
    # θ kept from stage 0; scaling relative to the ramp's last length [P §3.4.2]
    assert second.rope_theta == 1e6 and second.max_seq_len == 2048
    assert second.rope_scaling == RopeScaling(factor=8.0, original_max_seq_len=512)
    assert phases.rope_config(first, c, 1) == second  # applying again from an applied config changes nothing


def test_data_mix_adds_the_annealing_mix_from_its_start() -> None:
    main = MixSchedule.constant({"web": 3.0, "code": 1.0})
    c = cfg("anneal.mix={web=1.0, code=1.0}")
    assert phases.data_mix(TrainState(phase="long"), c, main) is main
    anneal = TrainState(phase="anneal", anneal_start_tokens=7000)
    mix = phases.data_mix(anneal, c, main)
    assert mix.at(6999) == {"web": 0.75, "code": 0.25} and mix.at(7000) == {"web": 0.5, "code": 0.5}
    assert phases.data_mix(anneal, cfg(), main) is main  # no annealing mix configured: keep the main one


def test_snapshots_are_evenly_spaced_over_annealing() -> None:
    c = cfg()  # 8,000 annealing tokens, 4 snapshots: one per 2,000
    s = TrainState(phase="anneal", anneal_start_tokens=1000, tokens=2999)
    assert not phases.snapshot_due(s, c)
    s = dataclasses.replace(s, tokens=3000)
    assert phases.snapshot_due(s, c)
    assert not phases.snapshot_due(dataclasses.replace(s, anneal_snapshots=[7]), c)
    assert not phases.snapshot_due(dataclasses.replace(s, phase="long"), c)


def test_a_finished_run_without_long_context_or_annealing_continues_with_a_larger_budget() -> None:
    done = TrainState(step=50, phase="done")
    assert phases.resumed(done, cfg("schedule.max_steps=80")).phase == "main"
    assert phases.resumed(done, cfg()).phase == "done"
    annealed = dataclasses.replace(done, anneal_snapshots=[49, 50])
    assert phases.resumed(annealed, cfg("schedule.max_steps=80")).phase == "done"


def test_boundaries_mark_ramp_long_context_and_annealing() -> None:
    s = TrainState(anneal_start_tokens=9000, anneal_snapshots=[3], long_results=[{"seq_len": 1024, "start": 5000}])
    assert phases.boundaries(s, cfg()) == {"anneal": 9000, "long 1024": 5000, "seq 512": 10_000}


def test_guard_skips_nonfinite_and_spikes_and_counts_steps() -> None:
    g = cfg().guard  # spike_factor 3, warmup 20 steps
    s = TrainState(loss_ema=2.0, ema_steps=20)
    assert guard.skip_reason(float("inf"), s, g) == "nonfinite_loss"
    assert guard.skip_reason(6.1, s, g) == "loss_spike" and guard.skip_reason(6.0, s, g) is None
    assert guard.skip_reason(100.0, dataclasses.replace(s, ema_steps=19), g) is None  # EMA not settled yet
    first = guard.accepted(TrainState(consecutive_skips=2), 4.0, 2048, g)
    assert (first.step, first.tokens, first.loss_ema, first.consecutive_skips) == (1, 2048, 4.0, 0)
    assert guard.accepted(first, 2.0, 2048, g).loss_ema == pytest.approx(0.98 * 4.0 + 0.02 * 2.0)
    s = TrainState()
    for _ in range(g.max_skips):
        assert not guard.must_roll_back(s, g)
        s = guard.skipped(s)
    assert guard.must_roll_back(s, g) and s.skipped == g.max_skips and s.step == 0


def test_tokenizer_file_explicit_beside_the_shards_or_none(tmp_path) -> None:
    shards = tmp_path / "tokens"
    shards.mkdir()
    data = load_config(PretrainConfig, None, [f"data.shards={shards}"]).data
    assert tokenizer_file(data) is None
    (shards / "tokenizer.model").write_text("ranks")
    assert tokenizer_file(data) == shards / "tokenizer.model"
    (tmp_path / "tok").mkdir()
    (tmp_path / "tok" / "tokenizer.model").write_text("ranks")
    folder = dataclasses.replace(data, tokenizer=str(tmp_path / "tok"))
    assert tokenizer_file(folder) == tmp_path / "tok" / "tokenizer.model"
    with pytest.raises(FileNotFoundError, match=r"data\.tokenizer"):
        tokenizer_file(dataclasses.replace(data, tokenizer=str(tmp_path / "missing.model")))
