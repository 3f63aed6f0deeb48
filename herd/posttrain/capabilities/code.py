"""Code data with execution feedback, translation and backtranslation [P §4.3.1].

Execution feedback: for each problem (generated short functions and MBPP training problems,
herd.posttrain.capabilities.code_problems) the policy writes K solutions. Each is linted (ruff's pyflakes
rules F and syntax errors E9) and run in herd's sandbox against the shown and the hidden unit tests. A
failing solution gets one self-correction turn that shows the error; only dialogs whose final code
passes are kept (the corrected ones as the whole dialog: attempt, error, fix). Dropped reasons:
no_code, lint_error, insecure_code, test_failure, timeout, blocked, memory, duplicate, enough_for_problem.
insecure_code: bandit (herd.sandbox.code_scan, Code Shield's core [P §5.4.7]) flags the solution at severity
MEDIUM or above; it is dropped before it runs and gets no correction turn, so no kept dialog holds it.

Translation: the reference Python of each generated problem is translated into JavaScript by the policy
and run with Node.js (herd.posttrain.capabilities.code_node) on the same cases (dropped: no_code,
js_error, translation_mismatch, timeout, and insecure_code when herd's semgrep rules flag the JavaScript,
checked before it runs). Skipped, with the reason in the counts, where Node is missing.
The reverse direction, JavaScript → Python: the policy translates each generated problem's herd-written
JavaScript reference, and the Python is linted and run in herd's sandbox against the problem's asserts
(dropped: no_code, lint_error, translation_mismatch (an assert failed), py_error (it raised or did not
define the function), timeout, blocked, memory). It needs no Node: the checked side is Python.

Backtranslation: a passing solution is explained by the policy, the explanation turned back into code,
and the explanation dialog kept only when the regenerated code passes the tests (correct, by running)
and the judge rates it well-written (its 2-point code-quality digit), 2/2 (dropped:
backtranslation_incorrect, backtranslation_style).

The evaluation is MBPP pass@1 on problems never used for training (task ids below MBPP_TRAIN_FROM),
prompted in the chat format the data is written in, scored by herd.eval's code harness, plus the same on
held-out generated problems.
"""

from __future__ import annotations

import random
import subprocess
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from herd.core.logging import get_logger
from herd.eval.harness import code_from_output, evaluate_code
from herd.eval.tasks import CodeExample, Task
from herd.posttrain.capabilities.base import Capability, CapabilityContext, Outputs, register, sample_replies
from herd.posttrain.capabilities.code_node import node_available, run_node
from herd.posttrain.capabilities.code_problems import (
    MBPP_TRAIN_FROM,
    CodeProblem,
    js_test_program,
    make_code_problems,
    mbpp_problems,
)
from herd.sandbox import Limits, run_python
from herd.sandbox.code_scan import Snippet, bandit_available, drop_reasons, semgrep_binary

log = get_logger(__name__)
EVAL_SEED = 7919  # held-out generated problems
Sampler = Callable[..., list[list[str]]]


@dataclass
class CodeConfig:
    generated: int = 24  # generated short-function problems per round
    mbpp: int = 16  # MBPP training problems per round (task ids >= MBPP_TRAIN_FROM)
    k: int = 4  # solutions per problem
    max_new_tokens: int = 192
    temperature: float = 0.8
    top_p: float = 0.95
    self_correction: bool = True
    max_per_problem: int = 2
    translate: int = 12  # generated problems whose reference is translated to JavaScript (0 = off)
    translate_to_python: int = 12  # generated problems whose JavaScript reference is translated to Python (0 = off)
    backtranslate: int = 8  # passing solutions sent through code → explanation → code (0 = off)
    cpu_s: int = 5
    wall_s: float = 15.0
    eval_items: int = 60  # MBPP eval problems (task ids 11 upward)
    eval_generated: int = 40  # held-out generated problems
    eval_max_new_tokens: int = 192


def solve_prompt(p: CodeProblem) -> list[dict[str, str]]:
    tests = "\n".join(p.shown)
    return [{"role": "user", "content": f"{p.text}\nYour code should pass these tests:\n{tests}\n"
             "Reply with only the Python function in a ```python code block."}]  # fmt: skip


def correction_turn(error: str) -> dict[str, str]:
    return {"role": "user", "content": f"Your code fails with this error:\n{error}\n"
            "Fix it and reply with the whole corrected function in a ```python code block."}  # fmt: skip


def extract_code(reply: str) -> str:
    """The fenced block if there is one (any language tag), else the reply."""
    code = code_from_output(reply)
    if "```" in reply and code.split("\n", 1)[0].strip().isalpha():  # a tag code_from_output did not strip
        code = code.split("\n", 1)[1] if "\n" in code else ""
    return code.strip("\n")


def lint(code: str) -> str | None:
    """ruff's pyflakes (F) and syntax (E9) findings, one per line; None when clean."""
    ruff = Path(sys.executable).with_name("ruff")
    cmd = [str(ruff) if ruff.is_file() else "ruff", "check", "--select", "F,E9", "--output-format", "concise",
           "--no-cache", "--isolated", "--stdin-filename", "solution.py", "-"]  # fmt: skip
    r = subprocess.run(cmd, input=code, capture_output=True, text=True, timeout=30)
    found = [ln.split(":", 3)[-1].strip() for ln in r.stdout.splitlines() if ln.startswith("solution.py:")]
    if r.returncode not in (0, 1):
        raise RuntimeError(f"ruff failed: {r.stderr.strip()[:300]}")
    return "\n".join(f"line {ln.split(':')[1]}: {msg}" for ln, msg in zip(
        [x for x in r.stdout.splitlines() if x.startswith("solution.py:")], found)) or None  # fmt: skip


_STATUS = {"timeout": "timeout", "killed": "timeout", "blocked": "blocked", "memory": "memory"}


def run_tests(code: str, tests: Sequence[str], limits: Limits) -> tuple[str | None, str]:
    """(None, "") when every test passes in the sandbox; else (reason, the error's last lines)."""
    r = run_python(f"{code}\n\n" + "\n".join(tests) + "\n", limits)
    if r.passed:
        return None, ""
    lines = [ln for ln in r.stderr.strip().splitlines() if ln.strip()]
    return _STATUS.get(r.status, "test_failure"), "\n".join(lines[-3:])[-400:] or r.status


def check_solution(code: str, tests: Sequence[str], limits: Limits) -> tuple[str | None, str]:
    if not code.strip():
        return "no_code", ""
    if found := lint(code):
        return "lint_error", found
    # Passing tests does not make code safe to train on: insecure solutions never run and are dropped.
    if bandit_available() and (rules := drop_reasons([Snippet("python", code)], semgrep=False)[0]):
        return "insecure_code", rules
    return run_tests(code, tests, limits)


@register
class CodeCapability(Capability):
    name = "code"
    category = "code"
    Config = CodeConfig

    sampler: Sampler = staticmethod(sample_replies)  # tests plant a scripted generator here
    judge_style: Callable[[Any, Any, list[dict[str, Any]]], list[int]] | None = None  # tests plant a judge

    def _sample(self, model: Any, chat: Any, prompts: list[list[dict[str, str]]], k: int, seed: int) -> list[list[str]]:
        c: CodeConfig = self.config
        if not prompts:
            return []
        return self.sampler(model, chat, prompts, k=k, max_new_tokens=c.max_new_tokens, temperature=c.temperature,
                            top_p=c.top_p, seed=seed)  # fmt: skip

    def problems(self, ctx: CapabilityContext) -> list[CodeProblem]:
        c: CodeConfig = self.config
        gen = make_code_problems(c.generated, seed=ctx.seed * 1000 + ctx.round)
        held = {p.entry_point for p in make_code_problems(c.eval_generated, EVAL_SEED)}
        gen = [p for p in gen if p.entry_point not in held]  # same function name = same task as a held-out one
        mbpp: list[CodeProblem] = []
        if c.mbpp:
            pool = mbpp_problems(MBPP_TRAIN_FROM, 10_000)
            mbpp = random.Random(ctx.seed * 1000 + ctx.round).sample(pool, min(c.mbpp, len(pool)))
        return gen + mbpp

    def generate(self, ctx: CapabilityContext) -> Outputs:
        from herd.model import load_model

        model = load_model(ctx.policy).eval()
        problems = self.problems(ctx)
        out = Outputs()
        passing = self.execution_feedback(problems, model, ctx, out)
        self.translation(problems, model, ctx, out)
        self.translation_to_python(problems, model, ctx, out)
        self.backtranslation(passing, model, ctx, out)
        return out

    # ------------------------------------------------------------------ execution feedback
    def execution_feedback(
        self, problems: Sequence[CodeProblem], model: Any, ctx: CapabilityContext, out: Outputs
    ) -> list[tuple[CodeProblem, str]]:
        c: CodeConfig = self.config
        limits = Limits(cpu_s=c.cpu_s, wall_s=c.wall_s)
        replies = self._sample(model, ctx.chat, [solve_prompt(p) for p in problems], c.k, ctx.seed)
        first: list[tuple[CodeProblem, str, str | None, str]] = []
        for p, rs in zip(problems, replies):
            for r in rs:
                first.append((p, r, *check_solution(extract_code(r), p.tests, limits)))
        # No correction turn for insecure code: the kept dialog would carry the insecure attempt.
        failed = [i for i, (_, _, why, _) in enumerate(first) if why not in (None, "no_code", "insecure_code")]
        fix_at: dict[int, str] = {}
        if c.self_correction and failed:
            prompts = [[*solve_prompt(p), {"role": "assistant", "content": r}, correction_turn(err or str(why))]
                       for p, r, why, err in (first[i] for i in failed)]  # fmt: skip
            fix_at = dict(zip(failed, (f[0] for f in self._sample(model, ctx.chat, prompts, 1, ctx.seed + 1))))
        kept_code: dict[str, list[str]] = {}
        passing: list[tuple[CodeProblem, str]] = []
        n_fixed = 0
        for i, (p, r, why, err) in enumerate(first):
            row: dict[str, Any] = {"messages": [*solve_prompt(p), {"role": "assistant", "content": r}],
                                   "source": "code-exec", "problem_id": p.id}  # fmt: skip
            code = extract_code(r)
            if i in fix_at:  # one self-correction turn: the whole dialog is what is kept or dropped
                fix = fix_at[i]
                row["messages"] += [correction_turn(err or str(why)), {"role": "assistant", "content": fix}]
                fwhy, ferr = check_solution(extract_code(fix), p.tests, limits)
                if fwhy is not None:
                    out.drop(row, fwhy, error=ferr, first_reason=why, first_error=err)
                    continue
                code, why, err, row["fixed_by_correction"] = extract_code(fix), None, "", True
                n_fixed += 1
            if why is not None:
                out.drop(row, why, error=err)
            elif code.strip() in kept_code.setdefault(p.id, []):
                out.drop(row, "duplicate")
            elif len(kept_code[p.id]) >= c.max_per_problem:
                out.drop(row, "enough_for_problem")
            else:
                kept_code[p.id].append(code.strip())
                out.kept.append(row)
                passing.append((p, code))
        n_first_pass = sum(why is None for _, _, why, _ in first)
        out.stats.update(
            problems=len(problems), k=c.k, solutions=len(first), first_attempt_passed=n_first_pass,
            first_attempt_failed=len(failed), fixed_by_correction=n_fixed,
            share_fixed_by_correction=n_fixed / len(failed) if failed else 0.0,
            share_of_passing_fixed=n_fixed / max(1, n_first_pass + n_fixed),
            code_shield="bandit" if bandit_available() else "skipped: bandit not installed",
        )  # fmt: skip
        return passing

    # ------------------------------------------------------------------ translation (Python → JavaScript)
    def translation(self, problems: Sequence[CodeProblem], model: Any, ctx: CapabilityContext, out: Outputs) -> None:
        c: CodeConfig = self.config
        todo = [p for p in problems if p.cases][: c.translate]
        if not todo:
            return
        if (why := node_available()) is not None:
            out.stats["translation"] = f"skipped: {why}"
            log.warning("code translation skipped: %s", why)
            return
        replies = self._sample(model, ctx.chat, [translate_prompt(p) for p in todo], 1, ctx.seed + 2)
        # One semgrep run over every translation (its start-up is most of its cost).
        js_code = [Snippet("javascript", extract_code(r)) for (r,) in replies]
        flags = drop_reasons(js_code) if semgrep_binary() else [None] * len(js_code)
        n_kept = 0
        for p, (reply,), flagged in zip(todo, replies, flags):
            row = {"messages": [*translate_prompt(p), {"role": "assistant", "content": reply}],
                   "source": "code-translation", "problem_id": p.id, "language": "javascript"}  # fmt: skip
            js = extract_code(reply)
            if not js.strip():
                out.drop(row, "no_code")
                continue
            if flagged:
                out.drop(row, "insecure_code", error=flagged)
                continue
            r = run_node(js_test_program(js, p.entry_point, p.cases), Limits(cpu_s=c.cpu_s, wall_s=c.wall_s))
            err = "\n".join(r.stderr.strip().splitlines()[-3:])[-400:]
            if r.passed:
                out.kept.append(row)
                n_kept += 1
            elif r.status in ("timeout", "killed"):
                out.drop(row, "timeout")
            else:
                out.drop(
                    row, "translation_mismatch" if "expected" in err and "returned" in err else "js_error", error=err
                )
        shield = "semgrep" if semgrep_binary() else "skipped: semgrep not installed"
        out.stats.update(translation=f"node ({len(todo)} problems)", translations_kept=n_kept, js_code_shield=shield)

    # ------------------------------------------------------------------ translation (JavaScript → Python)
    def translation_to_python(
        self, problems: Sequence[CodeProblem], model: Any, ctx: CapabilityContext, out: Outputs
    ) -> None:
        """Translate herd's JavaScript reference to Python; kept when the Python lints clean and passes the asserts."""
        c: CodeConfig = self.config
        todo = [p for p in problems if p.js_reference][: c.translate_to_python]
        if not todo:
            return
        replies = self._sample(model, ctx.chat, [to_python_prompt(p) for p in todo], 1, ctx.seed + 5)
        limits, n_kept = Limits(cpu_s=c.cpu_s, wall_s=c.wall_s), 0
        for p, (reply,) in zip(todo, replies):
            row = {"messages": [*to_python_prompt(p), {"role": "assistant", "content": reply}],
                   "source": "code-translation", "problem_id": p.id, "language": "python",
                   "from_language": "javascript"}  # fmt: skip
            why, err = check_solution(extract_code(reply), p.tests, limits)
            if why is None:
                out.kept.append(row)
                n_kept += 1
            elif why == "test_failure":  # an assert that fails is a wrong translation; anything else is an error
                out.drop(row, "translation_mismatch" if "AssertionError" in err else "py_error", error=err)
            else:
                out.drop(row, why, error=err)
        out.stats.update(translations_to_python=len(todo), translations_to_python_kept=n_kept)

    # ------------------------------------------------------------------ backtranslation
    def backtranslation(
        self, passing: Sequence[tuple[CodeProblem, str]], model: Any, ctx: CapabilityContext, out: Outputs
    ) -> None:
        """code → explanation → code; keep the explanation when the new code passes and the judge rates it 1/1."""
        c: CodeConfig = self.config
        seen: set[str] = set()
        todo = [(p, code) for p, code in passing if not (p.id in seen or seen.add(p.id))][: c.backtranslate]
        if not todo:
            return
        explain = [explain_prompt(code) for _, code in todo]
        explanations = [e[0] for e in self._sample(model, ctx.chat, explain, 1, ctx.seed + 3)]
        back = [rewrite_prompt(p, e) for (p, _), e in zip(todo, explanations)]
        rewrites = [r[0] for r in self._sample(model, ctx.chat, back, 1, ctx.seed + 4)]
        limits = Limits(cpu_s=c.cpu_s, wall_s=c.wall_s)
        rows = [{"messages": [*b, {"role": "assistant", "content": r}]} for b, r in zip(back, rewrites)]
        style = self._judge(model, ctx.chat, rows)
        for (p, _), q, e, r, good in zip(todo, explain, explanations, rewrites, style):
            row = {"messages": [*q, {"role": "assistant", "content": e}], "source": "code-backtranslation",
                   "problem_id": p.id, "rewritten": r}  # fmt: skip
            why, err = check_solution(extract_code(r), p.tests, limits)
            if why is not None:
                out.drop(row, "backtranslation_incorrect", check=why, error=err)
            elif not good:
                out.drop(row, "backtranslation_style")
            else:
                out.kept.append(row)

    def _judge(self, model: Any, chat: Any, rows: list[dict[str, Any]]) -> list[int]:
        """The judge's code-quality digit (1 = no bugs, does what was asked) per dialog, from the policy itself."""
        if self.judge_style is not None:
            return self.judge_style(model, chat, rows)
        from herd.judge import LMJudge

        # The most likely digit, not rank bins: bins would pass half of any sample by construction.
        return LMJudge(model, chat, rank_labels=False).quality(rows, [True] * len(rows))

    # ------------------------------------------------------------------ evaluation
    def evaluate(self, model_dir: Path, ctx: CapabilityContext) -> dict[str, Any]:
        """MBPP pass@1 (chat prompts, greedy) on task ids below MBPP_TRAIN_FROM, and held-out generated problems."""
        from herd.model import load_model

        c: CodeConfig = self.config
        model = load_model(model_dir).eval()
        mbpp = mbpp_problems(0, min(c.eval_items, MBPP_TRAIN_FROM - 11)) if c.eval_items else []
        result = self._pass_at_1("mbpp_chat", mbpp, model, ctx)
        if c.eval_generated:
            result["generated"] = self._pass_at_1("generated_code", make_code_problems(c.eval_generated, EVAL_SEED),
                                                  model, ctx)  # fmt: skip
            if not mbpp:
                result = {**result["generated"], "generated": result["generated"]}
        return result

    def _pass_at_1(self, name: str, problems: list[CodeProblem], model: Any, ctx: CapabilityContext) -> dict[str, Any]:
        if not problems:
            return {"metric": f"{name}_pass@1", "value": 0.0, "ci95": 0.0, "n": 0}
        c: CodeConfig = self.config
        replies = self.sampler(model, ctx.chat, [solve_prompt(p) for p in problems], k=1,
                               max_new_tokens=c.eval_max_new_tokens, seed=ctx.seed)  # fmt: skip
        examples = [CodeExample(p.id, "", "\n".join(p.tests), prompt_is_code=False) for p in problems]
        task = Task(name, "code", examples, metric="pass@1")
        completions = [[extract_code(r[0])] for r in replies]
        res = evaluate_code(task, None, completions=completions, limits=Limits(cpu_s=c.cpu_s, wall_s=c.wall_s))
        return {"metric": f"{name}_pass@1", "value": res.score, "ci95": res.ci, "n": res.n}


def translate_prompt(p: CodeProblem) -> list[dict[str, str]]:
    return [{"role": "user", "content": f"Translate this Python function to JavaScript. Keep the name "
             f"`{p.entry_point}`.\n```python\n{p.reference}```\nReply with only the JavaScript code in a "
             "```javascript code block."}]  # fmt: skip


def to_python_prompt(p: CodeProblem) -> list[dict[str, str]]:
    return [{"role": "user", "content": f"Translate this JavaScript function to Python. Keep the name "
             f"`{p.entry_point}`.\n```javascript\n{p.js_reference}```\nReply with only the Python function in a "
             "```python code block."}]  # fmt: skip


def explain_prompt(code: str) -> list[dict[str, str]]:
    return [{"role": "user", "content": f"Explain in plain words what this Python function does.\n```python\n"
             f"{code}\n```"}]  # fmt: skip


def rewrite_prompt(p: CodeProblem, explanation: str) -> list[dict[str, str]]:
    return [{"role": "user", "content": f"Write a Python function `{p.entry_point}` that does this:\n"
             f"{explanation}\nReply with only the Python function in a ```python code block."}]  # fmt: skip
