"""The Python tool: code really runs in the sandbox, and is refused where isolation is missing."""

from __future__ import annotations

import pytest

import herd.tools.python as py
from herd.sandbox import SandboxUnavailable, require_isolation
from herd.tools.python import PythonTool, with_last_expression_printed


def test_last_expression_is_printed():
    ns: dict = {}
    out: list = []
    code = with_last_expression_printed("x = 6\nx * 7")
    exec(code, {"print": out.append}, ns)  # our own literal program: checks the rewrite only
    assert out == [42]
    assert with_last_expression_printed("print(1)") == "print(1)"
    assert with_last_expression_printed("def f(:") == "def f(:"


def test_refused_without_isolation_unless_accepted(monkeypatch):
    monkeypatch.setattr(py, "require_isolation", lambda accepted: _fake_require(accepted))
    monkeypatch.setattr(py, "run_python", lambda code, limits: pytest.fail("ran without isolation"))
    with pytest.raises(SandboxUnavailable, match="--unprotected network"):
        PythonTool().run("print(1)")
    tool = PythonTool(accepted=("network",))
    assert tool.check() == ["network"]


def _fake_require(accepted):
    if "network" not in accepted:
        raise SandboxUnavailable("this kernel offers no isolation for network; Pass --unprotected network")
    return ["network"]


def test_runs_in_the_sandbox():
    try:
        require_isolation()
    except SandboxUnavailable:
        pytest.skip("this kernel cannot isolate tool code")
    ok, text, result = PythonTool().run("sum(i * i for i in range(10))")
    assert ok and text == "285" and "seccomp" in result.layers
    ok, text, _ = PythonTool().run("open('/etc/shadow').read()")
    assert not ok and "Error" in text
