"""Hostile programs disarm the Python guard first, then attack; a kernel layer must stop every one of them,
as root, on the user-namespace path, and under a real unprivileged uid."""

import json
import os
import shutil
import stat
from pathlib import Path

import pytest

from herd.sandbox import kernel_protections, unprotected
from herd.sandbox.hostile import Verdict, quick_limits, run_guard_checks, run_suite
from herd.sandbox.runner import LAUNCHER

MISSING = unprotected(kernel_protections())
pytestmark = pytest.mark.skipif(bool(MISSING), reason=f"this kernel offers no layer for {MISSING}")
IS_ROOT = os.geteuid() == 0
MODES = ["root", "user"] if IS_ROOT else ["user"]


def escaped(verdicts: list[Verdict]) -> dict[str, list[str]]:
    return {v.case.name: v.evidence for v in verdicts if v.expected and not v.held}


@pytest.mark.parametrize("mode", MODES)
def test_the_python_guard_is_disarmed_both_ways(mode: str) -> None:
    # Otherwise the suite would only show that the audit hook works, not that the kernel does.
    assert all(run_guard_checks(quick_limits(mode)).values())


@pytest.mark.parametrize("mode", MODES)
def test_every_hostile_program_is_stopped_by_a_kernel_layer(mode: str) -> None:
    verdicts = run_suite(quick_limits(mode))
    assert not escaped(verdicts)
    # Each case names a layer that held here, except RLIMIT_NPROC, which never applies to uid 0.
    unexpected = {v.case.name for v in verdicts if not v.expected}
    assert unexpected <= ({"thread bomb"} if mode == "user" and IS_ROOT else set())


@pytest.mark.parametrize("left_out", ["seccomp", "landlock", "namespaces"])
def test_each_layer_stops_its_cases_without_the_others(left_out: str) -> None:
    # Defence in depth: with one layer left out, every case that names another layer still holds.
    verdicts = run_suite(quick_limits(without=(left_out,)), lambda c: c.threat != "resources")
    assert left_out not in verdicts[0].result.protections
    assert not escaped(verdicts)


def _readable_by_nobody(path: Path) -> bool:
    parts = [path, *path.parents]
    return bool(path.stat().st_mode & stat.S_IROTH) and all(p.stat().st_mode & stat.S_IXOTH for p in parts[1:])


@pytest.mark.skipif(not IS_ROOT, reason="dropping to another uid needs root (as non-root the suite above is this path)")
def test_under_a_real_unprivileged_uid() -> None:
    # The herd venv may live where nobody cannot read (here: under /root), so the child uses the system Python.
    python = shutil.which("python3", path="/usr/bin:/bin")
    if not python or not _readable_by_nobody(Path(python).resolve()) or not _readable_by_nobody(LAUNCHER):
        pytest.skip("no interpreter and launcher that uid 65534 can read")
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child never returns into pytest
        code = 1
        try:
            os.close(read)
            os.setgroups([])
            os.setresgid(65534, 65534, 65534)
            os.setresuid(65534, 65534, 65534)
            limits = quick_limits(python=python)
            verdicts = run_suite(limits)
            out = {
                "guard": run_guard_checks(limits),
                "escaped": escaped(verdicts),
                "unexpected": [v.case.name for v in verdicts if not v.expected],
                "protections": verdicts[0].result.protections,
                "n": len(verdicts),
            }
            os.write(write, json.dumps(out).encode())
            code = 0
        finally:
            os._exit(code)
    os.close(write)
    with os.fdopen(read, "rb") as f:
        data = f.read()
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0 and data
    out = json.loads(data)
    assert all(out["guard"].values())
    assert out["n"] >= 30 and not out["escaped"] and not out["unexpected"]
    assert {"userns", "netns", "nproc", "landlock-fs", "seccomp"} <= set(out["protections"].split("+"))
