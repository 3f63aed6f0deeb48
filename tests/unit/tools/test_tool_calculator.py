"""The sympy calculator: exact answers checked against Python's integers and by substitution; unsafe
input refused before sympy evaluates anything."""

from __future__ import annotations

import pytest
import sympy
from hypothesis import given, settings
from hypothesis import strategies as st

from herd.tools.calculator import CalculatorError, calculate


@settings(max_examples=40, deadline=None)
@given(st.integers(-999, 999), st.integers(-999, 999), st.integers(0, 999))
def test_arithmetic_equals_python(a, b, c):
    assert calculate(f"{a} * ({b}) + {c}").value == a * b + c


@settings(max_examples=25, deadline=None)
@given(st.integers(1, 9), st.integers(-50, 50), st.integers(-30, 30))
def test_solved_equation_satisfies_it(a, b, x):
    r = calculate(f"{a}x + {b} = {a * x + b}")
    assert r.value == [x] and r.text == f"x = {x}"


@pytest.mark.parametrize(
    ("query", "text"),
    [("2^10", "1024"), ("What is 12*12?", "144"), ("factor(x**2 - 1)", "(x - 1)*(x + 1)"),
     ("solve x**2 - 4 = 0 for x", "x = -2, x = 2"), ("7/2", "7/2 ≈ 3.5"), ("integrate(x**2, (x, 0, 3))", "9")],
)  # fmt: skip
def test_forms(query, text):
    assert calculate(query).text == text


def test_irrational_gets_its_decimal():
    r = calculate("sqrt(8)")
    assert r.value == 2 * sympy.sqrt(2) and r.text.endswith("2.828427125")


@pytest.mark.parametrize(
    "query",
    ["__import__('os').system('true')", "open('/etc/passwd')", "x.__class__", "(1).__class__.__bases__",
     "[c for c in (1, 2)]", "9**9**9", "2**100000", "factorial(10**6)", "getattr(x, 'y')", "1 +", ""],
)  # fmt: skip
def test_unsafe_or_bad_input_is_refused(query):
    with pytest.raises(CalculatorError):
        calculate(query)
