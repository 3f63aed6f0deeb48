"""The code pipeline [P §4.3.1] with a scripted generator: planted good and bad solutions, corrections,
translations and backtranslations are kept or dropped with the right reason; lint and the sandbox are real."""

from __future__ import annotations

import json

import pytest

from herd.posttrain.capabilities import CapabilityContext, get_capability
from herd.posttrain.capabilities.code import extract_code, lint, run_tests
from herd.posttrain.capabilities.code_node import node_available, run_node
from herd.posttrain.capabilities.code_problems import CodeProblem, js_test_program, make_code_problems
from herd.posttrain.common import save_model
from herd.sandbox import Limits

NO_NODE = node_available()


def _problem(name: str, ref: str, cases: list, js: str = "") -> CodeProblem:
    asserts = [f"assert {name}({', '.join(map(repr, a))}) == {r!r}" for a, r in cases]
    return CodeProblem(f"p-{name}", f"Write `{name}`.", name, asserts[:2], asserts[2:], ref, cases, js)


PROBLEMS = [
    _problem(
        "add_3",
        "def add_3(x):\n    return x + 3\n",
        [([1], 4), ([-3], 0), ([10], 13)],
        "function add_3(x) { return x + 3; }",
    ),
    _problem(
        "evens",
        "def evens(xs):\n    return [v for v in xs if v % 2 == 0]\n",
        [([[1, 2, 4]], [2, 4]), ([[]], [])],
        "function evens(xs) { return xs.filter((v) => v % 2 === 0); }",
    ),
    _problem(
        "rev",
        "def rev(s):\n    return s[::-1]\n",
        [(["abc"], "cba"), ([""], "")],
        "const rev = (s) => [...s].reverse().join('');",
    ),
]
JS = {  # add_3: right; evens: runs but wrong; rev: a syntax error
    "add_3": "```javascript\nfunction add_3(x) { return x + 3; }\n```",
    "evens": "```javascript\nfunction evens(xs) { return xs; }\n```",
    "rev": "```javascript\nfunction rev(s) { return s.split('').reverse().join('') \n```",
}
TO_PY = {  # JavaScript → Python. add_3: right; evens: runs but wrong; rev: raises (str has no reverse)
    "add_3": "```python\ndef add_3(x):\n    return x + 3\n```",
    "evens": "```python\ndef evens(xs):\n    return xs\n```",
    "rev": "```python\ndef rev(s):\n    return s.reverse()\n```",
}


def _fence(code: str) -> str:
    return f"Here it is:\n```python\n{code}```"


def _solutions(p: CodeProblem) -> list[str]:
    return [
        _fence(p.reference),  # passes
        _fence(p.reference),  # passes again: duplicate
        _fence(f"def {p.entry_point}(x):\n    return undefined_name\n"),  # lint_error, not fixed
        _fence(f"def {p.entry_point}(*args):\n    return None\n"),  # test_failure, fixed by correction
        "",  # no_code
    ]


def _sampler(model, chat, prompts, k, **kw):
    out = []
    for msgs in prompts:
        text, asked = msgs[-1]["content"], msgs[0]["content"]
        p = next(p for p in PROBLEMS if f"`{p.entry_point}`" in asked or f"def {p.entry_point}(" in asked)
        if len(msgs) == 3:  # the correction turn: fix the test failure, repeat the lint error
            first = msgs[1]["content"]
            out.append([_fence(p.reference + "# fixed\n") if "return None" in first else first])
        elif text.startswith("Translate this JavaScript"):
            out.append([TO_PY[p.entry_point]])
        elif text.startswith("Translate"):
            out.append([JS[p.entry_point]])
        elif text.startswith("Explain"):
            out.append([f"It is {p.entry_point}."])
        elif text.startswith("Write a Python function"):  # backtranslation: rev comes back wrong
            out.append([_fence(p.reference if p.entry_point != "rev" else "def rev(s):\n    return s\n")])
        else:
            out.append(_solutions(p)[:k])
    return out


@pytest.fixture
def cap(monkeypatch):
    cap = get_capability("code", {"k": 5, "translate": 3, "backtranslate": 3, "cpu_s": 2, "wall_s": 10})
    monkeypatch.setattr(cap, "problems", lambda ctx: PROBLEMS)
    monkeypatch.setattr(cap, "sampler", _sampler)
    # The judge: rev's rewrite is checked by tests first; evens' rewrite passes but is judged badly styled.
    monkeypatch.setattr(
        cap, "judge_style", lambda m, c, rows: [int("`evens`" not in r["messages"][0]["content"]) for r in rows]
    )
    return cap


@pytest.mark.skipif(NO_NODE is not None, reason=f"node: {NO_NODE}")
def test_planted_solutions_kept_or_dropped_with_reason(tmp_path, chat, model, cap):
    policy = save_model(model, tmp_path / "policy", None)
    counts = cap.build(CapabilityContext(policy=policy, chat=chat, bundle=tmp_path), tmp_path / "out")
    dropped = [json.loads(x) for x in (tmp_path / "out" / "dropped" / "dropped.jsonl").read_text().splitlines()]
    kept = [json.loads(x) for x in (tmp_path / "out" / "sft.jsonl").read_text().splitlines()]
    by = {}
    for r in dropped:
        by.setdefault(r["reason"], []).append(r)
    assert {k: len(v) for k, v in by.items()} == {
        "duplicate": 3,
        "lint_error": 3,
        "no_code": 3,
        "js_error": 1,
        "translation_mismatch": 2,
        "py_error": 1,
        "backtranslation_incorrect": 1,
        "backtranslation_style": 1,
    }
    assert all("undefined_name" in r["error"] and r["first_reason"] == "lint_error" for r in by["lint_error"])
    js_bad, py_bad = (
        next(r for r in by["translation_mismatch"] if r["language"] == lang) for lang in ("javascript", "python")
    )
    assert "returned" in js_bad["error"] and by["js_error"][0]["problem_id"] == "p-rev"
    assert py_bad["problem_id"] == "p-evens" and "AssertionError" in py_bad["error"]
    assert by["py_error"][0]["problem_id"] == "p-rev" and "AttributeError" in by["py_error"][0]["error"]
    assert by["backtranslation_incorrect"][0]["problem_id"] == "p-rev"
    assert by["backtranslation_style"][0]["problem_id"] == "p-evens"
    sources = [r["source"] for r in kept]
    assert sources.count("code-exec") == 6 and sources.count("code-translation") == 2
    assert {r["language"] for r in kept if r["source"] == "code-translation"} == {"javascript", "python"}
    assert sources.count("code-backtranslation") == 1 and {r["category"] for r in kept} == {"code"}
    fixed = [r for r in kept if r.get("fixed_by_correction")]
    assert len(fixed) == 3 and all(len(r["messages"]) == 4 and "Error" in r["messages"][2]["content"] for r in fixed)
    # 3 of the 6 first-attempt failures (the test failures, not the lint errors) were fixed: 50%.
    assert counts["first_attempt_failed"] == 6 and counts["share_fixed_by_correction"] == pytest.approx(0.5)
    assert counts["in"] == counts["kept"] + counts["dropped"] == 15 + 3 + 3 + 3
    assert counts["translations_to_python"] == 3 and counts["translations_to_python_kept"] == 1


def test_js_to_python_translation_needs_no_node(cap, monkeypatch):
    """JavaScript → Python is checked by running Python: planted right, wrong, raising and lint-failing replies."""
    from herd.posttrain.capabilities import Outputs

    lint_bad = _problem(
        "add_4", "def add_4(x):\n    return x + 4\n", [([1], 5), ([0], 4)], "function add_4(x) { return x + 4; }"
    )
    monkeypatch.setitem(globals(), "PROBLEMS", [*PROBLEMS, lint_bad])
    monkeypatch.setitem(TO_PY, "add_4", "```python\ndef add_4(x):\n    return x + four\n```")
    out = Outputs()
    cap.translation_to_python(PROBLEMS, None, CapabilityContext(policy=None, chat=None, bundle=None), out)
    assert [r["problem_id"] for r in out.kept] == ["p-add_3"]
    assert [(r["problem_id"], r["reason"]) for r in out.dropped] == [
        ("p-evens", "translation_mismatch"),
        ("p-rev", "py_error"),
        ("p-add_4", "lint_error"),
    ]
    assert "undefined name" in out.dropped[2]["error"].lower()
    assert out.stats == {"translations_to_python": 4, "translations_to_python_kept": 1}


# Insecure but correct: each passes its tests (checked below), so only the code scan can drop it.
INSECURE_PY = "def add_3(x):\n    return eval(str(x) + ' + 3')\n"  # bandit B307
INSECURE_JS = "```javascript\nfunction add_3(x) { return eval(String(x) + ' + 3'); }\n```"  # js-eval-dynamic


def test_insecure_but_passing_solution_is_dropped_as_insecure_code(cap, monkeypatch):
    """Code Shield's core (herd.sandbox.code_scan) inside the pipeline: a planted solution that passes the
    tests but evals a built string is dropped as insecure_code, without a correction turn; the secure
    reference of the same problem is kept."""
    pytest.importorskip("bandit", reason="the code scan needs bandit")
    from herd.posttrain.capabilities import Outputs

    assert run_tests(INSECURE_PY, PROBLEMS[0].tests, Limits(cpu_s=2, wall_s=10)) == (None, "")
    monkeypatch.setattr(cap, "sampler", lambda m, c, prompts, k, **kw: [[_fence(INSECURE_PY), _fence(
        PROBLEMS[0].reference)] for _ in prompts])  # fmt: skip
    out = Outputs()
    cap.execution_feedback(PROBLEMS[:1], None, CapabilityContext(policy=None, chat=None, bundle=None), out)
    assert [(r["reason"], r["error"]) for r in out.dropped] == [("insecure_code", "B307")]
    assert len(out.kept) == 1 and "eval" not in out.kept[0]["messages"][-1]["content"]
    assert out.stats["first_attempt_failed"] == 0 and out.stats["code_shield"] == "bandit"


@pytest.mark.skipif(NO_NODE is not None, reason=f"node: {NO_NODE}")
def test_insecure_but_passing_translation_is_dropped_as_insecure_code(cap, monkeypatch):
    """The JavaScript path: semgrep with herd's rules flags the translation before Node runs it."""
    from herd.posttrain.capabilities import Outputs
    from herd.sandbox.code_scan import semgrep_binary

    if semgrep_binary() is None:
        pytest.skip("semgrep is not installed (make install puts it in .venv/semgrep)")
    p = PROBLEMS[0]
    assert run_node(js_test_program(extract_code(INSECURE_JS), p.entry_point, p.cases)).passed
    monkeypatch.setitem(JS, "add_3", INSECURE_JS)
    out = Outputs()
    cap.translation(PROBLEMS, None, CapabilityContext(policy=None, chat=None, bundle=None), out)
    reasons = {r["problem_id"]: (r["reason"], r.get("error")) for r in out.dropped}
    assert reasons["p-add_3"] == ("insecure_code", "js-eval-dynamic")
    assert reasons["p-evens"][0] == "translation_mismatch" and reasons["p-rev"][0] == "js_error"
    assert out.kept == [] and out.stats["js_code_shield"] == "semgrep"


@pytest.mark.skipif(NO_NODE is not None, reason=f"node: {NO_NODE}")
def test_js_references_agree_with_the_python_references_in_node():
    """The JavaScript source side of JS → Python is right: each template's JS passes the Python reference's cases."""
    probs = make_code_problems(40, seed=3)
    assert {p.entry_point.rstrip("0123456789").rstrip("_") for p in probs} >= {
        "add",
        "largest",
        "evens",
        "reverse_text",
    }
    for p in probs:
        r = run_node(js_test_program(p.js_reference, p.entry_point, p.cases))
        assert r.passed, (p.entry_point, r.stderr)


def test_lint_and_sandbox_reasons():
    assert lint("def f(x):\n    return x\n") is None
    assert "undefined name" in lint("def f(x):\n    return y\n").lower()
    assert "syntax" in lint("def f(x)\n    return x\n").lower()
    limits = Limits(cpu_s=1, wall_s=10)
    assert run_tests("def f(x):\n    return x\n", ["assert f(1) == 1"], limits) == (None, "")
    why, err = run_tests("def f(x):\n    return 0\n", ["assert f(1) == 1"], limits)
    assert why == "test_failure" and "AssertionError" in err
    assert run_tests("def f(x):\n    while True:\n        pass\n", ["f(1)"], limits)[0] == "timeout"


def test_extract_code_strips_any_fence_tag():
    assert extract_code("x\n```javascript\nfunction f() {}\n```\nbye") == "function f() {}"
    assert extract_code("```python\ndef f():\n    pass\n```") == "def f():\n    pass"
    assert extract_code("def f(): pass") == "def f(): pass"


def test_generated_problems_tests_pass_on_their_reference_in_the_sandbox():
    probs = make_code_problems(10, seed=5)
    assert len({p.entry_point for p in probs}) == 10
    for p in probs:
        assert run_tests(p.reference, p.tests, Limits(cpu_s=2, wall_s=10)) == (None, "")
        assert len(p.shown) == 2 and len(p.hidden) == 4


@pytest.mark.skipif(NO_NODE is not None, reason=f"node: {NO_NODE}")
def test_node_sandbox_runs_js_and_refuses_processes_files_and_network():
    p = _problem("add_3", "", [([1], 4), ([2], 5)])
    assert run_node(js_test_program("function add_3(x) { return x + 3; }", "add_3", p.cases)).passed
    bad = run_node(js_test_program("function add_3(x) { return x; }", "add_3", p.cases))
    assert bad.status == "failed" and "expected 4" in bad.stderr
    assert "ChildProcess" in run_node("require('child_process').execSync('id')").stderr
    assert "FileSystemRead" in run_node("require('fs').readFileSync('/etc/hostname')").stderr
    net = run_node("fetch('http://127.0.0.1:9').then(() => 0, e => { console.error(e.cause.code); process.exit(3) })")
    assert net.returncode == 3 and "landlock-fs" in net.protections and "netns" in net.protections


def test_eval_mbpp_chat_pass_at_1(tmp_path, chat, model, monkeypatch):
    from herd.eval.data import have_olmo

    if not have_olmo():
        pytest.skip("MBPP data (herd.eval.data) not on this machine")
    from herd.posttrain.capabilities.code_problems import mbpp_problems

    cap = get_capability("code", {"eval_items": 4, "eval_generated": 0})
    refs = {p.entry_point: p.reference for p in mbpp_problems(0, 4)}

    # The reference for the first two problems, nothing for the rest: pass@1 = 0.5.
    def answer(m, c, prompts, k, **kw):
        out = []
        for i, msgs in enumerate(prompts):
            name = next(n for n in refs if f"{n}(" in msgs[-1]["content"])
            out.append([_fence(refs[name]) if i < 2 else "no"])
        return out

    monkeypatch.setattr(cap, "sampler", answer)
    policy = save_model(model, tmp_path / "policy", None)
    r = cap.evaluate(policy, CapabilityContext(policy=policy, chat=chat, bundle=tmp_path))
    assert r["metric"] == "mbpp_chat_pass@1" and r["n"] == 4 and r["value"] == pytest.approx(0.5)
    assert min(int(p.id.split("-")[1]) for p in mbpp_problems(0, 4)) == 11  # eval ids sit below the train pool
