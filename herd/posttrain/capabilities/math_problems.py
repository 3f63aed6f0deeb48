"""Generated multi-step math problems with answers checked by sympy [P §4.3.3].

The paper's math data starts from problems with known answers (it lists the lack of such prompts as
the first challenge). At this scale herd writes its own: arithmetic word problems of one to three
steps and linear equations, each with a sympy expression (or equation) that fixes the answer. A
problem is a plain dict so it can travel in JSONL rows:

    {"id": "arith-0-17", "kind": "arith", "question": "...", "expr": "5 + 3*4 - 2", "answer": "15"}
"""

from __future__ import annotations

import random
from collections.abc import Callable
from typing import Any

import sympy

NAMES = ["Tom", "Ana", "Sam", "Lena", "Omar", "Mia", "Ravi", "Kate", "Li", "Noah"]
ITEMS = ["apples", "stickers", "marbles", "books", "pencils", "cards", "shells", "coins"]
Problem = dict[str, Any]


def _arith1(rng: random.Random) -> tuple[str, str]:
    n, it = rng.choice(NAMES), rng.choice(ITEMS)
    a, b = rng.randint(2, 40), rng.randint(2, 30)
    if rng.random() < 0.5:
        return f"{n} has {a} {it}. {n} gets {b} more {it}. How many {it} does {n} have now?", f"{a} + {b}"
    a += b
    return f"{n} has {a} {it} and gives {b} of them away. How many {it} does {n} have left?", f"{a} - {b}"


def _arith2(rng: random.Random) -> tuple[str, str]:
    n, it = rng.choice(NAMES), rng.choice(ITEMS)
    a, b, c = rng.randint(2, 20), rng.randint(2, 6), rng.randint(2, 9)
    q = f"{n} has {a} {it}. {n} buys {b} packs with {c} {it} in each pack. How many {it} does {n} have now?"
    return q, f"{a} + {b}*{c}"


def _arith3(rng: random.Random) -> tuple[str, str]:
    n, it = rng.choice(NAMES), rng.choice(ITEMS)
    b, c = rng.randint(2, 6), rng.randint(2, 9)
    a, d = rng.randint(2, 20), rng.randint(1, 10)
    q = (
        f"{n} has {a} {it}. {n} buys {b} packs with {c} {it} in each pack, then gives {d} {it} to a friend. "
        f"How many {it} does {n} have now?"
    )
    return q, f"{a} + {b}*{c} - {d}"


def _change(rng: random.Random) -> tuple[str, str]:
    n = rng.choice(NAMES)
    price, count = rng.randint(2, 9), rng.randint(2, 5)
    paid = price * count + rng.randint(1, 20)
    q = f"A pen costs {price} dollars. {n} buys {count} pens and pays with {paid} dollars. "
    q += f"How much change does {n} get?"
    return q, f"{paid} - {price}*{count}"


def _linear(rng: random.Random) -> tuple[str, str]:
    a, x, b = rng.randint(2, 9), rng.randint(-10, 15), rng.randint(1, 30)
    return f"Solve for x: {a}x + {b} = {a * x + b}.", f"Eq({a}*x + {b}, {a * x + b})"


KINDS: dict[str, Callable[[random.Random], tuple[str, str]]] = {
    "arith1": _arith1,
    "arith2": _arith2,
    "arith3": _arith3,
    "change": _change,
    "linear": _linear,
}


def solve(expr: str) -> sympy.Rational:
    """The exact answer: an arithmetic expression's value, or the one solution of an equation in x."""
    parsed = sympy.sympify(expr, rational=True)
    if isinstance(parsed, sympy.Equality):
        sols = sympy.solve(parsed, sympy.Symbol("x"))
        if len(sols) != 1:
            raise ValueError(f"{expr}: expected one solution, got {sols}")
        parsed = sols[0]
    if not parsed.is_Rational:
        raise ValueError(f"{expr}: not a rational number ({parsed})")
    return parsed


def make_problems(n: int, kinds: list[str], seed: int, exclude: set[str] = frozenset()) -> list[Problem]:
    """`n` distinct problems cycling over `kinds`, none whose question is in `exclude` (the held-out set)."""
    unknown = [k for k in kinds if k not in KINDS]
    if unknown:
        raise ValueError(f"math kinds: unknown {unknown}; known: {', '.join(KINDS)}")
    rng = random.Random(seed)
    seen, out = set(exclude), []
    for tries in range(n * 50):
        if len(out) == n:
            break
        kind = kinds[tries % len(kinds)]
        question, expr = KINDS[kind](rng)
        if question in seen:
            continue
        seen.add(question)
        out.append(
            {
                "id": f"{kind}-{seed}-{len(out)}",
                "kind": kind,
                "question": question,
                "expr": expr,
                "answer": str(solve(expr)),
            }
        )
    return out


def answers_match(pred: str | None, gold: str) -> bool:
    """Exact comparison of two numbers as sympy rationals ('4.50' == '9/2'); False if either is not a number."""
    if pred is None:
        return False
    try:
        return sympy.nsimplify(sympy.sympify(pred.replace(",", ""), rational=True) - sympy.Rational(gold)) == 0
    except (sympy.SympifyError, TypeError, ValueError, SyntaxError):
        return False
