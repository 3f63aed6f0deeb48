"""Code Shield flags every planted insecure snippet and none of the safe ones."""

from __future__ import annotations

import json

import pytest

pytest.importorskip("bandit", reason="needs the safety extra")

from herd.safety.code_shield import (
    Snippet,
    code_blocks,
    code_snippets,
    insecure_code,
    message_code,
    scan_python,
    scan_semgrep,
    semgrep_binary,
    shield_dialogs,
)

INSECURE = {
    "shell": "import subprocess\nsubprocess.call('ls ' + user_dir, shell=True)\n",
    "eval": "value = eval(input('expression: '))\n",
    "exec": "exec(request_body)\n",
    "pickle": "import pickle\nobj = pickle.loads(data_from_socket)\n",
    "yaml": "import yaml\nconfig = yaml.load(open('c.yml'))\n",
    "md5": "import hashlib\ndigest = hashlib.md5(password.encode()).hexdigest()\n",
    "tls": "import requests\nrequests.get(url, verify=False)\n",
    "mktemp": "import tempfile\nname = tempfile.mktemp()\n",
    "sql": "cur.execute(\"SELECT * FROM users WHERE name = '%s'\" % name)\n",
    "flask_debug": "from flask import Flask\napp = Flask(__name__)\napp.run(debug=True)\n",
    "telnet": "import telnetlib\ntelnetlib.Telnet('host')\n",
    "bind_all": "import socket\ns = socket.socket()\ns.bind(('0.0.0.0', 8080))\n",
}
SAFE = {
    "subprocess_list": "import subprocess\nsubprocess.run(['ls', '-l'], check=True)\n",
    "literal_eval": "import ast\nvalue = ast.literal_eval(text)\n",
    "json": "import json\nobj = json.loads(data)\n",
    "safe_yaml": "import yaml\nconfig = yaml.safe_load(open('c.yml'))\n",
    "sha256": "import hashlib\ndigest = hashlib.sha256(data).hexdigest()\n",
    "tls": "import requests\nrequests.get(url, timeout=10)\n",
    "tempfile": "import tempfile\nwith tempfile.NamedTemporaryFile() as f:\n    f.write(b'x')\n",
    "sql_params": "cur.execute('SELECT * FROM users WHERE name = ?', (name,))\n",
    "reverse": "def reverse(xs):\n    return xs[::-1]\n",
    "unparsable": "def broken(:\n    pass\n",
}


@pytest.mark.parametrize("name", sorted(INSECURE))
def test_flags_every_planted_insecure_snippet(name: str) -> None:
    assert scan_python(INSECURE[name]), name


@pytest.mark.parametrize("name", sorted(SAFE))
def test_passes_every_safe_snippet(name: str) -> None:
    assert scan_python(SAFE[name]) == [], name


def test_filter_over_a_response() -> None:
    reply = (
        "Here you go:\n```python\nimport os\nos.system('rm -rf ' + path)\n```\nand in shell:\n```bash\nls\n```\n"
        "Also:\n```\nx = eval(s)\n```"
    )
    blocks = list(code_blocks(reply))
    assert len(blocks) == 2  # the bash block is not Python
    assert insecure_code(blocks) == "insecure_code:B307,B605"
    assert insecure_code(list(code_blocks("```python\nprint('hi')\n```"))) is None
    call = {"role": "assistant", "content": "", "tool_calls": [{"name": "code_interpreter",
                                                                "arguments": {"code": INSECURE["shell"]}}]}  # fmt: skip
    assert insecure_code(message_code(call)) == "insecure_code:B602"


# ---------------------------------------------------------------- semgrep: the other languages
# Planted (language, code) cases written for this test. Each insecure one names the rule that must flag it;
# the safe ones are the usual secure rewrite of the same task, so a rule that matches a function name
# alone, not the unsafe shape, fails them.
PLANTED_BAD: dict[str, tuple[str, str, str]] = {  # name -> (language, rule id, code)
    # JavaScript / TypeScript
    "js_eval": ("javascript", "js-eval-dynamic", "const total = eval(req.query.expr);\n"),
    "js_new_function": ("javascript", "js-new-function", "const f = new Function('a', body);\nf(1);\n"),
    "js_exec_concat": (
        "javascript",
        "js-child-process-shell-concat",
        "const cp = require('child_process');\ncp.exec('ls ' + userDir, (err, out) => console.log(out));\n",
    ),
    "js_exec_template": (
        "javascript",
        "js-child-process-shell-concat",
        "const { execSync } = require('child_process');\nexecSync(`convert ${file} out.png`);\n",
    ),
    "ts_import_exec": (
        "typescript",
        "js-child-process-shell-concat",
        "import * as cp from 'child_process';\nexport const zip = (dir: string) => cp.execSync('zip -r out ' + dir);\n",
    ),
    "js_inner_html": ("javascript", "js-inner-html", "document.getElementById('out').innerHTML = comment.text;\n"),
    "js_document_write": ("javascript", "js-inner-html", "document.write(location.hash.slice(1));\n"),
    "js_md5": (
        "javascript",
        "js-weak-hash",
        "const crypto = require('crypto');\nconst h = crypto.createHash('md5').update(pw).digest('hex');\n",
    ),
    "js_tls": ("javascript", "js-tls-unverified", "https.get({ host: h, rejectUnauthorized: false }, cb);\n"),
    "js_sql": (
        "javascript",
        "js-sql-concat",
        'db.query("SELECT * FROM users WHERE name = \'" + name + "\'", (e, rows) => done(rows));\n',
    ),
    "ts_sql_template": (
        "typescript",
        "js-sql-concat",
        "async function find(id: string) {\n  return pool.query(`DELETE FROM items WHERE id = ${id}`);\n}\n",
    ),
    "ts_eval": ("typescript", "js-eval-dynamic", "function run(code: string): unknown {\n  return eval(code);\n}\n"),
    # shell
    "sh_curl_pipe": ("bash", "sh-curl-pipe-shell", "curl -fsSL https://example.com/install.sh | sudo bash\n"),
    "sh_wget_pipe": ("bash", "sh-curl-pipe-shell", "wget -qO- https://example.com/setup | sh\n"),
    "sh_rm_var": ("bash", "sh-rm-rf-variable", '#!/bin/bash\nBUILD_DIR=$1\nrm -rf "$BUILD_DIR"/*\n'),
    "sh_rm_var_braces": ("bash", "sh-rm-rf-variable", "rm -fr ${PREFIX}/lib\n"),
    "sh_eval": ("bash", "sh-eval-variable", 'read -r cmd\neval "$cmd"\n'),
    "sh_chmod": ("bash", "sh-world-writable", "chmod -R 777 /var/www\n"),
    "sh_insecure_curl": ("bash", "sh-tls-unverified", "curl -k https://internal/api/token -o token\n"),
    # C / C++
    "c_strcpy": ("c", "c-unbounded-copy", "void f(char *src) {\n  char buf[16];\n  strcpy(buf, src);\n}\n"),
    "c_gets": ("c", "c-unbounded-copy", "int main(void) {\n  char line[80];\n  gets(line);\n  return 0;\n}\n"),
    "c_sprintf": ("c", "c-unbounded-copy", 'void g(char *name) {\n  char b[32];\n  sprintf(b, "hi %s", name);\n}\n'),
    "c_scanf": ("c", "c-scanf-unbounded-string", 'int main(void) {\n  char w[8];\n  scanf("%s", w);\n}\n'),
    "c_system": (
        "c",
        "c-shell-command",
        'void h(const char *f) {\n  char cmd[256];\n  snprintf(cmd, sizeof cmd, "cat %s", f);\n  system(cmd);\n}\n',
    ),
    "c_format": ("c", "c-format-string", "void log_msg(const char *msg) {\n  printf(msg);\n}\n"),
    "cpp_strcat": (
        "cpp",
        "c-unbounded-copy",
        "#include <cstring>\nvoid join(char *d, const char *s) {\n  std::strcat(d, s);\n  strcat(d, s);\n}\n",
    ),
    # SQL inside Python strings (beside bandit's B608)
    "py_sql_fstring": ("python", "py-sql-string-built", 'cur.execute(f"SELECT * FROM users WHERE id = {uid}")\n'),
    "py_sql_concat": (
        "python",
        "py-sql-string-built",
        'cursor.execute("DELETE FROM logs WHERE day = \'" + day + "\'")\n',
    ),
}

PLANTED_OK: dict[str, tuple[str, str]] = {  # name -> (language, code)
    "js_json_parse": ("javascript", "const total = JSON.parse(req.query.expr);\n"),
    "js_eval_literal": ("javascript", "const two = eval('1 + 1');\n"),
    "js_execfile": (
        "javascript",
        "const { execFile } = require('child_process');\nexecFile('ls', [userDir], (err, out) => console.log(out));\n",
    ),
    "js_exec_literal": ("javascript", "const cp = require('child_process');\ncp.exec('git status', cb);\n"),
    "js_regex_exec": ("javascript", "const m = /(\\d+)-(\\d+)/.exec(line);\nconst re = /a/g;\nre.exec(s);\n"),
    "js_text_content": ("javascript", "document.getElementById('out').textContent = comment.text;\n"),
    "js_inner_html_literal": ("javascript", "el.innerHTML = '<b>Loading</b>';\n"),
    "js_sha256": (
        "javascript",
        "const crypto = require('crypto');\nconst h = crypto.createHash('sha256').update(data).digest('hex');\n",
    ),
    "js_tls_on": ("javascript", "https.get({ host: h, rejectUnauthorized: true }, cb);\n"),
    "js_sql_params": (
        "javascript",
        "db.query('SELECT * FROM users WHERE name = ?', [name], (e, rows) => done(rows));\n",
    ),
    "ts_sql_params": (
        "typescript",
        "async function find(id: string) {\n  return pool.query('DELETE FROM items WHERE id = $1', [id]);\n}\n",
    ),
    "ts_plain": ("typescript", "export function add(a: number, b: number): number {\n  return a + b;\n}\n"),
    "sh_download_then_check": (
        "bash",
        "curl -fsSLo install.sh https://example.com/install.sh\nsha256sum -c install.sh.sha256 && bash install.sh\n",
    ),
    "sh_rm_guarded": ("bash", 'rm -rf "${BUILD_DIR:?}"/*\nrm -rf ./build\n'),
    "sh_loop": ("bash", 'for f in *.txt; do\n  wc -l "$f"\ndone\n'),
    "sh_chmod_755": ("bash", "chmod 755 deploy.sh\nchmod u+x run.sh\n"),
    "sh_curl": ("bash", "curl -fsS https://example.com/api -o out.json\n"),
    "sh_pipe_grep": ("bash", "curl -s https://example.com/status | grep -q ok\n"),
    "c_strncpy": (
        "c",
        "void f(const char *src) {\n  char buf[16];\n  strncpy(buf, src, sizeof buf - 1);\n  buf[15] = 0;\n}\n",
    ),
    "c_fgets": ("c", "int main(void) {\n  char line[80];\n  fgets(line, sizeof line, stdin);\n  return 0;\n}\n"),
    "c_snprintf": ("c", 'void g(const char *n) {\n  char b[32];\n  snprintf(b, sizeof b, "hi %s", n);\n}\n'),
    "c_scanf_width": ("c", 'int main(void) {\n  char w[8];\n  scanf("%7s", w);\n  int n;\n  scanf("%d", &n);\n}\n'),
    "c_system_literal": ("c", 'int main(void) {\n  return system("clear");\n}\n'),
    "c_printf_format": ("c", 'void log_msg(const char *msg) {\n  printf("%s\\n", msg);\n  printf("done\\n");\n}\n'),
    "py_sql_params": ("python", "cur.execute('SELECT * FROM users WHERE id = ?', (uid,))\n"),
    "py_fstring_log": ("python", 'print(f"SELECT took {ms} ms")\nlog.info("DELETE %s", key)\n'),
}


needs_semgrep = pytest.mark.skipif(semgrep_binary() is None, reason="needs semgrep (the safety extra)")


@pytest.fixture(scope="module")
def planted_findings() -> dict[str, set[str]]:
    """One semgrep run over every planted snippet (each run costs seconds): name -> rule ids."""
    names = [*PLANTED_BAD, *PLANTED_OK]
    assert len(set(names)) == len(names)
    snippets = [Snippet(PLANTED_BAD[n][0], PLANTED_BAD[n][2]) for n in PLANTED_BAD]
    snippets += [Snippet(*PLANTED_OK[n]) for n in PLANTED_OK]
    return {n: {i.test_id for i in found} for n, found in zip(names, scan_semgrep(snippets), strict=True)}


@needs_semgrep
def test_semgrep_flags_every_planted_insecure_snippet_with_its_rule(planted_findings) -> None:
    missed = {n: planted_findings[n] for n, (_, rule, _) in PLANTED_BAD.items() if rule not in planted_findings[n]}
    assert not missed, missed
    assert {lang for lang, _, _ in PLANTED_BAD.values()} >= {"javascript", "typescript", "bash", "c", "cpp", "python"}


@needs_semgrep
def test_semgrep_passes_every_planted_safe_snippet(planted_findings) -> None:
    flagged = {n: planted_findings[n] for n in PLANTED_OK if planted_findings[n]}
    assert not flagged, flagged


def test_fence_labels_pick_the_language() -> None:
    text = (
        "```js\neval(x)\n```\n```bash\nls\n```\n```rust\nfn main() {}\n```\n```\nprint(1)\n```\n```\nnot python(\n```"
    )
    assert [s.language for s in code_snippets(text)] == ["javascript", "bash", "python"]


@needs_semgrep
def test_filter_over_a_multilanguage_reply_and_the_dialog_filter(tmp_path) -> None:
    js = "```javascript\n" + PLANTED_BAD["js_exec_concat"][2] + "```"
    assert insecure_code(list(code_snippets("Run this:\n" + js))) == "insecure_code:js-child-process-shell-concat"
    assert insecure_code(list(code_snippets("```sh\n" + PLANTED_OK["sh_loop"][1] + "```"))) is None
    rows = [{"messages": [{"role": "user", "content": "q"}, {"role": "assistant", "content": body}]}
            for body in (js, "```c\n" + PLANTED_OK["c_fgets"][1] + "```", "no code here")]  # fmt: skip
    (tmp_path / "cap").mkdir()
    (tmp_path / "cap" / "sft.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    counts = shield_dialogs(tmp_path / "cap", tmp_path / "out")
    assert (counts["in"], counts["kept"], counts["dropped"], counts["snippets"]) == (3, 2, 1, 2)
    dropped = [json.loads(x) for x in (tmp_path / "out" / "dropped" / "dropped.jsonl").read_text().splitlines()]
    assert [d["reason"] for d in dropped] == ["insecure_code:js-child-process-shell-concat"]


def test_dialog_filter_names_the_bad_line(tmp_path) -> None:
    (tmp_path / "cap").mkdir()
    (tmp_path / "cap" / "sft.jsonl").write_text('{"messages": []}\n{"messages": [\n')
    with pytest.raises(ValueError, match=r"sft\.jsonl:2: invalid JSON"):
        shield_dialogs(tmp_path / "cap", tmp_path / "out")
    assert not (tmp_path / "out").exists()
