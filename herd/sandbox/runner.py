"""Run untrusted Python in a child whose kernel-enforced layers hold even after it disarms the Python guard.

The child (herd/sandbox/launch.py) applies, before the program's first line: rlimits (CPU, address
space, file size, tasks), namespaces (network; a user namespace when not root; a size-capped tmpfs as its
folder), a per-run uid when root, Landlock (files, TCP, signals), seccomp (processes, sockets, kernel
interfaces) and an audit hook. The parent adds a wall-clock timeout, a new session killed as a whole,
a scrubbed environment and a temp folder removed afterwards. docs/sandbox.md: threat model and limits.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

from herd.sandbox.launch import BLOCKED_EXIT

LAUNCHER = Path(__file__).with_name("launch.py")
MODES = ("auto", "root", "user")


@dataclass(frozen=True)
class Limits:
    cpu_s: int = 10
    wall_s: float = 20.0
    memory_mb: int = 1024
    file_mb: int = 16  # largest file, stdout and stderr included
    disk_mb: int = 64  # the program's whole folder (its tmpfs)
    tasks: int = 64  # threads + processes (RLIMIT_NPROC, where a uid of its own makes it count only these)
    # auto: "root" when run as root (per-run uid), else "user" (user namespace). "user" as root exercises
    # the non-root path (tests do), except RLIMIT_NPROC, which the kernel never applies to uid 0.
    mode: str = "auto"
    read_paths: tuple[str, ...] = ()  # readable beyond the interpreter's import path and system libraries
    python: str = ""  # the interpreter that runs the program (default: this one)
    env: dict[str, str] = field(default_factory=dict)  # added to the child's scrubbed environment
    without: tuple[str, ...] = ()  # leave out "seccomp", "landlock" or "namespaces": to test each layer alone

    def __post_init__(self) -> None:
        if self.mode not in MODES:
            raise ValueError(f"sandbox mode {self.mode!r}: expected one of {', '.join(MODES)}")


@dataclass
class SandboxResult:
    status: str  # passed | failed | blocked | timeout | killed | memory
    returncode: int | None
    seconds: float
    stdout: str = ""
    stderr: str = ""
    protections: str = ""  # the layers that held in the child, e.g. "hook+userns+netns+...+seccomp"
    notes: list[str] = field(default_factory=list)  # why a layer is missing

    @property
    def passed(self) -> bool:
        return self.status == "passed"

    @property
    def layers(self) -> set[str]:
        return set(self.protections.split("+")) if self.protections else set()


def run_python(program: str, limits: Limits = Limits()) -> SandboxResult:
    """Run `program` as a script in a sandboxed child Python; any non-zero ending is a failure."""
    workdir = Path(tempfile.mkdtemp(prefix="herd-sandbox-"))
    logs = Path(tempfile.mkdtemp(prefix="herd-sandbox-out-"))  # outside the program's folder: not its to touch
    try:
        return _run_in(workdir, logs, program, limits)
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
        shutil.rmtree(logs, ignore_errors=True)


def child_config(limits: Limits) -> dict:
    return {
        "cpu_s": limits.cpu_s,
        "memory_bytes": limits.memory_mb << 20,
        "file_bytes": limits.file_mb << 20,
        "disk_mb": limits.disk_mb,
        "tasks": limits.tasks,
        "mode": limits.mode,
        "read_paths": list(limits.read_paths),
        "without": list(limits.without),
    }


def child_env(workdir: Path, extra: dict[str, str]) -> dict[str, str]:
    # Nothing of the caller's environment (tokens, keys) reaches the program; BLAS stays on one thread.
    env = {"PATH": "/usr/bin:/bin", "LANG": "C.UTF-8", "PYTHONHASHSEED": "0", "HOME": str(workdir)}
    env |= {"TMPDIR": str(workdir), "OMP_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
    return env | extra


def _run_in(workdir: Path, logs: Path, program: str, limits: Limits) -> SandboxResult:
    (workdir / "program.py").write_text(program, encoding="utf-8")
    python = limits.python or sys.executable
    cmd = [python, "-I", "-B", str(LAUNCHER), json.dumps(child_config(limits))]
    start = time.monotonic()
    with open(logs / "stdout", "wb") as out, open(logs / "stderr", "wb") as err:
        proc = subprocess.Popen(
            cmd,
            cwd=workdir,
            env=child_env(workdir, limits.env),
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=err,
            start_new_session=True,
        )
        try:
            code: int | None = proc.wait(timeout=limits.wall_s)
        except subprocess.TimeoutExpired:
            code = None
        finally:
            _kill_group(proc)
    seconds = time.monotonic() - start
    stdout, (protections, notes, stderr) = _tail(logs / "stdout"), _split_stderr(logs / "stderr")
    return SandboxResult(_status(code, stderr), code, seconds, stdout, stderr, protections, notes)


def _split_stderr(path: Path) -> tuple[str, list[str], str]:
    """The launcher's own lines come first: the layers that held, then notes on missing ones."""
    with open(path, "rb") as f:
        head = f.read(4096).decode("utf-8", "replace").split("\n")
    protections, notes, skip = "", [], 0
    for line in head[:-1]:
        if not line.startswith("herd-sandbox: ") or line.startswith("herd-sandbox: blocked"):
            break
        text = line.removeprefix("herd-sandbox: ")
        if text.startswith("note: "):
            notes.append(text.removeprefix("note: "))
        else:
            protections = text
        skip += len(line.encode()) + 1
    return protections, notes, _tail(path, skip=skip)


def _kill_group(proc: subprocess.Popen) -> None:
    # The child leads its own session: killing the group also kills anything it managed to start.
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()


def _tail(path: Path, limit: int = 8192, skip: int = 0) -> str:
    with open(path, "rb") as f:
        f.seek(max(skip, os.fstat(f.fileno()).st_size - limit))
        return f.read().decode("utf-8", "replace")


def _status(code: int | None, stderr: str) -> str:
    if code is None:
        return "timeout"
    if code == 0:
        return "passed"
    if code == BLOCKED_EXIT and "herd-sandbox: blocked" in stderr:
        return "blocked"
    if code < 0:  # a signal: SIGXCPU/SIGKILL from the CPU limit
        return "killed"
    if "MemoryError" in stderr:
        return "memory"
    return "failed"
