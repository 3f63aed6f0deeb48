"""The hostile-program suite: each program first disarms the Python-level guard, then attacks.

A case holds when the program reports no success ("ESCAPED ...") and the evidence outside agrees: no file
appeared or vanished outside, no connection or datagram reached a listener, the victim process lives,
no secret reached the output. Each case names the kernel layers expected to stop it; `herd sandbox check`
and tests/unit/sandbox run the suite on the current machine.
"""

from __future__ import annotations

import contextlib
import json
import os
import socket
import subprocess
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

from herd.sandbox.runner import Limits, SandboxResult, run_python

# Defeats the audit hook both ways an attacker would: (1) patch what it calls (its die() calls os._exit,
# so it returns and the event goes through); (2) reach its state through the garbage collector (empty its
# tables, replace its die()). After this, only the kernel stands between the program and the machine.
DISARM = r"""
import gc, json, os, sys
T = json.loads(__TARGETS__)
_real_exit = os._exit
def _disarm_by_patching():
    os._exit = lambda code: None
def _disarm_through_gc():
    for obj in gc.get_objects():
        if isinstance(obj, dict) and "HOOK_BLOCK" in obj:
            obj["HOOK_BLOCK"], obj["HOOK_PATHS"], obj["WRITE_FLAGS"] = frozenset(), frozenset(), 0
        elif type(obj).__name__ == "function" and obj.__name__ == "die":
            obj.__code__ = (lambda event, detail: None).__code__
def attempt(what, fn):
    try:
        out = fn()
    except BaseException as e:
        say("HELD", what, type(e).__name__, e)
    else:
        say("ESCAPED", what, repr(out)[:200])
def say(*words):
    line = (" ".join(str(w) for w in words) + "\n").encode()
    try:
        os.write(1, line)
    except OSError:  # stdout may be what the attack filled
        os.write(2, line)
"""
DISARM_BOTH = DISARM + "_disarm_by_patching()\n_disarm_through_gc()\n"


@dataclass(frozen=True)
class Case:
    name: str
    threat: str  # files | processes | network | signals | resources | guard
    code: str  # runs after DISARM_BOTH; prints ESCAPED/HELD lines
    layers: tuple[str, ...] = ()  # kernel layers expected to stop it; () = must hold everywhere


def _write(path: str) -> str:
    return f"attempt('write', lambda: open({path}, 'w').write('pwned'))\n"


_FORK = """def f():
    pid = os.fork()
    if pid == 0:
        _real_exit(0)
    os.waitpid(pid, 0)
    return pid
"""
_FORK_EXEC = """import _posixsubprocess, subprocess
def f():
    common = ([b'/bin/true'], [b'/bin/true'], True, (), None, None, -1, -1, -1, -1, -1, -1, *os.pipe(),
              False, False)
    try:
        return _posixsubprocess.fork_exec(*common, -1, None, None, None, -1, None, subprocess._USE_VFORK)
    except (TypeError, AttributeError):
        return _posixsubprocess.fork_exec(*common, -1, None, None, None, -1, None)
"""
_RAW_FORK = """import ctypes, platform
def f():
    if platform.machine() != 'x86_64':
        raise OSError('no raw fork number for this machine')
    libc = ctypes.CDLL(None, use_errno=True)
    pid = libc.syscall(57)
    if pid == 0:
        _real_exit(0)
    if pid < 0:
        raise OSError(ctypes.get_errno(), os.strerror(ctypes.get_errno()))
    return pid
"""
_PTRACE = """import ctypes
def f():
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.ptrace(16, os.getppid(), None, None) != 0:  # PTRACE_ATTACH the caller
        raise OSError(ctypes.get_errno(), os.strerror(ctypes.get_errno()))
    libc.ptrace(17, os.getppid(), None, None)
    return 'attached'
"""
_FORK_BOMB = """def f():
    made = 0
    for _ in range(200):
        try:
            pid = os.fork()
        except OSError:
            continue
        if pid == 0:
            _real_exit(0)
        made += 1
        os.waitpid(pid, 0)
    if made:
        return f'{made} processes'
    raise OSError('no fork succeeded')
"""
_THREAD_BOMB = """import threading
def f():
    threading.stack_size(65536)
    stop, made = threading.Event(), 0
    try:
        for _ in range(T['threads']):
            threading.Thread(target=stop.wait, daemon=True).start()
            made += 1
    except BaseException as e:
        stop.set()
        raise RuntimeError(f'stopped after {made} threads: {e}')
    stop.set()
    return f'{made} threads'
"""
_TCP = """def f(addr):
    import socket
    return socket.create_connection(addr, timeout=2).getpeername()
"""
_UDP = """def f():
    import socket
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    return s.sendto(b'pwned', ('127.0.0.1', T['udp']))
"""
_UNIX = """def f(addr):
    import socket
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.connect(addr)
    return addr
"""
_DISK = """def f():
    total, chunk = 0, b'x' * (1 << 20)
    try:
        for i in range(100000):
            with open(f'fill{i}', 'wb') as out:  # files under the file-size limit: only the folder's cap is left
                out.write(chunk)
                out.flush()
                total += len(chunk)
    except OSError as e:
        if total > T['disk_bytes'] + (1 << 20):
            return f'wrote {total} bytes'
        raise OSError(f'stopped after {total >> 20} MiB: {e}')
    return f'wrote {total} bytes'
"""
_OUTPUT = """def f():
    total, chunk = 0, b'y' * (1 << 20)
    try:
        while total < 4 * T['file_bytes']:
            total += os.write(1, chunk)
    except OSError as e:
        raise OSError(f'stopped after {total >> 20} MiB: {e}')
    return f'wrote {total} bytes'
"""


def cases() -> list[Case]:
    a = "attempt"
    return [
        # files
        Case("write a world-writable folder", "files", _write("T['outside'] + '/w.txt'"), ("landlock-fs",)),
        Case("write /dev/shm", "files", _write("'/dev/shm/' + T['stem']"), ("landlock-fs",)),
        Case(
            "write beside its folder",
            "files",
            _write("os.path.dirname(os.getcwd()) + '/' + T['stem']"),
            ("landlock-fs",),
        ),
        Case(
            "delete a file outside", "files", f"{a}('remove', lambda: os.remove(T['victim_file']))\n", ("landlock-fs",)
        ),
        Case(
            "write through a symlink",
            "files",
            f"os.symlink(T['outside'], 'link')\n{a}('via link', lambda: open('link/s.txt', 'w').write('x'))\n",
            ("landlock-fs",),
        ),
        Case(
            "read a world-readable secret",
            "files",
            f"{a}('read', lambda: open(T['secret_file']).read())\n",
            ("landlock-fs",),
        ),
        Case("read /etc/passwd", "files", f"{a}('read', lambda: open('/etc/passwd').read()[:60])\n", ("landlock-fs",)),
        Case("list /", "files", f"{a}('listdir', lambda: os.listdir('/'))\n", ("landlock-fs",)),
        Case(
            "read the caller's environment",
            "files",
            f"{a}('environ', lambda: open(f'/proc/{{os.getppid()}}/environ').read())\n"
            f"{a}('os.environ', lambda: os.environ[T['secret_env']])\n",
            ("landlock-fs",),
        ),
        # processes
        Case(
            "subprocess",
            "processes",
            f"import subprocess\n{a}('run', lambda: subprocess.run(['/bin/echo', 'ESCAPED echo']).returncode)\n",
            ("seccomp",),
        ),
        Case("os.fork", "processes", _FORK + f"{a}('fork', f)\n", ("seccomp",)),
        Case("_posixsubprocess.fork_exec", "processes", _FORK_EXEC + f"{a}('fork_exec', f)\n", ("seccomp",)),
        Case(
            "os.posix_spawn",
            "processes",
            f"{a}('spawn', lambda: os.posix_spawn('/bin/true', ['true'], {{}}))\n",
            ("seccomp",),
        ),
        Case(
            "os.execv",
            "processes",
            f"{a}('execv', lambda: os.execv('/bin/echo', ['echo', 'ESCAPED exec']))\n",
            ("seccomp", "landlock-fs"),
        ),
        Case("raw fork system call", "processes", _RAW_FORK + f"{a}('syscall fork', f)\n", ("seccomp",)),
        Case("ptrace the caller", "processes", _PTRACE + f"{a}('ptrace', f)\n", ("seccomp",)),
        Case("fork bomb", "processes", _FORK_BOMB + f"{a}('fork bomb', f)\n", ("seccomp",)),
        Case("thread bomb", "processes", _THREAD_BOMB + f"{a}('thread bomb', f)\n", ("nproc",)),
        # network
        Case(
            "TCP to loopback",
            "network",
            _TCP + f"{a}('tcp', lambda: f(('127.0.0.1', T['tcp'])))\n",
            ("netns", "seccomp", "landlock-net"),
        ),
        Case(
            "TCP to the machine's address",
            "network",
            _TCP + f"{a}('tcp', lambda: f((T['host_ip'], T['tcp'])) if T['host_ip'] else 1/0)\n",
            ("netns", "seccomp", "landlock-net"),
        ),
        Case("UDP to loopback", "network", _UDP + f"{a}('udp', f)\n", ("netns", "seccomp")),
        Case("unix socket by path", "network", _UNIX + f"{a}('unix', lambda: f(T['unix_path']))\n", ("seccomp",)),
        Case(
            "abstract unix socket",
            "network",
            _UNIX + f"{a}('abstract', lambda: f('\\0' + T['abstract']))\n",
            ("netns", "seccomp", "landlock-scope"),
        ),
        # signals
        Case(
            "signal the caller",
            "signals",
            f"{a}('kill 0', lambda: os.kill(os.getppid(), 0))\n",
            ("seccomp", "landlock-scope", "uid"),
        ),
        Case(
            "kill a process outside",
            "signals",
            f"import signal\n{a}('kill', lambda: os.kill(T['victim_pid'], 9))\n",
            ("seccomp", "landlock-scope", "uid"),
        ),
        Case(
            "pidfd_send_signal",
            "signals",
            f"import signal\n{a}('pidfd', lambda: signal.pidfd_send_signal(os.pidfd_open(T['victim_pid']), 9))\n",
            ("seccomp", "landlock-scope", "uid"),
        ),
        # resources
        Case("busy loop", "resources", "while True:\n    pass\n"),
        Case("sleep forever", "resources", "import time\ntime.sleep(3600)\n"),
        Case("allocate 10 GB", "resources", f"{a}('alloc', lambda: len(bytearray(10 * 1024**3)))\n"),
        Case("fill the disk", "resources", _DISK + f"{a}('disk', f)\n", ("tmpfs",)),
        Case("huge output", "resources", _OUTPUT + f"{a}('output', f)\n"),
    ]


GUARD_CASES = {  # the audit hook alone: each way of disarming it must work, or the suite proves nothing
    "patch what the guard calls": "_disarm_by_patching()\n",
    "reach the guard's state through the garbage collector": "_disarm_through_gc()\n",
}
GUARD_PROBE = "import resource\nresource.setrlimit(resource.RLIMIT_CORE, (0, 0))\nprint('DISARMED', flush=True)\n"


@dataclass
class Verdict:
    case: Case
    result: SandboxResult
    held: bool
    evidence: list[str] = field(default_factory=list)  # what says it escaped, if anything
    expected: bool = True  # a layer it names held here (or it names none)

    @property
    def how(self) -> str:
        out = self.result.stdout + "\n" + self.result.stderr
        held = [line.removeprefix("HELD ") for line in out.splitlines() if line.startswith("HELD")]
        return held[0][:90] if held else self.result.status


@dataclass
class Targets:
    """What the programs attack, made by the caller (as the uid that runs the suite): files, listeners,
    a victim process, an environment secret."""

    root: Path
    tcp: socket.socket
    udp: socket.socket
    unix: socket.socket
    abstract: socket.socket
    victim: subprocess.Popen
    values: dict

    def restore(self) -> None:
        victim = Path(self.values["victim_file"])
        if not victim.exists():
            victim.write_text("keep me")
            os.chmod(victim, 0o666)

    def escaped(self, stem_paths: list[Path]) -> list[str]:
        out = [f"file {p}" for p in stem_paths if p.exists()]
        if not Path(self.values["victim_file"]).exists():
            out.append("victim file deleted")
        if self.victim.poll() is not None:
            out.append("victim process killed")
        for name, sock in (("tcp", self.tcp), ("unix", self.unix), ("abstract", self.abstract)):
            with contextlib.suppress(BlockingIOError):
                sock.accept()[0].close()
                out.append(f"{name} connection arrived")
        with contextlib.suppress(BlockingIOError):
            self.udp.recv(64)
            out.append("udp datagram arrived")
        return out


def _host_ip() -> str:
    with contextlib.suppress(OSError), socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.connect(("192.0.2.1", 9))  # TEST-NET: no packet is sent; this only picks the outgoing address
        ip = s.getsockname()[0]
        return "" if ip.startswith("127.") else ip
    return ""


@contextlib.contextmanager
def targets(limits: Limits) -> Iterator[Targets]:
    root = Path(tempfile.mkdtemp(prefix="herd-hostile-"))
    os.chmod(root, 0o755)
    outside = root / "open"
    outside.mkdir(mode=0o777)
    os.chmod(outside, 0o777)  # world-writable: file permissions alone would not stop a write
    token = f"herd-secret-{os.getpid()}-{time.monotonic_ns()}"
    (root / "secret").write_text(token)
    os.chmod(root / "secret", 0o644)  # world-readable: only Landlock stands in the way
    (outside / "victim").write_text("keep me")
    os.chmod(outside / "victim", 0o666)
    socks = _listeners(root)
    victim = subprocess.Popen(["sleep", "600"], stdin=subprocess.DEVNULL)
    os.environ["HERD_SANDBOX_SECRET"] = token  # the caller's environment must not reach the program
    values = {
        "outside": str(outside),
        "secret_file": str(root / "secret"),
        "victim_file": str(outside / "victim"),
        "stem": f"herd-escape-{os.getpid()}",
        "secret_env": "HERD_SANDBOX_SECRET",
        "victim_pid": victim.pid,
        "tcp": socks[0].getsockname()[1],
        "udp": socks[1].getsockname()[1],
        "unix_path": str(root / "sock"),
        "abstract": f"herd-hostile-{os.getpid()}",
        "host_ip": _host_ip(),
        "threads": 4 * limits.tasks,
        "disk_bytes": limits.disk_mb << 20,
        "file_bytes": limits.file_mb << 20,
    }
    try:
        yield Targets(root, *socks, victim, values)
    finally:
        os.environ.pop("HERD_SANDBOX_SECRET", None)
        victim.kill()
        victim.wait()
        for s in socks:
            s.close()
        subprocess.run(["rm", "-rf", str(root)], check=False)


def _listeners(root: Path) -> list[socket.socket]:
    tcp = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    tcp.bind(("0.0.0.0", 0))  # loopback and the machine's own address
    udp = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    udp.bind(("127.0.0.1", 0))
    unix = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    unix.bind(str(root / "sock"))
    os.chmod(root / "sock", 0o777)
    abstract = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    abstract.bind(f"\0herd-hostile-{os.getpid()}")
    for s in (tcp, unix, abstract):
        s.listen(8)
    for s in (tcp, udp, unix, abstract):
        s.setblocking(False)
    return [tcp, udp, unix, abstract]


def run_case(case: Case, t: Targets, limits: Limits) -> Verdict:
    program = DISARM_BOTH.replace("__TARGETS__", repr(json.dumps(t.values))) + case.code
    stems = [Path(t.values["outside"]) / "w.txt", Path(t.values["outside"]) / "s.txt"]
    stems += [Path("/dev/shm") / t.values["stem"], Path(tempfile.gettempdir()) / t.values["stem"]]
    r = run_python(program, limits)
    said = [line for line in (r.stdout + "\n" + r.stderr).splitlines() if line.startswith(("HELD", "ESCAPED"))]
    evidence = [line for line in said if line.startswith("ESCAPED")]
    if "attempt(" in case.code and not said:
        evidence.append(f"the attack never ran ({r.status}): {r.stderr[-200:]!r}")
    evidence += t.escaped(stems)
    secret = os.environ.get("HERD_SANDBOX_SECRET", "")
    if secret and secret in r.stdout + r.stderr:
        evidence.append("a secret reached the output")
    if r.status == "blocked":
        evidence.append("the Python guard was not disarmed: this run proves nothing about the kernel")
    evidence += _resource_evidence(case, r, limits)
    for p in stems:
        with contextlib.suppress(OSError):
            p.unlink()
    t.restore()  # each case meets the same targets, whatever the one before it did
    expected = not case.layers or bool(r.layers.intersection(case.layers))
    return Verdict(case, r, not evidence, evidence, expected)


def _resource_evidence(case: Case, r: SandboxResult, limits: Limits) -> list[str]:
    if r.seconds > limits.wall_s + 3:
        return [f"ran {r.seconds:.1f}s past its wall-clock limit"]
    if case.threat == "resources" and r.status == "passed" and "HELD" not in r.stdout + r.stderr:
        return ["ended normally"]
    return []


def run_guard_checks(limits: Limits) -> dict[str, bool]:
    """Each way of disarming the audit hook, alone: True where the program then did what the hook forbids."""
    out = {}
    for name, disarm in GUARD_CASES.items():
        r = run_python(DISARM.replace("__TARGETS__", repr("{}")) + disarm + GUARD_PROBE, limits)
        out[name] = "DISARMED" in r.stdout
    return out


def run_suite(limits: Limits, only: Callable[[Case], bool] = lambda c: True) -> list[Verdict]:
    with targets(limits) as t:
        return [run_case(c, t, limits) for c in cases() if only(c)]


def quick_limits(mode: str = "auto", python: str = "", without: tuple[str, ...] = ()) -> Limits:
    """Small limits that keep a whole suite to a few seconds per mode."""
    return Limits(
        cpu_s=1, wall_s=3, memory_mb=512, file_mb=4, disk_mb=8, tasks=32, mode=mode, python=python, without=without
    )
