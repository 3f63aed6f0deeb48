"""The math pipeline [P §4.3.3]: planted traces are kept or dropped with the right reason, steps are checked
by sympy, the step RM learns step labels, and the held-out eval is disjoint from the training problems."""

from __future__ import annotations

import json

import pytest
import sympy

from herd.posttrain.capabilities import CapabilityContext, get_capability
from herd.posttrain.capabilities.math import eval_problems, prompt_of
from herd.posttrain.capabilities.math_problems import answers_match, make_problems, solve
from herd.posttrain.capabilities.math_steps import StepRewardModel, check_step, label_steps, step_features
from herd.posttrain.common import save_model


@pytest.fixture
def policy(tmp_path, model):
    return save_model(model, tmp_path / "policy", None)


def _scripted(problems_seen):
    """A generator that writes, per problem, one good trace and one of each kind of bad trace."""

    def sampler(model, chat, prompts, k, **kw):
        out = []
        for msgs in prompts:
            q = msgs[-1]["content"]
            p = next(p for p in problems_seen if q.startswith(p["question"]))
            ans = int(p["answer"])
            good = f"{p['expr'] if 'Eq' not in p['expr'] else 'x'} = {ans}\nThe answer is {ans}."
            out.append(
                [
                    good,
                    good,  # a copy: duplicate
                    f"The answer is {ans + 1}.",  # wrong_answer
                    "I am not sure how to do this.",  # no_answer
                    f"2 + 2 = 5\nThe answer is {ans}.",  # right answer, wrong step: bad_step
                ][:k]
            )
        return out

    return sampler


def test_planted_traces_kept_or_dropped_with_reason(tmp_path, chat, policy, monkeypatch):
    cap = get_capability(
        "math",
        {
            "problems": 6,
            "k": 5,
            "kinds": ["arith2", "linear"],
            "step_threshold": 0.0,
            "step_rm_min": 10,
            "eval_items": 4,
        },
    )
    problems = make_problems(
        6, ["arith2", "linear"], 0 * 1000 + 1, exclude={p["question"] for p in eval_problems(cap.config)}
    )
    monkeypatch.setattr(cap, "sampler", _scripted(problems))
    ctx = CapabilityContext(policy=policy, chat=chat, bundle=tmp_path, seed=0, round=1)
    counts = cap.build(ctx, tmp_path / "out")
    assert counts["in"] == 30 and counts["kept"] == 6
    assert counts["dropped_by_reason"] == {"bad_step": 6, "duplicate": 6, "no_answer": 6, "wrong_answer": 6}
    kept = [json.loads(x) for x in (tmp_path / "out" / "sft.jsonl").read_text().splitlines()]
    assert all(r["category"] == "reasoning_tools" and r["messages"][-1]["role"] == "assistant" for r in kept)
    dropped = [json.loads(x) for x in (tmp_path / "out" / "dropped" / "dropped.jsonl").read_text().splitlines()]
    bad = [r for r in dropped if r["reason"] == "bad_step"]
    assert all(r["by"] == "check" and r["step"] == "2 + 2 = 5" for r in bad)
    prefs = [json.loads(x) for x in (tmp_path / "out" / "prefs.jsonl").read_text().splitlines()]
    assert len(prefs) == 6 and {p["source"] for p in prefs} == {"math-verified"}
    for p in prefs:  # chosen: the checked trace; rejected: a wrong one
        assert p["chosen"] in {r["messages"][-1]["content"] for r in kept}
        assert p["rejected"] in {f"The answer is {int(q['answer']) + 1}." for q in problems} | {
            "I am not sure how to do this."
        }
    assert counts["step_rm"] == "trained" and counts["problems_with_a_kept_trace"] == 6


def test_eval_counts_exact_matches_with_ci(tmp_path, chat, policy, monkeypatch):
    cap = get_capability("math", {"eval_items": 10})
    probs = eval_problems(cap.config)
    answers = iter([p["answer"] if i < 4 else "0.5" for i, p in enumerate(probs)])
    monkeypatch.setattr(
        cap, "sampler", lambda m, c, prompts, k, **kw: [[f"The answer is {next(answers)}."] for _ in prompts]
    )
    r = cap.evaluate(policy, CapabilityContext(policy=policy, chat=chat, bundle=tmp_path))
    assert r["n"] == 10 and r["value"] == pytest.approx(0.4)
    assert r["ci95"] == pytest.approx(1.96 * (0.4 * 0.6 / 10) ** 0.5)


def test_training_problems_never_include_held_out_ones():
    held = {p["question"] for p in make_problems(60, ["arith1"], 104729)}
    train = make_problems(200, ["arith1"], 1, exclude=held)
    assert len(train) == 200 and not held & {p["question"] for p in train}


@pytest.mark.parametrize("kind", ["arith1", "arith2", "arith3", "change", "linear"])
def test_generated_answers_agree_with_sympy_and_python(kind):
    for p in make_problems(20, [kind], 3):
        if kind == "linear":  # a x + b = c: substitute the answer back
            lhs, rhs = p["expr"].removeprefix("Eq(").removesuffix(")").split(", ")
            assert sympy.sympify(lhs).subs("x", int(p["answer"])) == int(rhs)
        else:
            assert eval(p["expr"]) == int(p["answer"])  # our own generated arithmetic


def test_step_checks():
    assert check_step("1. 12 + 3*4 = 24") == 1
    assert check_step("So 4 x 3 x 2 = 24.") == 1  # "x" between numbers is a product
    assert check_step("12 + 7 = 2+8") == 0
    assert check_step("$23 - $15 = $8") == 1
    assert check_step("3x + 4 = 19", sympy.Rational(5)) == 1
    assert check_step("3x = 12", sympy.Rational(5)) == 0
    assert check_step("3x = 15") is None  # no solution to check against
    assert check_step("Tom has 5 apples = a lot") is None
    steps = label_steps("First 2 * 3 = 6\n\nthen 6 + 1 = 8\nThe answer is 8.")
    assert [s.label for s in steps] == [1, 0, None] and steps[1].text == "then 6 + 1 = 8"


def test_answers_match_is_exact():
    assert answers_match("4.50", "9/2") and answers_match("1,200", "1200") and answers_match("-3", "-3")
    assert not answers_match("4.51", "9/2") and not answers_match(None, "1") and not answers_match("x", "1")
    assert solve("Eq(3*x + 4, 19)") == 5 and solve("2 + 3*4") == 14


def test_step_reward_model_learns_step_labels(chat, model):
    """Plumbing on a random tiny trunk: wrong steps here end in "= 0", right ones never do, so a probe that
    reads each step's last token separates them on held-out steps; one read elsewhere (e.g. the prompt's
    end) could not. It refuses to train on one class."""
    import torch

    feats, labels = [], []
    for a in (a for a in range(1, 70) if a % 10 != 9):
        for wrong in (0, 1):
            text = f"We add: {a} + 1 = {0 if wrong else a + 1}"
            feats.append(step_features(model, chat, [{"role": "user", "content": "q"}], text + "\nok", [len(text)]))
            labels.append(1 - wrong)
    x = torch.cat(feats)
    test = set(range(1, len(labels), 3))
    train = [i for i in range(len(labels)) if i not in test]
    rm = StepRewardModel().fit(x[train], [labels[i] for i in train])
    pred = [int(s >= 0.5) for s in rm.score(x[sorted(test)])]
    assert sum(p == labels[i] for p, i in zip(pred, sorted(test))) / len(test) > 0.9
    with pytest.raises(ValueError, match="correct and wrong"):
        StepRewardModel().fit(x[:3:2], [1, 1])


def test_prompt_asks_for_a_stated_answer():
    p = make_problems(1, ["arith1"], 0)[0]
    assert prompt_of(p)[0]["content"].startswith(p["question"]) and "The answer is" in prompt_of(p)[0]["content"]


def test_step_rm_scores_below_threshold_drop_as_bad_step(tmp_path, chat, policy, monkeypatch):
    """A trace with the right answer and no checkable wrong step is still dropped when the step RM scores a
    step below `step_threshold` (here a stub RM that distrusts every step)."""
    from herd.posttrain.capabilities.math import MathCapability

    class Distrust:
        def score(self, x):
            return [0.05] * len(x)

    cap = get_capability("math", {"problems": 2, "k": 1, "kinds": ["arith1"], "step_threshold": 0.2, "eval_items": 2})
    problems = make_problems(2, ["arith1"], 1, exclude={p["question"] for p in eval_problems(cap.config)})
    monkeypatch.setattr(cap, "sampler", _scripted(problems))
    monkeypatch.setattr(MathCapability, "_step_rm", lambda self, *a: (Distrust(), {"step_rm": "stub"}))
    out = cap.generate(CapabilityContext(policy=policy, chat=chat, bundle=tmp_path, seed=0, round=1))
    assert not out.kept and [(r["reason"], r["by"], r["score"]) for r in out.dropped] == [("bad_step", "rm", 0.05)] * 2


def test_gsm8k_runs_on_a_finetuned_folder_without_a_tokenizer(tmp_path, chat, policy):
    """A capability's fine-tuned folder holds weights only; GSM8K is scored with the run's tokenizer."""
    assert not any(p.name.startswith("tokenizer") for p in policy.iterdir())
    cap = get_capability("math", {"eval_items": 2, "eval_max_new_tokens": 4, "gsm8k_items": 2})
    r = cap.evaluate(policy, CapabilityContext(policy=policy, chat=chat, bundle=tmp_path))
    g = r["gsm8k"]
    assert g["metric"] == "gsm8k_em" and g["n"] == 2 and 0.0 <= g["value"] <= 1.0
