"""Static analysis of model-written code before anyone runs or trains on it: the core of Code Shield
[P §5.4.7], here (below herd.posttrain in the import layers) so the code data pipeline can call it too.

Meta's Insecure Code Detector runs static analysis over 7 languages. herd runs two well-kept tools, both
offline:
- bandit for Python, at severity MEDIUM or above, so that ordinary imports (`import subprocess`, LOW) pass
  and `shell=True`, `eval` of input, unsafe deserialisation, weak hashes or disabled TLS checks do not;
- semgrep with rules written here (`herd/sandbox/semgrep/*.yaml`; no registry rules, `--metrics=off`) for
  JavaScript/TypeScript, shell, C/C++ and SQL built from strings in Python: eval / new Function,
  child_process exec of a built string, innerHTML, SQL concatenation, weak hashes, disabled TLS, curl | sh,
  rm -rf $VAR, strcpy / gets / sprintf / scanf("%s"), system() of a variable, format strings.
Code is found in fenced blocks (```lang ...```; an unlabelled block counts as Python when it parses). A
block in a language no rule covers is not scanned and passes. herd.safety.code_shield is the safety-facing
API on top (chat replies, tool calls, a dialog filter stage).
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

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


def bandit_available() -> bool:
    try:
        import bandit  # noqa: F401
    except ImportError:
        return False
    return True


def scan_python(code: str, min_severity: str = "MEDIUM") -> list[CodeIssue]:
    """bandit's findings at or above `min_severity` (any confidence); [] for code that does not parse."""
    try:
        from bandit.core import config, constants, manager
    except ImportError:
        raise FileNotFoundError("the code scan needs bandit: pip install -e '.[safety]'") from None
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
    """semgrep's findings per snippet with herd's rules, in one offline run over a temp folder (semgrep's
    start-up is most of its cost, so callers batch)."""
    exe = semgrep_binary()
    if exe is None:
        raise FileNotFoundError("the code scan needs semgrep for non-Python code: make install (or semgrep on PATH)")
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


def scan(snippets: Sequence[Snippet], min_severity: str = "MEDIUM", semgrep: bool = True) -> list[list[CodeIssue]]:
    """Findings per snippet: bandit and semgrep for Python, semgrep for the other languages. `semgrep=False`
    scans Python with bandit alone (no subprocess: cheap enough to call once per solution)."""
    out: list[list[CodeIssue]] = [scan_python(s.code, min_severity) if s.language == "python" else [] for s in snippets]
    others = any(s.language != "python" for s in snippets)
    if others and not semgrep:
        raise ValueError("code scan: semgrep=False leaves non-Python snippets unscanned")
    # Python alone is still screened (by bandit) where semgrep is missing; other languages need semgrep.
    if snippets and semgrep and (semgrep_binary() or others):
        for mine, extra in zip(out, scan_semgrep(snippets), strict=True):
            mine.extend(extra)
    return out


def drop_reasons(snippets: Sequence[Snippet], min_severity: str = "MEDIUM", semgrep: bool = True) -> list[str | None]:
    """Per snippet, the rule ids that flag it (`B602,js-eval-dynamic`), or None when it is clean."""
    return [",".join(sorted({i.test_id for i in issues})) or None for issues in scan(snippets, min_severity, semgrep)]


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


def insecure_code(snippets: Sequence[str | Snippet], min_severity: str = "MEDIUM") -> str | None:
    """A drop reason (`insecure_code:B602,js-eval-dynamic`) when any snippet has findings, else None: a filter
    for generated code (rejection sampling, `herd chat --guard`). A plain string is Python code."""
    items = [s if isinstance(s, Snippet) else Snippet("python", s) for s in snippets]
    ids = sorted({i.test_id for issues in scan(items, min_severity) for i in issues})
    return f"insecure_code:{','.join(ids)}" if ids else None
