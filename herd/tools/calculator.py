"""The calculator/algebra tool (the paper's Wolfram Alpha role [P §4.3.5]) on sympy.

Input is an expression ("37*48 + 12", "2^10", "sqrt(2)*3"), an equation ("3x + 7 = 22", solved for its
symbols) or a call of a whitelisted sympy function ("factor(x**2 - 1)", "solve(x**2 - 4, x)").

sympy's `parse_expr` ends in `eval`, so the text is first transformed by sympy's own tokenizer
(`stringify_expr`) and the resulting code is checked node by node: only arithmetic, numbers, symbols and
calls of the names below pass; attributes, subscripts, lambdas, comprehensions and strings outside
`Symbol('x')` are refused. Integer powers and factorials are bounded so that "9**9**9" is refused instead
of hanging the caller.
"""

from __future__ import annotations

import ast
import re
from dataclasses import dataclass
from tokenize import TokenError
from typing import Any

import sympy
from sympy.parsing.sympy_parser import (
    convert_xor,
    eval_expr,
    implicit_multiplication_application,
    standard_transformations,
    stringify_expr,
)

_TRANSFORMS = (*standard_transformations, implicit_multiplication_application, convert_xor)

# Names the checked code may use: sympy's number and symbol constructors (emitted by its tokenizer) and
# the functions a calculator needs.
_CONSTRUCTORS = ("Integer", "Float", "Rational", "Symbol")
_FUNCTIONS = (
    "sqrt", "root", "exp", "log", "ln", "sin", "cos", "tan", "asin", "acos", "atan", "sinh", "cosh", "tanh",
    "Abs", "floor", "ceiling", "factorial", "binomial", "gcd", "lcm", "isprime", "prime", "primepi",
    "fibonacci", "Min", "Max", "simplify", "expand", "factor", "solve", "diff", "integrate", "limit",
    "summation", "Eq", "N", "mod", "Mod",
)  # fmt: skip
_CONSTANTS = {"pi": sympy.pi, "E": sympy.E, "e": sympy.E, "I": sympy.I, "oo": sympy.oo}
MAX_EXPONENT = 10_000  # "2**10000" has 3,011 digits: fine; a larger literal exponent is refused
MAX_FACTORIAL = 2_000
MAX_CHARS = 500

_OPS = (ast.Add, ast.Sub, ast.Mult, ast.Div, ast.Pow, ast.Mod, ast.FloorDiv, ast.USub, ast.UAdd)


class CalculatorError(ValueError):
    """The input is not a safe expression, or sympy cannot compute it."""


@dataclass(frozen=True)
class CalcResult:
    value: Any  # a sympy object, or a list of solutions
    text: str  # what the tool returns to the model


def _namespace() -> dict[str, Any]:
    names: dict[str, Any] = {n: getattr(sympy, n) for n in (*_CONSTRUCTORS, *_FUNCTIONS) if hasattr(sympy, n)}
    names["ln"], names["mod"] = sympy.log, sympy.Mod
    return {"__builtins__": {}, **names, **_CONSTANTS}


def _int_value(node: ast.AST) -> int | None:
    """The integer a literal node stands for (`Integer (9 )` as sympy writes it), else None."""
    if isinstance(node, ast.Constant) and isinstance(node.value, int):
        return node.value
    if isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id == "Integer" and node.args:
        return _int_value(node.args[0])
    if isinstance(node, ast.UnaryOp) and isinstance(node.op, ast.USub):
        v = _int_value(node.operand)
        return -v if v is not None else None
    if isinstance(node, ast.BinOp) and isinstance(node.op, ast.Pow):
        base, exp = _int_value(node.left), _int_value(node.right)
        if base is not None and exp is not None and 0 <= exp <= MAX_EXPONENT and abs(base) < 10**6:
            return base**exp if abs(base) < 2 or exp < 64 else MAX_EXPONENT + 1
    return None


def _check(node: ast.AST, allowed: set[str]) -> None:
    """Raise CalculatorError on any node outside arithmetic over numbers, symbols and whitelisted calls."""
    if isinstance(node, ast.Expression):
        return _check(node.body, allowed)
    if isinstance(node, ast.BinOp) and isinstance(node.op, _OPS):
        if isinstance(node.op, ast.Pow):
            exp = _int_value(node.right)
            if exp is not None and abs(exp) > MAX_EXPONENT:
                raise CalculatorError(f"exponent too large (over {MAX_EXPONENT})")
            if exp is None and _int_value(node.left) is not None and isinstance(node.right, ast.BinOp):
                raise CalculatorError("nested integer powers are not evaluated")
        _check(node.left, allowed)
        return _check(node.right, allowed)
    if isinstance(node, ast.UnaryOp) and isinstance(node.op, _OPS):
        return _check(node.operand, allowed)
    if isinstance(node, ast.Constant) and isinstance(node.value, (int, float)) and not isinstance(node.value, bool):
        return None
    if isinstance(node, ast.Name) and node.id in allowed:
        return None
    if isinstance(node, (ast.Tuple, ast.List)):
        for elt in node.elts:
            _check(elt, allowed)
        return None
    if isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id in allowed:
        return _check_call(node, allowed)
    raise CalculatorError(f"not allowed in a calculator expression: {ast.dump(node)[:60]}")


def _check_call(node: ast.Call, allowed: set[str]) -> None:
    name = node.func.id  # type: ignore[attr-defined]
    if node.keywords:
        raise CalculatorError(f"{name}(): keyword arguments are not allowed")
    if name in ("Symbol", "Float", "Integer", "Rational"):
        # sympy's tokenizer writes Symbol('x'), Float('1.5'), Integer(3): one literal argument each.
        if not all(isinstance(a, ast.Constant) and isinstance(a.value, (str, int)) for a in node.args):
            raise CalculatorError(f"{name}() takes literals only")
        if name == "Symbol" and not re.fullmatch(r"[A-Za-z]\w{0,15}", str(node.args[0].value)):  # type: ignore[attr-defined]
            raise CalculatorError("bad symbol name")
        return None
    if name in ("factorial", "binomial", "fibonacci", "prime", "primepi"):
        for a in node.args:
            v = _int_value(a)
            if v is not None and abs(v) > MAX_FACTORIAL:
                raise CalculatorError(f"{name}() argument too large (over {MAX_FACTORIAL})")
    for a in node.args:
        _check(a, allowed)
    return None


def parse(expression: str) -> Any:
    """A sympy expression from text, through the checked path; an equation "a = b" becomes Eq(a, b)."""
    text = expression.strip()
    if not text:
        raise CalculatorError("empty expression")
    if len(text) > MAX_CHARS:
        raise CalculatorError(f"expression longer than {MAX_CHARS} characters")
    sides = re.split(r"(?<![<>=!])=(?!=)", text)
    if len(sides) == 2:
        return sympy.Eq(parse(sides[0]), parse(sides[1]))
    if len(sides) > 2:
        raise CalculatorError("more than one '=' in an equation")
    namespace = _namespace()
    local: dict[str, Any] = {}
    try:
        code = stringify_expr(text, local, namespace, _TRANSFORMS)
        tree = ast.parse(code, mode="eval")
    except (SyntaxError, TokenError, ValueError) as e:
        raise CalculatorError(f"cannot parse {text!r}: {e}") from None
    _check(tree, set(namespace) - {"__builtins__"})
    try:
        return eval_expr(code, local, namespace)
    except Exception as e:  # sympy raises many types for bad math (TypeError, ValueError, ...)
        raise CalculatorError(f"cannot evaluate {text!r}: {type(e).__name__}: {e}") from None


_LEADING_WORDS = re.compile(r"^\s*(?:what\s+is|compute|calculate|evaluate)\s+", re.IGNORECASE)
_SOLVE = re.compile(r"^\s*solve\s+(?P<eq>.+?)(?:\s+for\s+(?P<var>[A-Za-z]\w*))?\s*\??\s*$", re.IGNORECASE)


def calculate(query: str) -> CalcResult:
    """Evaluate or solve `query`; the text is exact when possible, with a decimal beside a fraction."""
    query = _LEADING_WORDS.sub("", query).strip().rstrip("?").strip()
    m = _SOLVE.match(query)
    if m and "(" not in query.split()[0]:
        return _solve(parse(m.group("eq")), m.group("var"))
    value = parse(query)
    if isinstance(value, sympy.Equality):
        return _solve(value, None)
    if isinstance(value, (list, tuple)):
        return CalcResult(value, ", ".join(_show(v) for v in value))
    return CalcResult(value, _show(value))


def _solve(eq: Any, var: str | None) -> CalcResult:
    if eq is sympy.true or eq is sympy.false:
        return CalcResult(bool(eq), str(bool(eq)))
    symbols = sorted(eq.free_symbols, key=str)
    if not symbols:
        raise CalculatorError("an equation needs a variable to solve for")
    target = sympy.Symbol(var) if var else symbols[0]
    solutions = sympy.solve(eq, target)
    text = ", ".join(f"{target} = {_show(s)}" for s in solutions) or f"no solution for {target}"
    return CalcResult(solutions, text)


def _show(value: Any) -> str:
    """Exact text; a non-integer rational or an irrational number also gets its decimal value."""
    try:
        if getattr(value, "is_number", False) and not getattr(value, "is_Integer", False):
            approx = sympy.N(value, 12)
            if approx.is_real and approx != value:
                return f"{value} ≈ {float(approx):.10g}"
    except (TypeError, ValueError):
        pass
    return str(value)
