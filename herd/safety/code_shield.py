"""Code Shield: flag insecure code in model output before it reaches the user [P §5.4.7].

Meta's Insecure Code Detector runs static analysis over 7 languages. herd runs two well-kept tools (the
`safety` extra), both offline:
- bandit for Python, at severity MEDIUM or above, so that ordinary imports (`import subprocess`, LOW) pass
  and `shell=True`, `eval` of input, unsafe deserialisation, weak hashes or disabled TLS checks do not;
- semgrep with rules written here (`herd/safety/semgrep/*.yaml`; no registry rules, `--metrics=off`) for
  JavaScript/TypeScript, shell, C/C++ and SQL built from strings in Python: eval / new Function,
  child_process exec of a built string, innerHTML, SQL concatenation, weak hashes, disabled TLS, curl | sh,
  rm -rf $VAR, strcpy / gets / sprintf / scanf("%s"), system() of a variable, format strings.
Code is found in fenced blocks (```lang ...```; an unlabelled block counts as Python when it parses) and in
code_interpreter tool calls (Python). A block in a language no rule covers is not scanned and passes.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

SEVERITIES = ("LOW", "MEDIUM", "HIGH")
RULES = Path(__file__).parent / "semgrep"
_FENCE = re.compile(r"```[ \t]*([\w+#-]*)[^\n]*\n(.*?)```", re.DOTALL)
# Fence labels -> semgrep language, with the file suffix semgrep needs to pick its parser.
LANGUAGES: dict[str, tuple[str, str]] = {
    **dict.fromkeys(("python", "py", "python3"), ("python", ".py")),
    **dict.fromkeys(("javascript", "js", "node", "nodejs", "jsx", "mjs"), ("javascript", ".js")),
    **dict.fromkeys(("typescript", "ts", "tsx"), ("typescript", ".ts")),
    **dict.fromkeys(("bash", "sh", "shell", "zsh", "console"), ("bash", ".sh")),
    **dict.fromkeys(("c", "h"), ("c", ".c")),
    **dict.fromkeys(("cpp", "c++", "cc", "cxx", "hpp"), ("cpp", ".cpp")),
}


@dataclass(frozen=True)
class Snippet:
    language: str  # a value of LANGUAGES: python, javascript, typescript, bash, c, cpp
    code: str


@dataclass(frozen=True)
class CodeIssue:
    test_id: str  # bandit's id (B602) or the semgrep rule's id (js-eval-dynamic)
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


def semgrep_binary() -> str | None:
    """The semgrep of `make install` (its own venv inside herd's, `.venv/semgrep/`: semgrep pins
    opentelemetry-api ~=1.37 and click below what fastapi and others need, so it cannot share herd's
    environment), else one next to this interpreter, else the one on PATH."""
    bin_dir = Path(sys.executable).parent
    for here in (bin_dir.parent / "semgrep" / "bin" / "semgrep", bin_dir / "semgrep"):
        if here.is_file():
            return str(here)
    return shutil.which("semgrep")


def scan_semgrep(snippets: Sequence[Snippet], rules: Path = RULES, timeout_s: int = 300) -> list[list[CodeIssue]]:
    """semgrep's findings per snippet with herd's rules, in one offline run over a temp folder."""
    exe = semgrep_binary()
    if exe is None:
        raise FileNotFoundError("Code Shield needs semgrep for non-Python code: make install (or semgrep on PATH)")
    found: list[list[CodeIssue]] = [[] for _ in snippets]
    with tempfile.TemporaryDirectory() as tmp:
        for i, s in enumerate(snippets):
            (Path(tmp) / f"{i:05d}{LANGUAGES[s.language][1]}").write_text(s.code, encoding="utf-8")
        # No network: local rules only, no metrics, no version check; --no-git-ignore since tmp may sit in a repo.
        cmd = [exe, "scan", "--metrics=off", "--disable-version-check", "--quiet", "--json", "--no-git-ignore",
               "--config", str(rules), tmp]  # fmt: skip
        run = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout_s, check=False)
        if run.returncode not in (0, 1) or not run.stdout.strip():
            raise RuntimeError(f"semgrep failed ({run.returncode}): {run.stderr.strip()[-300:]}")
        for r in json.loads(run.stdout)["results"]:
            rule = r["check_id"].rsplit(".", 1)[-1]  # semgrep prefixes the rule file's folder
            extra = r.get("extra", {})
            issue = CodeIssue(rule, extra.get("message", ""), extra.get("severity", ""), "", r["start"]["line"], "")
            found[int(Path(r["path"]).stem)].append(issue)
    return found


def scan(snippets: Sequence[Snippet], min_severity: str = "MEDIUM") -> list[list[CodeIssue]]:
    """Findings per snippet: bandit and semgrep for Python, semgrep for the other languages."""
    out: list[list[CodeIssue]] = [scan_python(s.code, min_severity) if s.language == "python" else [] for s in snippets]
    # Python alone is still screened (by bandit) where semgrep is missing; other languages need semgrep.
    if snippets and (semgrep_binary() or any(s.language != "python" for s in snippets)):
        for mine, extra in zip(out, scan_semgrep(snippets), strict=True):
            mine.extend(extra)
    return out


def code_snippets(text: str) -> Iterator[Snippet]:
    """Code in a response: fenced blocks in a language the rules cover, and unlabelled blocks that parse as
    Python."""
    import ast

    for label, body in _FENCE.findall(text):
        if (lang := LANGUAGES.get(label.lower())) is not None:
            yield Snippet(lang[0], body)
        elif not label:
            try:
                ast.parse(body)
            except SyntaxError:
                continue
            yield Snippet("python", body)


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


def insecure_code(snippets: Sequence[str | Snippet], min_severity: str = "MEDIUM") -> str | None:
    """A drop reason (`insecure_code:B602,js-eval-dynamic`) when any snippet has findings, else None: a filter
    for generated code (rejection sampling, `herd chat --guard`). A plain string is Python code."""
    items = [s if isinstance(s, Snippet) else Snippet("python", s) for s in snippets]
    ids = sorted({i.test_id for issues in scan(items, min_severity) for i in issues})
    return f"insecure_code:{','.join(ids)}" if ids else None


def shield_dialogs(src: str | Path, out: str | Path) -> dict[str, Any]:
    """The code data filter as a stage: `src/sft.jsonl` (a capability's output, e.g. `herd capability code`'s
    Python and JavaScript solutions) -> `out/sft.jsonl` without the dialogs whose assistant code Code Shield
    flags, `out/dropped/dropped.jsonl` (reason `insecure_code:<ids>`) and MANIFEST.json. One semgrep run
    scans every dialog's code."""
    from herd.core.stage import run_fn
    from herd.posttrain.data import write_jsonl

    src_file = Path(src) / "sft.jsonl"
    if not src_file.is_file():
        raise FileNotFoundError(f"{src_file}: no such file (a capability output folder holds sft.jsonl)")

    def run(tmp: Path) -> dict[str, Any]:
        lines = src_file.read_text(encoding="utf-8").splitlines()
        rows = [json.loads(line) for line in lines if line.strip()]
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
