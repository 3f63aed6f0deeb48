"""Run model-written JavaScript with Node.js behind the sandbox's kernel layers (for code translation [P §4.3.1]).

herd.sandbox runs Python only: its launcher execs the program in the interpreter it has locked down, and
its seccomp filter forbids execve, so Node cannot start under it. This launcher reuses the sandbox's
pieces (herd/sandbox/launch.py) up to the last step and then execs Node:

  rlimits (CPU, file size, core) · a new network and mount namespace (no network) with a size-capped
  tmpfs as the folder · a uid of its own when root · no_new_privs · Landlock: read only the Node binary,
  the system libraries and the folder, execute only Node, no TCP, no signals outside ·
  Node's own permission model (`--experimental-permission`: no child processes, workers or addons,
  file reads only in the folder, no writes) · a wall-clock timeout on a killed-as-a-whole session.

What it gives up against run_python: the seccomp filter (it would forbid the exec of Node itself) and
the address-space limit (V8 reserves far more virtual memory than it uses; `--max-old-space-size` caps
the heap instead). The result says which layers held.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import tempfile
import textwrap
import time
from pathlib import Path

from herd.sandbox import Limits, SandboxResult
from herd.sandbox.runner import _kill_group, _status, _tail, child_env

NODE = "/usr/bin/node"
NODE_LIMITS = Limits(cpu_s=5, wall_s=15.0)

# Runs in `python -I -B` with the sandbox launcher's folder on its path; the last step execs Node.
_WRAPPER = textwrap.dedent(
    """
    import json, os, resource, sys
    sys.path.insert(0, sys.argv[2])
    import launch as L

    cfg = json.loads(sys.argv[1])
    own = os.path.realpath(os.getcwd())
    source = open("program.js", encoding="utf-8").read()
    L.set_limits(cfg)
    held = []
    as_root = os.geteuid() == 0
    uid = L.RUN_UID_BASE + os.getpid() if as_root else os.getuid()
    try:
        if as_root:
            L.unshare(L.CLONE_NEWNET | L.CLONE_NEWNS)
        else:
            L.unshare(L.CLONE_NEWUSER | L.CLONE_NEWNET | L.CLONE_NEWNS)
            L.map_identity(os.getuid(), os.getgid())
        L.mount_tmpfs(own, cfg["disk_mb"], uid)
        held += ["netns", "tmpfs"]
    except OSError as e:
        print(f"herd-sandbox: note: no namespaces: {e}", file=sys.stderr)
    os.chdir(own)
    with open("program.js", "w", encoding="utf-8") as f:
        f.write(source)
    if as_root:
        os.chown(own, uid, uid); os.chown("program.js", uid, uid)
        L.become_run_user(uid, keep_read=False)
        held.append("uid")
    resource.setrlimit(resource.RLIMIT_NPROC, (cfg["tasks"], cfg["tasks"]))
    L._check(L.libc.prctl(L.PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0), "no_new_privs")
    abi = L.landlock_abi()
    if abi:
        reads = [p for p in ["/lib", "/lib64", "/usr/lib", "/usr/lib64", "/usr/share/nodejs", "/etc/ld.so.cache",
                             "/usr/share/zoneinfo", "/etc/localtime"] if os.path.exists(p)]
        # Node and its ELF interpreter are the only files that may be executed.
        run = L.FS_READ_FILE | L.FS_EXECUTE
        devices = {**L.DEVICES, cfg["node"]: run, **{p: run for p in cfg["interp"]}}
        held += L.apply_landlock(reads, devices, own, abi)
    os.write(2, ("herd-sandbox: " + "+".join(held + ["node-permission"]) + "\\n").encode())
    heap = f"--max-old-space-size={cfg['heap_mb']}"
    os.execv(cfg["node"], [cfg["node"], "--experimental-permission", f"--allow-fs-read={own}/*", heap,
                           "--no-warnings", "program.js"])
    """
)


def _interpreters(node: str) -> list[str]:
    """The ELF interpreter Node names (the kernel opens it for execution too, so Landlock must allow it)."""
    data = Path(node).read_bytes()[:4096]
    at = data.find(b"/lib")
    name = data[at : data.find(b"\0", at)].decode() if at >= 0 else ""
    return [p for p in {name, str(Path(name).resolve())} if p and Path(p).exists()]


def node_available(node: str = NODE) -> str | None:
    """None when Node runs here; else why not (for a skip reason)."""
    if not Path(node).is_file():
        return f"{node} not found (Debian package nodejs)"
    r = run_node("console.log(6 * 7)", node=node)
    if r.status != "passed" or r.stdout.strip() != "42":
        return f"{node} does not run in the sandbox: {r.status}: {r.stderr.strip()[-300:]}"
    return None


def run_node(program: str, limits: Limits = NODE_LIMITS, node: str = NODE) -> SandboxResult:
    """Run `program` (JavaScript) with Node in a locked-down child; a non-zero exit is a failure."""
    import herd.sandbox.launch as launch

    workdir = Path(tempfile.mkdtemp(prefix="herd-node-"))
    logs = Path(tempfile.mkdtemp(prefix="herd-node-out-"))
    try:
        (workdir / "program.js").write_text(program, encoding="utf-8")
        (logs / "wrapper.py").write_text(_WRAPPER, encoding="utf-8")
        cfg = {"cpu_s": limits.cpu_s, "file_bytes": limits.file_mb << 20, "disk_mb": limits.disk_mb,
               "tasks": limits.tasks, "node": node, "heap_mb": max(64, limits.memory_mb // 4),
               "interp": _interpreters(node)}  # fmt: skip
        sandbox_dir = str(Path(launch.__file__).parent)
        cmd = [sys.executable, "-I", "-B", str(logs / "wrapper.py"), json.dumps(cfg), sandbox_dir]
        start = time.monotonic()
        with open(logs / "stdout", "wb") as out, open(logs / "stderr", "wb") as err:
            env = child_env(workdir, {"OPENSSL_CONF": "/dev/null"})  # Node reads no system OpenSSL config
            proc = subprocess.Popen(cmd, cwd=workdir, env=env, stdin=subprocess.DEVNULL, stdout=out, stderr=err,
                                    start_new_session=True)  # fmt: skip
            try:
                code: int | None = proc.wait(timeout=limits.wall_s)
            except subprocess.TimeoutExpired:
                code = None
            finally:
                _kill_group(proc)
        stderr = _tail(logs / "stderr")
        head, _, rest = stderr.partition("\n")
        protections = head.removeprefix("herd-sandbox: ") if head.startswith("herd-sandbox: ") else ""
        rest = rest if protections else stderr
        return SandboxResult(_status(code, rest), code, time.monotonic() - start, _tail(logs / "stdout"), rest,
                             protections)  # fmt: skip
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
        shutil.rmtree(logs, ignore_errors=True)
