"""The Python tool (the paper's code interpreter [P §4.3.5]): `<|python_tag|>` code run in herd's sandbox.

Code in a tool call is steered by the prompt and by whatever a search returned, so it runs only where the
kernel isolates it (`herd.sandbox.require_isolation`); a caller that accepts running unprotected names
the uncovered threats (`--unprotected files,network`). As in a notebook, a last line that is an
expression is printed, so `sum(range(10))` answers 45 without a print.
"""

from __future__ import annotations

import ast
from collections.abc import Collection
from dataclasses import dataclass, field

from herd.sandbox import Limits, SandboxResult, require_isolation, run_python

MAX_OUTPUT = 2000  # characters of stdout/stderr given back to the model


def with_last_expression_printed(code: str) -> str:
    """`code` with the value of its final expression statement printed; unchanged on a syntax error
    (the sandbox then reports the error to the model)."""
    try:
        tree = ast.parse(code)
    except SyntaxError:
        return code
    if not tree.body or not isinstance(tree.body[-1], ast.Expr):
        return code
    last = tree.body[-1]
    if isinstance(last.value, ast.Call) and getattr(last.value.func, "id", None) == "print":
        return code
    lines = code.splitlines()
    start, end = last.lineno - 1, (last.end_lineno or last.lineno)
    expr = "\n".join(lines[start:end])
    head = lines[start][: last.col_offset]
    if head.strip():  # `a = 1; a`: the expression shares a line; fall back to re-emitting from the AST
        tree.body[-1] = ast.Expr(ast.Call(ast.Name("print", ast.Load()), [last.value], []))
        return ast.unparse(ast.fix_missing_locations(tree))
    return "\n".join([*lines[:start], f"__herd_value = (\n{expr}\n)", "if __herd_value is not None:",
                      "    print(__herd_value)", *lines[end:]])  # fmt: skip


def _clip(text: str) -> str:
    return text if len(text) <= MAX_OUTPUT else text[: MAX_OUTPUT - 15] + "\n… [truncated]"


@dataclass
class PythonTool:
    """Runs code in the sandbox; `accepted` lists the threats the user agreed to leave uncovered."""

    accepted: Collection[str] = ()
    limits: Limits = field(default_factory=lambda: Limits(cpu_s=5, wall_s=15, memory_mb=512))
    _checked: bool = False

    def check(self) -> list[str]:
        """Raise SandboxUnavailable unless isolation holds (or its gaps were accepted); the gaps left."""
        missing = require_isolation(self.accepted)
        self._checked = True
        return missing

    def run(self, code: str) -> tuple[bool, str, SandboxResult]:
        """(ok, text for the model, the sandbox result)."""
        if not self._checked:
            self.check()
        result = run_python(with_last_expression_printed(code), self.limits)
        if result.passed:
            return True, _clip(result.stdout.rstrip("\n")) or "(no output)", result
        err = result.stderr.strip().splitlines()
        detail = err[-1] if err else f"exit code {result.returncode}"
        return False, _clip(f"{result.status}: {detail}"), result
