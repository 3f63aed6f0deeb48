"""Code Shield: flag insecure code in model output before it reaches the user [P §5.4.7].

The static analysis itself (bandit for Python, semgrep with herd's rules for JS/TS, shell, C/C++ and SQL in
Python strings; offline) is herd.sandbox.code_scan, below herd.posttrain in the import layers so the code
data pipeline can drop insecure solutions inline. This module is the safety-facing API on top: code in chat
replies and code_interpreter tool calls, and a filter stage over a capability's dialogs.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

from herd.sandbox.code_scan import (
    LANGUAGES,
    RULES,
    SEVERITIES,
    CodeIssue,
    Snippet,
    code_snippets,
    insecure_code,
    scan,
    scan_python,
    scan_semgrep,
    semgrep_binary,
)

__all__ = [
    "LANGUAGES",
    "RULES",
    "SEVERITIES",
    "CodeIssue",
    "Snippet",
    "code_blocks",
    "code_snippets",
    "insecure_code",
    "message_code",
    "scan",
    "scan_python",
    "scan_semgrep",
    "semgrep_binary",
    "shield_dialogs",
]


def code_blocks(text: str) -> Iterator[str]:
    """The Python code of a response (see code_snippets)."""
    yield from (s.code for s in code_snippets(text) if s.language == "python")


def message_code(message: Mapping[str, Any]) -> list[Snippet]:
    """Code in an assistant message: fenced blocks in its content and code_interpreter tool calls (Python)."""
    found = list(code_snippets(message.get("content") or ""))
    for call in message.get("tool_calls") or ():
        fn = call.get("function", call)
        args = fn.get("arguments", {})
        if fn.get("name") == "code_interpreter":
            found.append(Snippet("python", args.get("code", "") if isinstance(args, Mapping) else str(args)))
    return found


def shield_dialogs(src: str | Path, out: str | Path) -> dict[str, Any]:
    """The code data filter as a stage: `src/sft.jsonl` (a capability's output, e.g. `herd capability code`'s
    Python and JavaScript solutions) -> `out/sft.jsonl` without the dialogs whose assistant code Code Shield
    flags, `out/dropped/dropped.jsonl` (reason `insecure_code:<ids>`) and MANIFEST.json. One semgrep run
    scans every dialog's code."""
    from herd.core.io import iter_jsonl
    from herd.core.stage import run_fn
    from herd.posttrain.data import write_jsonl

    src_file = Path(src) / "sft.jsonl"
    if not src_file.is_file():
        raise FileNotFoundError(f"{src_file}: no such file (a capability output folder holds sft.jsonl)")

    def run(tmp: Path) -> dict[str, Any]:
        rows = [row for _, row in iter_jsonl(src_file)]  # a bad line raises naming src_file:line
        code = [
            [s for m in r.get("messages", []) if m.get("role") == "assistant" for s in message_code(m)] for r in rows
        ]
        flat = [s for snippets in code for s in snippets]
        issues = iter(scan(flat))
        kept, dropped = [], []
        for row, snippets in zip(rows, code, strict=True):
            ids = sorted({i.test_id for _ in snippets for i in next(issues)})
            if ids:
                dropped.append({**row, "reason": f"insecure_code:{','.join(ids)}"})
            else:
                kept.append(row)
        write_jsonl(tmp / "sft.jsonl", kept)
        write_jsonl(tmp / "dropped" / "dropped.jsonl", dropped)
        langs = sorted({s.language for s in flat})
        return {"in": len(rows), "kept": len(kept), "dropped": len(dropped), "snippets": len(flat), "languages": langs}

    run_fn("code_shield", [src_file], {"rules": str(RULES)}, Path(out), run)
    return json.loads((Path(out) / "MANIFEST.json").read_text())["counts"]


if __name__ == "__main__":  # python -m herd.safety.code_shield SRC_FOLDER OUT_FOLDER
    if len(sys.argv) != 3:
        sys.exit("usage: python -m herd.safety.code_shield SRC_FOLDER OUT_FOLDER  (SRC_FOLDER holds sft.jsonl)")
    print(json.dumps(shield_dialogs(sys.argv[1], sys.argv[2]), indent=1))
