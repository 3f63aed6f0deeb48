"""Run untrusted generated Python in a subprocess that cannot hurt the machine, and say how it ended.

What is enforced (docs/evaluation.md has the full account):
- a fresh temp folder as working directory, removed afterwards; stdout/stderr go to files there;
- a new session / process group, killed as a whole (SIGKILL) when the program ends or times out;
- a wall-clock timeout, RLIMIT_CPU, RLIMIT_AS (memory), RLIMIT_FSIZE, no core files;
- an audit hook (PEP 578) in the child that ends it (exit 113) on fork/exec/spawn/subprocess, any socket,
  ctypes, and any file write, delete, rename or mkdir outside its folder;
- when run as root (Linux): a new network namespace (no interfaces: the network is unreachable even
  through C code), then the child drops to uid/gid nobody with RLIMIT_NPROC = 0, so forking fails in the
  kernel and the file system's permissions stop writes outside world-writable folders.
Without root only the first four and the audit hook hold; an audit hook can be escaped by native code.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

BLOCKED_EXIT = 113

# Runs inside the child before the untrusted program: limits first, then privileges, then the hook.
_GUARD = r"""
import os, sys, resource
cpu, mem, fsize, drop = (int(a) for a in sys.argv[2:6])
resource.setrlimit(resource.RLIMIT_CPU, (cpu, cpu + 1))
resource.setrlimit(resource.RLIMIT_FSIZE, (fsize, fsize))
resource.setrlimit(resource.RLIMIT_CORE, (0, 0))
state = ["hook"]
if drop and os.getuid() == 0:
    import ctypes
    if ctypes.CDLL(None, use_errno=True).unshare(0x40000000) == 0:  # CLONE_NEWNET: no interfaces at all
        state.append("netns")
# The interpreter's own files may be unreadable once privileges are gone: import what programs use first.
for name in ("abc array bisect calendar cmath collections collections.abc copy dataclasses datetime decimal enum "
             "fractions functools hashlib heapq io itertools json math numbers operator random re statistics "
             "string struct textwrap time typing unicodedata traceback linecache socket subprocess threading "
             "encodings.idna").split():
    try:
        __import__(name)
    except Exception:
        pass
if drop and os.getuid() == 0:
    os.setgroups([]); os.setgid(65534); os.setuid(65534)
    resource.setrlimit(resource.RLIMIT_NPROC, (0, 0))  # checked at fork for non-root users
    state.append("nobody")
resource.setrlimit(resource.RLIMIT_AS, (mem, mem))
ROOT = os.path.realpath(os.getcwd())
WRITE = os.O_WRONLY | os.O_RDWR | os.O_CREAT | os.O_APPEND | os.O_TRUNC
BLOCK = {"os.fork", "os.forkpty", "os.posix_spawn", "os.spawn", "os.exec", "os.system", "subprocess.Popen",
         "os.kill", "os.killpg", "socket.__new__", "socket.connect", "socket.bind", "socket.getaddrinfo",
         "socket.sendto", "socket.sendmsg", "ctypes.dlopen", "ctypes.dlsym", "ctypes.cdata", "ctypes.call_function",
         "os.chroot", "os.setuid", "resource.setrlimit", "resource.prlimit", "sys._current_frames"}
PATHS = {"os.remove", "os.rename", "os.rmdir", "os.mkdir", "os.chmod", "os.chown", "os.symlink", "os.link",
         "os.truncate", "os.utime", "shutil.rmtree", "shutil.copyfile", "shutil.move", "os.chdir"}
def inside(p):
    try:
        full = os.path.realpath(os.path.join(ROOT, os.fsdecode(p)))
    except Exception:
        return False
    return full == ROOT or full.startswith(ROOT + os.sep)
def die(event, detail):
    os.write(2, ("\nherd-sandbox: blocked %s %s\n" % (event, detail)).encode("utf-8", "replace"))
    os._exit(113)
def hook(event, args):
    if event in BLOCK:
        die(event, repr(args)[:200])
    if event == "open":
        path, mode, flags = args
        writing = (isinstance(mode, str) and any(c in mode for c in "wax+")) or (
            isinstance(flags, int) and flags & WRITE)
        if writing and not isinstance(path, int) and not inside(path):
            die(event, repr(path))
    elif event in PATHS:
        for a in args[:2]:
            if isinstance(a, (str, bytes, os.PathLike)) and not inside(a):
                die(event, repr(a))
os.write(2, ("herd-sandbox: " + "+".join(state) + "\n").encode())
with open(sys.argv[1], encoding="utf-8") as f:
    code = compile(f.read(), "program.py", "exec")
sys.argv = ["program.py"]
sys.addaudithook(hook)
exec(code, {"__name__": "__main__", "__builtins__": __builtins__})
"""


@dataclass(frozen=True)
class Limits:
    cpu_s: int = 10
    wall_s: float = 20.0
    memory_mb: int = 1024
    file_mb: int = 16
    drop_privileges: bool = True  # as root: network namespace + uid nobody + RLIMIT_NPROC 0


@dataclass
class SandboxResult:
    status: str  # passed | failed | blocked | timeout | killed | memory
    returncode: int | None
    seconds: float
    stdout: str = ""
    stderr: str = ""
    protections: str = ""  # what held in the child, e.g. "hook+netns+nobody"

    @property
    def passed(self) -> bool:
        return self.status == "passed"


def run_python(program: str, limits: Limits = Limits()) -> SandboxResult:
    """Run `program` as a script in a sandboxed child Python; any non-zero ending is a failure."""
    workdir = Path(tempfile.mkdtemp(prefix="herd-sandbox-"))
    try:
        return _run_in(workdir, program, limits)
    finally:
        shutil.rmtree(workdir, ignore_errors=True)


def _run_in(workdir: Path, program: str, limits: Limits) -> SandboxResult:
    (workdir / "program.py").write_text(program, encoding="utf-8")
    (workdir / "_guard.py").write_text(_GUARD, encoding="utf-8")
    drop = limits.drop_privileges and hasattr(os, "getuid") and os.getuid() == 0
    if drop:
        os.chown(workdir, 65534, 65534)  # the child, as nobody, may write only here
        for f in workdir.iterdir():
            os.chown(f, 65534, 65534)
    args = [str(a) for a in (limits.cpu_s, limits.memory_mb << 20, limits.file_mb << 20, int(drop))]
    cmd = [sys.executable, "-I", "-B", str(workdir / "_guard.py"), str(workdir / "program.py"), *args]
    env = {"PATH": "/usr/bin:/bin", "LANG": "C.UTF-8", "PYTHONHASHSEED": "0", "HOME": str(workdir)}
    start = time.monotonic()
    with open(workdir / "stdout", "wb") as out, open(workdir / "stderr", "wb") as err:
        proc = subprocess.Popen(
            cmd, cwd=workdir, env=env, stdin=subprocess.DEVNULL, stdout=out, stderr=err, start_new_session=True
        )
        try:
            code: int | None = proc.wait(timeout=limits.wall_s)
        except subprocess.TimeoutExpired:
            code = None
        finally:
            _kill_group(proc)
    seconds = time.monotonic() - start
    stdout, stderr = _tail(workdir / "stdout"), _tail(workdir / "stderr")
    protections = ""
    if stderr.startswith("herd-sandbox: "):
        first, _, stderr = stderr.partition("\n")
        protections = first.removeprefix("herd-sandbox: ")
    return SandboxResult(_status(code, stderr), code, seconds, stdout, stderr, protections)


def _kill_group(proc: subprocess.Popen) -> None:
    # The child leads its own session: killing the group also kills anything it managed to start.
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()


def _tail(path: Path, limit: int = 8192) -> str:
    data = path.read_bytes()
    return data[-limit:].decode("utf-8", "replace")


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
