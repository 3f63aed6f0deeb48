"""Code Shield: flag insecure code in model output before it reaches the user [P §5.4.7].

Meta's Insecure Code Detector runs static analysis over 7 languages; herd covers Python with bandit (the
`safety` extra), at severity MEDIUM or above, so that ordinary imports (`import subprocess`, LOW) pass and
`shell=True`, `eval` of input, unsafe deserialisation, weak hashes or disabled TLS checks do not. Code is
found in fenced blocks (```python ...```, or unlabelled blocks that parse as Python) and in
code_interpreter tool calls. Code in other languages, or that does not parse, is not scanned and passes.
"""

from __future__ import annotations

import re
import tempfile
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

SEVERITIES = ("LOW", "MEDIUM", "HIGH")
_FENCE = re.compile(r"```[ \t]*([\w+-]*)[^\n]*\n(.*?)```", re.DOTALL)


@dataclass(frozen=True)
class CodeIssue:
    test_id: str  # bandit's id, e.g. B602
    name: str
    severity: str
    confidence: str
    line: int
    text: str


def scan_python(code: str, min_severity: str = "MEDIUM") -> list[CodeIssue]:
    """bandit's findings at or above `min_severity` (any confidence); [] for code that does not parse."""
    try:
        from bandit.core import config, constants, manager
    except ImportError:
        raise FileNotFoundError("Code Shield needs bandit: pip install -e '.[safety]'") from None
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "snippet.py"
        path.write_text(code, encoding="utf-8")
        mgr = manager.BanditManager(config.BanditConfig(), "file", quiet=True)
        mgr.discover_files([str(path)])
        mgr.run_tests()
        level = getattr(constants, min_severity.upper())
        issues = mgr.get_issue_list(sev_level=level, conf_level=constants.LOW)
    return [CodeIssue(i.test_id, i.test, i.severity, i.confidence, i.lineno, i.text) for i in issues]


def code_blocks(text: str) -> Iterator[str]:
    """Python code in a response: ```python/py``` blocks and unlabelled blocks that parse as Python."""
    import ast

    for lang, body in _FENCE.findall(text):
        if lang.lower() in ("python", "py", "python3"):
            yield body
        elif not lang:
            try:
                ast.parse(body)
            except SyntaxError:
                continue
            yield body


def message_code(message: Mapping[str, Any]) -> list[str]:
    """Code in an assistant message: fenced blocks in its content and code_interpreter tool calls."""
    found = list(code_blocks(message.get("content") or ""))
    for call in message.get("tool_calls") or ():
        fn = call.get("function", call)
        args = fn.get("arguments", {})
        if fn.get("name") == "code_interpreter":
            found.append(args.get("code", "") if isinstance(args, Mapping) else str(args))
    return found


def insecure_code(snippets: Sequence[str], min_severity: str = "MEDIUM") -> str | None:
    """A drop reason (`insecure_code:B602,B307`) when any snippet has findings, else None: a filter for
    generated code (rejection sampling, `herd chat --guard`)."""
    ids = sorted({i.test_id for code in snippets for i in scan_python(code, min_severity)})
    return f"insecure_code:{','.join(ids)}" if ids else None
