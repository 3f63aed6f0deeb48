"""The tools capability as a stage: planted good and bad trajectories from a scripted policy, each bad one
dropped with the paper's reason [P §4.3.5]; counts in = kept + dropped; the AST-match eval scored."""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

import pytest

import herd.posttrain.capabilities.tools as T
from herd.core.stage import run_fn
from herd.posttrain.capabilities import CapabilityContext, get_capability
from herd.sandbox import SandboxUnavailable, require_isolation

SLICE = Path(__file__).resolve().parents[2] / "data" / "corpus-slice" / "sotu"


def _call(name, **args):
    body = json.dumps({"name": name, "arguments": args})
    return {"role": "assistant", "content": f"<tool_call>{body}</tool_call>"}


def _say(text):
    return {"role": "assistant", "content": text}


def planted(task: T.Task, step: int, outputs: list[str], i: int) -> dict:
    """Task i gets behaviour i % 8: good, or one planted fault each."""
    mode = i % 8
    if mode == 0:  # good: the reference calls, then the gold answer
        return T.call_message(task.calls[step], None) if step < len(task.calls) else _say(" and ".join(task.gold))
    if mode == 1:
        return _say("<tool_call>{oops</tool_call>")
    if mode == 2:
        return _call("weather", city="Oslo") if step == 0 else _say("done")
    if mode == 3:
        return _call("calculator", expression="1/0 + zoo**") if step == 0 else _say("done")
    if mode == 4:
        return task.calls[0] and T.call_message(task.calls[0], None)  # the same call again and again: a loop
    if mode == 5:
        return T.call_message(task.calls[step], None) if step < len(task.calls) else _say("It is 123456789.")
    if mode == 6:
        return _say(" and ".join(task.gold))  # right answer, but no tool was called
    return {"role": "assistant", "content": "I will", "stop_reason": "out_of_tokens"}


EXPECTED = {1: "call_parse_error", 2: "unknown_tool", 3: "tool_error", 4: "loop", 5: "wrong_answer",
            6: "no_tool_call", 7: "truncated"}  # fmt: skip


def scripted_policy(cap):
    def policy(model_dir, ctx, temperature):
        def run(dialogs):
            out = []
            for d in dialogs:
                user = next(m["content"] for m in d if m["role"] == "user")
                if d[0]["content"].startswith("You can call") and "calculator" not in d[0]["content"]:
                    out.append(_function_reply(user))
                    continue
                i = run.order.setdefault(user, len(run.order))
                task = run.tasks[user]
                out.append(planted(task, sum(m["role"] == "ipython" for m in d), [], i))
            return out

        run.order, run.tasks = {}, {t.question: t for t in cap._tasks}
        return run

    return policy


def _function_reply(user: str) -> dict:
    # Good when the request mentions Oslo, else a call to an undefined function.
    if "Oslo" in user:
        return _call("get_weather", city="Oslo", unit="celsius" if "celsius" in user else "fahrenheit")
    return _call("get_horoscope", sign="leo")


@pytest.fixture
def cap(monkeypatch):
    try:
        require_isolation()
    except SandboxUnavailable:
        pytest.skip("this kernel cannot isolate tool code")
    cap = get_capability("tools", {"tasks": 16, "function_items": 10, "corpus": str(SLICE), "eval_items": 8,
                                   "eval_tasks": 0, "kinds": ["calculator", "algebra"]})  # fmt: skip
    make = T.make_tasks

    def remember(*a, **kw):
        cap._tasks = make(*a, **kw)
        return cap._tasks

    monkeypatch.setattr(T, "make_tasks", remember)
    cap.policy = scripted_policy(cap)
    return cap


def test_planted_trajectories_kept_or_dropped_with_reason(cap, tmp_path):
    ctx = CapabilityContext(policy=tmp_path, chat=None, bundle=tmp_path, seed=0)
    m = run_fn("capability-tools", [], {"t": 1}, tmp_path / "out", lambda tmp: cap.build(ctx, tmp))
    rows = [json.loads(x) for x in (tmp_path / "out" / "dropped" / "dropped.jsonl").read_text().splitlines()]
    kept = [json.loads(x) for x in (tmp_path / "out" / "sft.jsonl").read_text().splitlines()]
    order = {t.question: i for i, t in enumerate(cap._tasks)}
    for row in rows:
        if row["source"] == "tools-policy":
            assert row["reason"] == EXPECTED[order[row["messages"][1]["content"]] % 8]
    policy_kept = [r for r in kept if r["source"] == "tools-policy"]
    assert {order[r["messages"][1]["content"]] % 8 for r in policy_kept} == {0}
    assert len(policy_kept) == 2 and m.counts["policy_removed_share"] == 0.875
    # Kept trajectories carry the real tool outputs in their ipython messages.
    for r in policy_kept:
        assert r["messages"][3]["role"] == "ipython" and r["messages"][3]["content"]
    # References (the annotated trajectories) pass the same filters.
    assert m.counts["reference_kept"] == 16
    fn = Counter(r["reason"] for r in rows if r["source"] == "tools-function-policy")
    assert fn == {"undefined_function": m.counts["function_policy_in"] - m.counts.get("function_policy_kept", 0)}
    assert m.counts["in"] == m.counts["kept"] + m.counts["dropped"] == len(kept) + len(rows)
    assert {r["category"] for r in kept} == {"reasoning_tools"}


def test_answer_check():
    assert T.answer_matches("It is 2,377.", ["2377"]) and not T.answer_matches("It is 23770.", ["2377"])
    assert T.answer_matches("Taft gave it, 114 years ago", ["Taft", "114"])
    assert not T.answer_matches("Taft gave it", ["Taft", "114"])


def test_eval_scores_ast_match_on_held_out_functions(cap, tmp_path):
    ctx = CapabilityContext(policy=tmp_path, chat=None, bundle=tmp_path, seed=0)
    items = T.make_function_items(8, T.EVAL_FUNCTIONS, seed=10_000)
    assert not {f["name"] for f, *_ in T.TRAIN_FUNCTIONS} & {f["name"] for f, *_ in T.EVAL_FUNCTIONS}
    right = {it.question: _call(it.name, **it.arguments) for it in items[:6]}
    cap.policy = lambda d, c, t: lambda dialogs: [right.get(x[-1]["content"], _say("no idea")) for x in dialogs]
    r = cap.evaluate(tmp_path, ctx)
    assert r["metric"] == "ast_match" and r["n"] == 8 and r["value"] == 0.75 and r["misses"] == {"no_call": 2}
    assert r["ci95"] == pytest.approx(1.96 * (0.75 * 0.25 / 8) ** 0.5)
