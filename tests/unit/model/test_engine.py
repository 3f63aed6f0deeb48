"""The continuous-batching engine over a paged KV cache produces what one-at-a-time generation produces:
whatever joins or leaves the batch, whether the samples of a prompt share its blocks, and when
sequences are preempted and recomputed because the block pool is too small."""

import pytest
import torch
from helpers import tiny_config

from herd.model import build_model, generate
from herd.model.engine import Engine, EngineConfig, SamplingParams
from herd.model.paged import BlockPool, OutOfBlocks


@pytest.fixture(scope="module")
def model():
    return build_model(tiny_config(), seed=3).eval()


def _prompts(n: int, seed: int = 0, longest: int = 40) -> list[list[int]]:
    g = torch.Generator().manual_seed(seed)
    lengths = torch.randint(1, longest, (n,), generator=g).tolist()
    return [torch.randint(0, 300, (k,), generator=g).tolist() for k in lengths]


def _collect(engine: Engine, outs: dict, steps: int | None = None) -> None:
    """Step `steps` times (or until idle), appending each event's token to outs[(request, sample)]."""
    i = 0
    while engine.has_work() and (steps is None or i < steps):
        for e in engine.step():
            outs.setdefault((e.request_id, e.index), [])
            if e.token is not None:
                outs[(e.request_id, e.index)].append(e.token)
        i += 1


def test_requests_joining_mid_batch_get_the_tokens_of_one_at_a_time_greedy(model) -> None:
    prompts = _prompts(9)
    budgets = [3, 20, 7, 1, 15, 20, 2, 11, 9]  # rows leave the batch at different steps
    engine = Engine(model, EngineConfig(block_size=4))
    outs: dict = {}
    ids = [engine.add(p, SamplingParams(max_tokens=m)) for p, m in zip(prompts[:3], budgets)]
    _collect(engine, outs, steps=4)
    ids += [engine.add(p, SamplingParams(max_tokens=m)) for p, m in zip(prompts[3:6], budgets[3:])]
    _collect(engine, outs, steps=2)
    ids += [engine.add(p, SamplingParams(max_tokens=m)) for p, m in zip(prompts[6:], budgets[6:])]
    _collect(engine, outs)
    for rid, prompt, budget in zip(ids, prompts, budgets):
        assert outs[(rid, 0)] == generate(model, [prompt], max_new_tokens=budget)[0]
    assert engine.pool.num_free == engine.pool.num_blocks and not engine.requests


def test_seeded_sampling_matches_generate_and_is_independent_of_the_batch(model) -> None:
    prompts = _prompts(4, seed=1)
    params = SamplingParams(max_tokens=10, temperature=0.8, top_p=0.9, seed=5)
    together = Engine(model, EngineConfig(block_size=4)).generate(prompts, params)
    for prompt, out in zip(prompts, together):
        assert out[0] == generate(model, [prompt], max_new_tokens=10, temperature=0.8, top_p=0.9, seed=5)[0]


def test_shared_prompt_blocks_sample_as_if_unshared(model) -> None:
    prompts = _prompts(3, seed=2)
    params = SamplingParams(max_tokens=12, temperature=1.0, n=6, seed=11)
    shared = Engine(model, EngineConfig(block_size=4))
    unshared = Engine(model, EngineConfig(block_size=4, share_prefix=False))
    a, b = shared.generate(prompts, params), unshared.generate(prompts, params)
    assert a == b
    assert len({tuple(s) for s in a[0]}) > 1  # the samples differ from each other
    assert shared.stats.prefill_tokens == sum(map(len, prompts))  # each prompt ran once
    assert unshared.stats.prefill_tokens == 6 * sum(map(len, prompts))
    assert shared.stats.peak_blocks < unshared.stats.peak_blocks


def test_a_tiny_block_pool_preempts_and_recomputes_to_the_same_outputs(model) -> None:
    prompts = _prompts(6, seed=3)
    for params in (SamplingParams(max_tokens=20), SamplingParams(max_tokens=12, temperature=0.9, n=3, seed=2)):
        roomy = Engine(model, EngineConfig(block_size=4)).generate(prompts, params)
        tight = Engine(model, EngineConfig(block_size=4, kv_tokens=64))
        assert tight.generate(prompts, params) == roomy
        assert tight.stats.preemptions > 0
        assert tight.pool.num_free == tight.pool.num_blocks  # every block came back


def test_logprobs_are_the_full_forward_log_softmax(model) -> None:
    prompt = _prompts(1, seed=4)[0] + [7, 8]
    engine = Engine(model)
    engine.add(prompt, SamplingParams(max_tokens=3, logprobs=2, prompt_logprobs=1))
    events = []
    while engine.has_work():
        events += engine.step()
    tokens = [e.token for e in events]
    with torch.no_grad():
        logp = torch.log_softmax(model(torch.tensor([prompt + tokens])).float(), -1)[0]  # (T, V)
    first = events[0].prompt_logprobs
    assert first[0] is None and len(first) == len(prompt)
    for t in range(1, len(prompt)):
        assert first[t].logprob == pytest.approx(float(logp[t - 1, prompt[t]]), abs=1e-5)
        assert first[t].top[0][0] == int(logp[t - 1].argmax())
    for j, e in enumerate(events):
        pos = len(prompt) - 1 + j
        assert e.logprob.logprob == pytest.approx(float(logp[pos, e.token]), abs=1e-5)
        assert [i for i, _ in e.logprob.top] == logp[pos].topk(2).indices.tolist()
    assert [e.finish for e in events] == [None, None, "length"]


def test_stop_tokens_max_tokens_zero_and_abort(model) -> None:
    prompt = _prompts(1, seed=5)[0]
    greedy = generate(model, [prompt], max_new_tokens=6)[0]
    engine = Engine(model, EngineConfig(block_size=4))
    engine.add(prompt, SamplingParams(max_tokens=6, stop_ids=frozenset({greedy[2]})))
    events = []
    while engine.has_work():
        events += engine.step()
    assert [e.token for e in events] == [*greedy[:2], None] and events[-1].finish == "stop"
    engine.add(prompt, SamplingParams(max_tokens=0, prompt_logprobs=0))
    (only,) = engine.step()
    assert only.token is None and only.finish == "length" and len(only.prompt_logprobs) == len(prompt)
    rid = engine.add(prompt, SamplingParams(max_tokens=50, n=3, temperature=1.0))
    engine.step()
    engine.abort(rid, index=1)
    assert {s.index for s in engine.running} == {0, 2}
    engine.abort(rid)
    assert not engine.has_work() and engine.pool.num_free == engine.pool.num_blocks


def test_requests_that_can_never_run_are_refused(model) -> None:
    engine = Engine(model, EngineConfig(block_size=4, kv_tokens=32))
    with pytest.raises(ValueError, match="KV blocks"):
        engine.add([1] * 30, SamplingParams(max_tokens=10))
    with pytest.raises(ValueError, match="context"):
        Engine(model).add([1] * 500, SamplingParams(max_tokens=20))
    with pytest.raises(ValueError, match="token ids"):
        engine.add([1, 300], SamplingParams())


def test_block_pool_refcounts_and_copy_on_write() -> None:
    pool = BlockPool(tiny_config(), num_blocks=2, block_size=2)
    a = pool.allocate()
    pool.k[0][a * 2] = 1.0
    pool.share(a)
    b = pool.copy(a)
    pool.release(a)
    assert pool.refs[a] == 1 and pool.refs[b] == 1 and float(pool.k[0][b * 2].sum()) == pool.k[0][b * 2].numel()
    with pytest.raises(OutOfBlocks):
        pool.allocate()
