"""The scorer's log-likelihoods equal a hand computation from the model's logits, however requests are batched."""

import math

import pytest
import torch
from unit.eval.toy import toy_scorer

REQUESTS = [
    ("Question: 2+2?\nAnswer:", " 4"),
    ("Question: 2+2?\nAnswer:", " five"),
    ("The cat sat on the ", "mat"),  # trailing space moves to the continuation
    ("x", " a much longer continuation that spans many byte tokens"),
    ("", "no context at all"),
]


def reference(scorer, context: str, continuation: str) -> float:
    ctx, cont = scorer.encode_pair(context, continuation)
    seq = torch.tensor([ctx + cont])
    with torch.no_grad():
        logp = torch.log_softmax(scorer.model(seq[:, :-1]).float(), -1)[0]
    return sum(logp[len(ctx) - 1 + i, t].item() for i, t in enumerate(cont))


def test_loglikelihood_matches_hand_computation() -> None:
    scorer = toy_scorer()
    got = scorer.loglikelihood(REQUESTS)
    for (c, x), (lp, _) in zip(REQUESTS, got):
        assert lp == pytest.approx(reference(scorer, c, x), abs=1e-4)


def test_batching_does_not_change_scores() -> None:
    one, many = toy_scorer(batch_tokens=1), toy_scorer(batch_tokens=10_000)
    for (a, ga), (b, gb) in zip(one.loglikelihood(REQUESTS), many.loglikelihood(REQUESTS)):
        assert a == pytest.approx(b, abs=1e-4) and ga == gb


def test_lm_eval_pair_split_moves_trailing_space() -> None:
    scorer = toy_scorer()
    ctx, cont = scorer.encode_pair("The cat sat on the ", "mat")
    assert scorer.decode(ctx) == "The cat sat on the" and scorer.decode(cont) == " mat"
    ctx, cont = scorer.encode_pair("", "abc")
    assert ctx == [256] and scorer.decode(cont) == "abc"


def test_greedy_flag_and_rolling() -> None:
    scorer = toy_scorer()
    text = "hello world"
    ctx = scorer.encode_pair("hello", " world")[0]
    with torch.no_grad():
        greedy = scorer.model(torch.tensor([ctx])).argmax(-1)[0, -1].item()
    ((_, is_greedy),) = scorer.loglikelihood_tokens([(ctx, [greedy])])
    assert is_greedy
    # Rolling = every token scored after the prefix token, in windows of the context length.
    rolled = scorer.loglikelihood_rolling([text])[0]
    assert rolled == pytest.approx(reference(scorer, "", text), abs=1e-4)
    scorer.max_length = 4  # many windows, each conditioned on the preceding tokens
    windows = scorer.loglikelihood_rolling([text])[0]
    assert math.isfinite(windows) and windows < 0


def test_generate_stops_at_stop_string() -> None:
    scorer = toy_scorer()
    full = scorer.generate(["abc", "a longer prompt"], max_new_tokens=12)
    assert all(isinstance(t, str) for t in full)
    stop = full[0][3:5] if len(full[0]) >= 5 else None
    if stop:
        cut = scorer.generate(["abc"], max_new_tokens=12, stop=[stop])[0]
        assert stop not in cut and full[0].startswith(cut)


def test_shared_prefix_path_equals_plain_path() -> None:
    """Contexts run once and copied to every choice (left-padded prefill, right-padded choices) change nothing."""
    shared, plain = toy_scorer(batch_tokens=64), toy_scorer()
    plain.share_prefix = False
    reqs = [(f"Q{i}: {'word ' * i}?\nA:", f" {c}") for i in range(6) for c in ("a", "bb bb", "a longer answer")]
    for (a, ga), (b, gb) in zip(shared.loglikelihood(reqs), plain.loglikelihood(reqs)):
        assert a == pytest.approx(b, abs=1e-4) and ga == gb


def test_stop_watcher_ends_once_every_row_stopped_or_finished() -> None:
    from herd.eval.scorer import _AllStopped, _StopWatcher

    w = _StopWatcher(2, lambda ids: "".join(map(chr, ids)), ["\n"])
    w(0, ord("a"))
    w(1, ord("b"))  # step 1: both rows stream
    w(0, ord("\n"))  # step 2: row 0 hits its stop string; row 1 emitted its stop token (silent)
    with pytest.raises(_AllStopped):
        w(0, ord("c"))  # step 3 begins: row 1 was silent in step 2, so every row is done
    assert w.ids == [[97, 10, 99], [98]]
