"""herd.sandbox.code_scan, Code Shield's core below herd.posttrain: per-snippet drop reasons."""

from __future__ import annotations

import pytest

from herd.sandbox.code_scan import Snippet, drop_reasons, semgrep_binary

pytest.importorskip("bandit", reason="the code scan needs bandit")


def test_bandit_alone_gives_one_reason_per_snippet():
    snippets = [
        Snippet("python", "import subprocess\nsubprocess.call('ls ' + d, shell=True)\n"),
        Snippet("python", "def f(x):\n    return x + 1\n"),
        Snippet("python", "import hashlib\nh = hashlib.md5(b'x')\nv = eval(s)\n"),
    ]
    assert drop_reasons(snippets, semgrep=False) == ["B602", None, "B307,B324"]


def test_non_python_needs_semgrep():
    with pytest.raises(ValueError, match="semgrep=False"):
        drop_reasons([Snippet("javascript", "eval(x)")], semgrep=False)


@pytest.mark.skipif(semgrep_binary() is None, reason="semgrep is not installed (make install: .venv/semgrep)")
def test_semgrep_and_bandit_in_one_pass():
    snippets = [
        Snippet("javascript", "const v = eval(userInput);\n"),
        Snippet("javascript", "const v = JSON.parse(userInput);\n"),
        Snippet("python", "cur.execute('SELECT * FROM t WHERE id = ' + uid)\n"),
    ]
    assert drop_reasons(snippets) == ["js-eval-dynamic", None, "B608,py-sql-string-built"]
