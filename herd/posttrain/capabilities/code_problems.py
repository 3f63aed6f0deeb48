"""Code problems with unit tests for the code pipeline [P §4.3.1]: generated short functions, and MBPP.

Generated problems pair a one-line spec with a reference implementation; the tests are produced by
running the reference on random inputs (the shown tests go in the prompt, the rest stay hidden), and the
same input/output pairs, as JSON, test a JavaScript translation. Each template also has a herd-written
JavaScript reference (checked by running it with Node on the cases in the unit tests), the source side of
JavaScript → Python translation, whose Python is checked by the same asserts. MBPP problems come from herd's eval data
(the test split, task ids 11–510, the only split the bundled data holds): the eval takes the lowest
ids, training takes ids from `MBPP_TRAIN_FROM` up, so the two never share a problem.
"""

from __future__ import annotations

import json
import random
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

MBPP_TRAIN_FROM = 311  # MBPP task ids >= this are training problems; eval subsets stay below it


@dataclass
class CodeProblem:
    id: str
    text: str  # what to write
    entry_point: str
    shown: list[str]  # asserts shown in the prompt
    hidden: list[str] = field(default_factory=list)  # more asserts, run but not shown
    reference: str = ""  # a correct solution (for translation and backtranslation)
    cases: list[tuple[list[Any], Any]] = field(default_factory=list)  # (args, result) as JSON values
    js_reference: str = ""  # the same function in JavaScript (generated problems only)

    @property
    def tests(self) -> list[str]:
        return [*self.shown, *self.hidden]


# name, spec, reference source (formatted with the template's constant), inputs
Template = tuple[str, str, str, Callable[[random.Random], list[Any]]]


def _ints(rng: random.Random) -> list[Any]:
    return [rng.randint(-50, 50)]


def _int_list(rng: random.Random) -> list[Any]:
    return [[rng.randint(-20, 20) for _ in range(rng.randint(1, 6))]]


def _word(rng: random.Random) -> list[Any]:
    return ["".join(rng.choice("abcde") for _ in range(rng.randint(0, 8)))]


TEMPLATES: list[Template] = [
    ("add_{k}", "returns x plus {k}", "def add_{k}(x):\n    return x + {k}\n", _ints),
    ("times_{k}", "returns x multiplied by {k}", "def times_{k}(x):\n    return x * {k}\n", _ints),
    ("is_multiple_of_{k}", "returns True if x is divisible by {k}, else False",
     "def is_multiple_of_{k}(x):\n    return x % {k} == 0\n", _ints),
    ("count_above_{k}", "returns how many numbers in the list xs are greater than {k}",
     "def count_above_{k}(xs):\n    return sum(1 for v in xs if v > {k})\n", _int_list),
    ("sum_of_squares", "returns the sum of the squares of the numbers in the list xs",
     "def sum_of_squares(xs):\n    return sum(v * v for v in xs)\n", _int_list),
    ("largest", "returns the largest number in the non-empty list xs",
     "def largest(xs):\n    best = xs[0]\n    for v in xs:\n        if v > best:\n            best = v\n"
     "    return best\n",
     _int_list),
    ("evens", "returns a list of the even numbers of the list xs, in order",
     "def evens(xs):\n    return [v for v in xs if v % 2 == 0]\n", _int_list),
    ("count_letter_{c}", "returns how many times the letter '{c}' appears in the string s",
     "def count_letter_{c}(s):\n    return s.count('{c}')\n", _word),
    ("reverse_text", "returns the string s reversed", "def reverse_text(s):\n    return s[::-1]\n", _word),
    ("clamp_{k}", "returns x limited to the range -{k}..{k}",
     "def clamp_{k}(x):\n    return max(-{k}, min({k}, x))\n", _ints),
]  # fmt: skip


# The templates' functions in JavaScript, same names and semantics (filled in like the Python: braces doubled).
JS_REFERENCES: dict[str, str] = {
    "add_{k}": "function add_{k}(x) {{\n  return x + {k};\n}}\n",
    "times_{k}": "function times_{k}(x) {{\n  return x * {k};\n}}\n",
    "is_multiple_of_{k}": "function is_multiple_of_{k}(x) {{\n  return x % {k} === 0;\n}}\n",
    "count_above_{k}": "function count_above_{k}(xs) {{\n  return xs.filter((v) => v > {k}).length;\n}}\n",
    "sum_of_squares": "function sum_of_squares(xs) {{\n  return xs.reduce((t, v) => t + v * v, 0);\n}}\n",
    "largest": "function largest(xs) {{\n  let best = xs[0];\n  for (const v of xs) {{\n    if (v > best) best = v;\n"
    "  }}\n  return best;\n}}\n",
    "evens": "function evens(xs) {{\n  return xs.filter((v) => v % 2 === 0);\n}}\n",
    "count_letter_{c}": "function count_letter_{c}(s) {{\n  return s.split('{c}').length - 1;\n}}\n",
    "reverse_text": "function reverse_text(s) {{\n  return s.split('').reverse().join('');\n}}\n",
    "clamp_{k}": "function clamp_{k}(x) {{\n  return Math.max(-{k}, Math.min({k}, x));\n}}\n",
}


def _case_assert(name: str, args: list[Any], result: Any) -> str:
    return f"assert {name}({', '.join(repr(a) for a in args)}) == {result!r}"


def make_code_problems(n: int, seed: int, shown: int = 2, hidden: int = 4) -> list[CodeProblem]:
    """`n` generated problems; tests come from running the (trusted, herd-written) reference."""
    rng = random.Random(seed)
    out, seen = [], set()
    for _ in range(n * 20):
        if len(out) == n:
            break
        name, spec, ref, gen = TEMPLATES[rng.randrange(len(TEMPLATES))]
        fill = {"k": rng.randint(2, 9), "c": rng.choice("abcde")}
        js = JS_REFERENCES[name].format(**fill)
        name, spec, ref = name.format(**fill), spec.format(**fill), ref.format(**fill)
        if name in seen:
            continue
        seen.add(name)
        scope: dict[str, Any] = {}
        exec(ref, scope)  # herd's own reference code, not model output
        cases = []
        for _ in range(shown + hidden):
            args = gen(rng)
            cases.append((args, json.loads(json.dumps(scope[name](*args)))))
        asserts = [_case_assert(name, a, r) for a, r in cases]
        text = f"Write a Python function `{name}` that {spec}."
        pid = f"gen-{seed}-{len(out)}"
        out.append(CodeProblem(pid, text, name, asserts[:shown], asserts[shown:], ref, cases, js))
    return out


def mbpp_problems(first_id: int, n: int) -> list[CodeProblem]:
    """MBPP problems with task id >= first_id (the given tests shown; the challenge tests, where present, hidden)."""
    from herd.eval.data import read_requests

    out = []
    for d in read_requests("codex_mbpp/gold_bpb_0shot"):
        if int(d["task_id"]) < first_id:
            continue
        setup = d.get("test_setup_code") or ""
        shown = [f"{setup}\n{t}".strip() if setup else t for t in d["test_list"]]
        entry = d["test_list"][0].removeprefix("assert ").split("(")[0].strip()
        ref = d["code"].replace("\r\n", "\n")
        out.append(
            CodeProblem(f"mbpp-{d['task_id']}", d["text"], entry, shown, list(d.get("challenge_test_list") or []), ref)
        )
        if len(out) == n:
            break
    return out


def js_test_program(js: str, entry_point: str, cases: list[tuple[list[Any], Any]]) -> str:
    """The model's JavaScript, then each case compared as JSON (so lists, strings, numbers and booleans match)."""
    checks = "\n".join(f"check({json.dumps(args)}, {json.dumps(result)});" for args, result in cases)
    return (
        f"{js}\n\n"
        "function check(args, want) {\n"
        f"  const got = {entry_point}(...args);\n"
        "  if (JSON.stringify(got) !== JSON.stringify(want)) {\n"
        f"    console.error(`{entry_point}(${{JSON.stringify(args).slice(1, -1)}}) returned ${{JSON.stringify(got)}}, "
        "expected ${JSON.stringify(want)}`);\n"
        "    process.exit(1);\n  }\n}\n"
        f"{checks}\n"
    )
