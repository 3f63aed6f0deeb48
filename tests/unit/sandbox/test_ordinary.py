"""Ordinary programs keep working behind the layers; a kernel without layers makes tool calls refuse."""

import json
import subprocess
import sys

import pytest

import herd.sandbox.layers as layers
from herd.sandbox import Limits, SandboxUnavailable, require_isolation, run_python, unprotected

FAST = Limits(cpu_s=20, wall_s=60)
MODES = ["root", "user"] if __import__("os").geteuid() == 0 else ["user"]
IMPORT_ALL = """import importlib, json, sys
skip = {"antigravity", "this", "idlelib", "tkinter", "turtle", "turtledemo"}  # a browser, a print, a display
bad = {}
for name in sorted(sys.stdlib_module_names - skip):
    try:
        importlib.import_module(name)
    except Exception as e:
        bad[name] = type(e).__name__
print(json.dumps(bad))
"""


@pytest.mark.parametrize("mode", MODES)
def test_every_stdlib_module_imports_as_in_a_bare_interpreter(mode: str) -> None:
    bare = subprocess.run([sys.executable, "-I", "-c", IMPORT_ALL], capture_output=True, text=True, check=True)
    r = run_python(IMPORT_ALL, Limits(cpu_s=60, wall_s=120, mode=mode))
    assert r.passed, r.stderr
    assert json.loads(r.stdout) == json.loads(bare.stdout)  # only modules this build lacks fail, in both


@pytest.mark.parametrize("mode", MODES)
def test_numpy_threads_and_files_in_its_own_folder(mode: str) -> None:
    pytest.importorskip("numpy")
    program = """import numpy as np, os, tempfile, threading
print(int(np.arange(10).sum()), float(np.linalg.inv(np.eye(3)).trace()))
os.makedirs('sub/dir'); open('sub/dir/a.txt', 'w').write('ok'); os.rename('sub/dir/a.txt', 'sub/b.txt')
with tempfile.NamedTemporaryFile('w') as f:
    f.write('tmp')
t = [threading.Thread(target=lambda: None) for _ in range(4)]; [x.start() for x in t]; [x.join() for x in t]
print(open('sub/b.txt').read(), sorted(os.listdir('.')))
"""
    r = run_python(program, Limits(cpu_s=20, wall_s=60, mode=mode))
    assert r.passed, r.stderr
    assert r.stdout.splitlines() == ["45 3.0", "ok ['program.py', 'sub']"]
    assert not unprotected(r.protections)


def test_unprotected_names_threats_without_a_kernel_layer() -> None:
    assert unprotected("hook") == ["files", "network", "processes", "signals", "disk"]
    assert unprotected("hook+uid+netns") == ["files", "processes", "disk"]
    assert unprotected({"landlock-fs", "seccomp", "tmpfs"}) == []


def test_tool_calls_refuse_where_the_kernel_offers_no_layer(monkeypatch) -> None:
    monkeypatch.setattr(layers, "kernel_protections", lambda: "hook+netns")
    with pytest.raises(SandboxUnavailable, match=r"no isolation for files, processes, signals, disk.*--unprotected"):
        require_isolation()
    with pytest.raises(SandboxUnavailable, match="no isolation for disk"):
        require_isolation({"files", "processes", "signals"})
    assert require_isolation({"files", "processes", "signals", "disk"}) == ["files", "processes", "signals", "disk"]


def test_a_bad_mode_is_an_error() -> None:
    with pytest.raises(ValueError, match="sandbox mode 'chroot'"):
        Limits(mode="chroot")


def test_seccomp_numbers_match_the_kernel_headers() -> None:
    import re
    from pathlib import Path

    from herd.sandbox import launch

    header = Path("/usr/include/x86_64-linux-gnu/asm/unistd_64.h")
    if not header.exists():
        pytest.skip("no x86_64 kernel headers here")
    table = {k: int(v) for k, v in re.findall(r"#define __NR_(\w+) (\d+)", header.read_text())}
    ours = {**launch.X86_64_DENY, **launch.X86_64_SIGNALS, "clone": launch.X86_64_CLONE, "clone3": launch.X86_64_CLONE3}
    assert {k: v for k, v in ours.items() if table.get(k) != v} == {}
