"""Code Shield flags every planted insecure snippet and none of the safe ones."""

from __future__ import annotations

import pytest

pytest.importorskip("bandit", reason="needs the safety extra")

from herd.safety.code_shield import code_blocks, insecure_code, message_code, scan_python

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
