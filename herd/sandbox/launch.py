"""The sandbox's child: apply the kernel layers to this process, then run the untrusted program in it.

Run as `python -I -B launch.py CONFIG_JSON` in the program's folder. Standard library only: it runs in
whichever interpreter the caller picks, and must import nothing the program could have planted.
Every layer is applied before the program's first line, so a program that disarms the Python-level
audit hook still meets the kernel's. The first stderr line names the layers that held:
`herd-sandbox: hook+userns+netns+tmpfs+landlock-fs+landlock-net+landlock-scope+seccomp`.
docs/sandbox.md has the threat model.
"""

from __future__ import annotations

import ctypes
import json
import os
import resource
import stat
import struct
import sys

BLOCKED_EXIT = 113
# Root path: the program runs under a uid of its own (this base + its pid), so RLIMIT_NPROC counts
# only its own tasks and no other process on the machine shares its uid.
RUN_UID_BASE = 0x7F000000

libc = ctypes.CDLL(None, use_errno=True)
libc.syscall.restype = ctypes.c_long

# --- namespaces and identity ---------------------------------------------------------------------
CLONE_NEWNS, CLONE_NEWUSER, CLONE_NEWNET = 0x00020000, 0x10000000, 0x40000000
MS_REC, MS_PRIVATE, MS_NOSUID, MS_NODEV = 0x4000, 1 << 18, 0x2, 0x4
PR_SET_KEEPCAPS, PR_SET_NO_NEW_PRIVS, PR_SET_SECCOMP = 8, 38, 22
CAP_DAC_READ_SEARCH = 2


class _CapHeader(ctypes.Structure):
    _fields_ = [("version", ctypes.c_uint32), ("pid", ctypes.c_int)]


class _CapData(ctypes.Structure):
    _fields_ = [("effective", ctypes.c_uint32), ("permitted", ctypes.c_uint32), ("inheritable", ctypes.c_uint32)]


def _check(ret: int, what: str) -> None:
    if ret != 0:
        err = ctypes.get_errno()
        raise OSError(err, f"{what}: {os.strerror(err)}")


def set_capabilities(mask: int) -> None:
    """Keep only the capabilities in `mask` (bits of the first 32), effective and permitted."""
    data = (_CapData * 2)()
    data[0].effective = data[0].permitted = mask
    _check(libc.capset(ctypes.byref(_CapHeader(0x20080522, 0)), data), "capset")


def unshare(flags: int) -> None:
    _check(libc.unshare(flags), "unshare")


def map_identity(uid: int, gid: int) -> None:
    """Inside a fresh user namespace, be the same uid/gid as outside (the one mapping allowed unprivileged)."""
    for name, text in (("setgroups", "deny"), ("uid_map", f"{uid} {uid} 1"), ("gid_map", f"{gid} {gid} 1")):
        with open(f"/proc/self/{name}", "w") as f:
            f.write(text)


def mount_tmpfs(path: str, size_mb: int, uid: int) -> None:
    """A private, size-capped tmpfs over the program's folder: disk use is bounded, and it vanishes with us."""
    _check(libc.mount(None, b"/", None, MS_REC | MS_PRIVATE, None), "mount --make-rprivate /")
    opts = f"size={size_mb}m,nr_inodes=4096,mode=0700,uid={uid},gid={uid}".encode()
    _check(libc.mount(b"tmpfs", path.encode(), b"tmpfs", MS_NOSUID | MS_NODEV, opts), "mount tmpfs")


def become_run_user(uid: int, keep_read: bool) -> None:
    """Root path: give up root for a uid nobody else has; keep CAP_DAC_READ_SEARCH only if the interpreter
    lives where other users cannot read (e.g. under /root); Landlock then decides what may be read."""
    libc.prctl(PR_SET_KEEPCAPS, 1, 0, 0, 0)
    os.setgroups([])
    os.setresgid(uid, uid, uid)
    os.setresuid(uid, uid, uid)
    set_capabilities(1 << CAP_DAC_READ_SEARCH if keep_read else 0)
    libc.prctl(PR_SET_KEEPCAPS, 0, 0, 0, 0)


def readable_by_all(path: str) -> bool:
    """Can a stranger reach and read `path` through ordinary permissions?"""
    try:
        st = os.stat(path)
        if not st.st_mode & stat.S_IROTH:
            return False
        parent = os.path.dirname(os.path.abspath(path))
        while parent != "/":
            if not os.stat(parent).st_mode & stat.S_IXOTH:
                return False
            parent = os.path.dirname(parent)
    except OSError:
        return False
    return True


# --- Landlock (files, TCP, signals) --------------------------------------------------------------
LL_CREATE, LL_ADD_RULE, LL_RESTRICT = 444, 445, 446  # the same numbers on every architecture
LL_VERSION = 1
FS_EXECUTE, FS_WRITE_FILE, FS_READ_FILE, FS_READ_DIR = 1, 2, 4, 8
FS_REMOVE_DIR, FS_REMOVE_FILE, FS_MAKE_CHAR, FS_MAKE_DIR = 16, 32, 64, 128
FS_MAKE_REG, FS_MAKE_SOCK, FS_MAKE_FIFO, FS_MAKE_BLOCK, FS_MAKE_SYM = 256, 512, 1024, 2048, 4096
FS_REFER, FS_TRUNCATE, FS_IOCTL_DEV = 1 << 13, 1 << 14, 1 << 15  # ABI 2, 3, 5
FILE_ONLY = FS_EXECUTE | FS_WRITE_FILE | FS_READ_FILE | FS_TRUNCATE | FS_IOCTL_DEV  # rights a file rule may hold
NET_BIND_TCP, NET_CONNECT_TCP = 1, 2  # ABI 4
SCOPE_ABSTRACT_UNIX, SCOPE_SIGNAL = 1, 2  # ABI 6
READ = FS_READ_FILE | FS_READ_DIR
OWN_FOLDER = (
    (READ | FS_WRITE_FILE | FS_REMOVE_DIR | FS_REMOVE_FILE | FS_MAKE_DIR | FS_MAKE_REG | FS_MAKE_SYM | FS_MAKE_FIFO)
    | FS_REFER
    | FS_TRUNCATE
)


def landlock_abi() -> int:
    """The kernel's Landlock ABI version; 0 where Landlock is absent or disabled."""
    abi = libc.syscall(LL_CREATE, None, 0, LL_VERSION)
    return max(int(abi), 0)


def _handled_fs(abi: int) -> int:
    handled = (1 << 13) - 1
    for version, bit in ((2, FS_REFER), (3, FS_TRUNCATE), (5, FS_IOCTL_DEV)):
        if abi >= version:
            handled |= bit
    return handled


def apply_landlock(reads: list[str], devices: dict[str, int], own: str, abi: int) -> list[str]:
    """Read `reads`, use `devices` as given, do anything in `own`; every other path, every TCP bind/connect
    and every signal or abstract socket outside this sandbox is refused by the kernel."""
    handled = _handled_fs(abi)
    net = NET_BIND_TCP | NET_CONNECT_TCP if abi >= 4 else 0
    scoped = SCOPE_ABSTRACT_UNIX | SCOPE_SIGNAL if abi >= 6 else 0
    attr = struct.pack("<QQQ", handled, net, scoped)[: 8 if abi < 4 else 16 if abi < 6 else 24]
    fd = libc.syscall(LL_CREATE, attr, len(attr), 0)
    _check(0 if fd >= 0 else -1, "landlock_create_ruleset")
    try:
        rules = [(p, READ) for p in reads] + list(devices.items()) + [(own, OWN_FOLDER)]
        for path, access in rules:
            _allow(int(fd), path, access & handled)
        _check(libc.syscall(LL_RESTRICT, int(fd), 0), "landlock_restrict_self")
    finally:
        os.close(int(fd))
    return ["landlock-fs"] + (["landlock-net"] if net else []) + (["landlock-scope"] if scoped else [])


def _allow(ruleset: int, path: str, access: int) -> None:
    try:
        fd = os.open(path, os.O_PATH | os.O_CLOEXEC)
    except OSError:
        return  # a missing path needs no rule
    try:
        if not stat.S_ISDIR(os.fstat(fd).st_mode):
            access &= FILE_ONLY
        rule = struct.pack("<Qi", access, fd)  # struct landlock_path_beneath_attr is packed
        _check(libc.syscall(LL_ADD_RULE, ruleset, 1, rule, 0), f"landlock_add_rule {path}")
    finally:
        os.close(fd)


# --- seccomp (processes, sockets, kernel interfaces) ---------------------------------------------
AUDIT_ARCH_X86_64 = 0xC000003E
# System call numbers on x86_64; other architectures get no seccomp layer (reported as such).
# Refused with EPERM: new processes and programs, sockets, tracing, namespaces and mounts, kernel interfaces
# that bypass other layers (io_uring, BPF, handles to any file), and kernel administration.
X86_64_DENY = {
    "fork": 57,
    "vfork": 58,
    "execve": 59,
    "execveat": 322,
    "ptrace": 101,
    "process_vm_readv": 310,
    "process_vm_writev": 311,
    "socket": 41,
    "unshare": 272,
    "setns": 308,
    "mount": 165,
    "umount2": 166,
    "pivot_root": 155,
    "chroot": 161,
    "bpf": 321,
    "perf_event_open": 298,
    "userfaultfd": 323,
    "io_uring_setup": 425,
    "io_uring_enter": 426,
    "io_uring_register": 427,
    "open_by_handle_at": 304,
    "name_to_handle_at": 303,
    "keyctl": 250,
    "add_key": 248,
    "request_key": 249,
    "init_module": 175,
    "finit_module": 313,
    "delete_module": 176,
    "kexec_load": 246,
    "kexec_file_load": 320,
    "reboot": 169,
    "swapon": 167,
    "swapoff": 168,
    "acct": 163,
    "pidfd_send_signal": 424,
    "tkill": 200,
    "open_tree": 428,
    "move_mount": 429,
    "fsopen": 430,
    "fsconfig": 431,
    "fsmount": 432,
    "mount_setattr": 442,
    "pidfd_getfd": 438,
    "process_madvise": 440,
    "kcmp": 312,
    "quotactl": 179,
    "iopl": 172,
    "ioperm": 173,
    "mknod": 133,
    "mknodat": 259,
}
X86_64_CLONE, X86_64_CLONE3 = 56, 435
X86_64_SIGNALS = {"kill": 62, "tgkill": 234, "rt_sigqueueinfo": 129, "rt_tgsigqueueinfo": 297}  # to itself only
CLONE_THREAD, EPERM, ENOSYS = 0x00010000, 1, 38
RET_ALLOW, RET_ERRNO, RET_KILL = 0x7FFF0000, 0x00050000, 0x80000000
LD_ABS, JEQ, JGE, JSET, RET = 0x20, 0x15, 0x35, 0x45, 0x06


def _seccomp_program(pid: int) -> list[tuple[int, int, int, int]]:
    nr, arch, arg0 = 0, 4, 16  # offsets in struct seccomp_data (arg0's low half, little-endian)
    deny = (RET, 0, 0, RET_ERRNO | EPERM)
    prog = [(LD_ABS, 0, 0, arch), (JEQ, 1, 0, AUDIT_ARCH_X86_64), (RET, 0, 0, RET_KILL), (LD_ABS, 0, 0, nr)]
    prog += [(JGE, 0, 1, 0x40000000), deny]  # the x32 ABI's numbers would bypass the table
    for n in X86_64_DENY.values():
        prog += [(JEQ, 0, 1, n), deny]
    prog += [(JEQ, 0, 1, X86_64_CLONE3), (RET, 0, 0, RET_ERRNO | ENOSYS)]  # glibc then falls back to clone
    # Each block below ends in a return, so the accumulator may be reloaded with an argument.
    prog += [(JEQ, 0, 4, X86_64_CLONE), (LD_ABS, 0, 0, arg0), (JSET, 1, 0, CLONE_THREAD), deny, (RET, 0, 0, RET_ALLOW)]
    for n in X86_64_SIGNALS.values():
        prog += [(JEQ, 0, 4, n), (LD_ABS, 0, 0, arg0), (JEQ, 1, 0, pid), deny, (RET, 0, 0, RET_ALLOW)]
    return [*prog, (RET, 0, 0, RET_ALLOW)]


def apply_seccomp() -> list[str]:
    """No new processes (threads stay), no exec, no sockets (socketpair stays), no ptrace, no signals to
    others, no namespace, mount, module, BPF or io_uring calls. Needs no_new_privs first."""
    if os.uname().machine != "x86_64":
        return []
    prog = _seccomp_program(os.getpid())
    raw = b"".join(struct.pack("<HBBI", *ins) for ins in prog)
    buf = ctypes.create_string_buffer(raw, len(raw))
    fprog = struct.pack("<HxxxxxxQ", len(prog), ctypes.addressof(buf))  # struct sock_fprog
    _check(libc.prctl(PR_SET_SECCOMP, 2, ctypes.c_char_p(fprog), 0, 0), "seccomp")
    return ["seccomp"]


# --- the Python-level guard (informative: a program can disarm it; the kernel layers stay) -------
HOOK_BLOCK = frozenset(
    {
        "os.fork",
        "os.forkpty",
        "os.posix_spawn",
        "os.spawn",
        "os.exec",
        "os.system",
        "subprocess.Popen",
        "os.kill",
        "os.killpg",
        "socket.__new__",
        "socket.connect",
        "socket.bind",
        "socket.getaddrinfo",
        "socket.sendto",
        "socket.sendmsg",
        "ctypes.dlsym",
        "ctypes.cdata",
        "ctypes.call_function",
        "os.chroot",
        "os.setuid",
        "resource.setrlimit",
        "resource.prlimit",
        "sys._current_frames",
    }
)
HOOK_PATHS = frozenset(
    {
        "os.remove",
        "os.rename",
        "os.rmdir",
        "os.mkdir",
        "os.chmod",
        "os.chown",
        "os.symlink",
        "os.link",
        "os.truncate",
        "os.utime",
        "shutil.rmtree",
        "shutil.copyfile",
        "shutil.move",
        "os.chdir",
    }
)
WRITE_FLAGS = os.O_WRONLY | os.O_RDWR | os.O_CREAT | os.O_APPEND | os.O_TRUNC


def install_hook(root: str) -> None:
    def inside(p: object) -> bool:
        try:
            full = os.path.realpath(os.path.join(root, os.fsdecode(p)))  # type: ignore[arg-type]
        except Exception:
            return False
        return full == root or full.startswith(root + os.sep)

    def die(event: str, detail: str) -> None:
        os.write(2, f"\nherd-sandbox: blocked {event} {detail}\n".encode("utf-8", "replace"))
        os._exit(BLOCKED_EXIT)

    def hook(event: str, args: tuple) -> None:
        if event in HOOK_BLOCK or (event == "ctypes.dlopen" and args[0] is not None):
            die(event, repr(args)[:200])  # (`import ctypes` opens the interpreter itself: allowed)
        if event == "open":
            path, mode, flags = args
            writing = (isinstance(mode, str) and any(c in mode for c in "wax+")) or (
                isinstance(flags, int) and flags & WRITE_FLAGS
            )
            if writing and not isinstance(path, int) and not inside(path):
                die(event, repr(path))
        elif event in HOOK_PATHS:
            for a in args[:2]:
                if isinstance(a, str | bytes | os.PathLike) and not inside(a):
                    die(event, repr(a))

    sys.addaudithook(hook)


# --- putting it together ---------------------------------------------------------------------------
def read_paths(extra: list[str]) -> list[str]:
    """What a program may read: the interpreter's import path (stdlib, lib-dynload, site-packages), the
    shared libraries extension modules load, and whatever the caller adds."""
    system = [
        "/lib",
        "/lib64",
        "/usr/lib",
        "/usr/lib64",
        "/usr/local/lib",
        "/etc/ld.so.cache",
        "/etc/localtime",
        "/usr/share/zoneinfo",
    ]
    return [p for p in [*sys.path, *system, *extra] if p and os.path.exists(p)]


DEVICES = {
    "/dev/null": FS_READ_FILE | FS_WRITE_FILE,
    "/dev/zero": FS_READ_FILE,
    "/dev/urandom": FS_READ_FILE,
    "/dev/random": FS_READ_FILE,
}


def set_limits(cfg: dict) -> None:
    resource.setrlimit(resource.RLIMIT_CPU, (cfg["cpu_s"], cfg["cpu_s"] + 1))
    resource.setrlimit(resource.RLIMIT_FSIZE, (cfg["file_bytes"],) * 2)
    resource.setrlimit(resource.RLIMIT_CORE, (0, 0))


def isolate(cfg: dict, own: str, source: str, notes: list[str]) -> list[str]:
    """Apply every layer the kernel offers; return the names of those that held."""
    held: list[str] = []
    without = set(cfg.get("without", ()))  # layers left out on purpose: tests of each layer alone
    reads = read_paths(cfg["read_paths"])
    uid, gid = os.getuid(), os.getgid()
    as_root = cfg["mode"] == "root" or (cfg["mode"] == "auto" and os.geteuid() == 0)
    run_uid = RUN_UID_BASE + os.getpid() if as_root else uid
    try:
        if "namespaces" in without:
            raise OSError("left out")
        if as_root:
            unshare(CLONE_NEWNET | CLONE_NEWNS)
        else:
            unshare(CLONE_NEWUSER | CLONE_NEWNET | CLONE_NEWNS)
            map_identity(uid, gid)
            held.append("userns")
        held.append("netns")
        mount_tmpfs(own, cfg["disk_mb"], run_uid)
        held.append("tmpfs")
    except OSError as e:
        notes.append(f"no namespaces: {e}")
    _enter(own, source)
    if as_root:
        for p in (own, "program.py"):
            os.chown(p, run_uid, run_uid)  # (on a tmpfs the mount already gave it the folder)
        become_run_user(run_uid, keep_read=not all(readable_by_all(p) for p in reads))
        held.append("uid")
    elif "userns" in held:
        set_capabilities(0)  # the namespace's full capability set is not needed by the program
    if as_root or ("userns" in held and uid != 0):  # root's own uid is exempt from RLIMIT_NPROC
        resource.setrlimit(resource.RLIMIT_NPROC, (cfg["tasks"], cfg["tasks"]))
        held.append("nproc")
    _check(libc.prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0), "no_new_privs")
    abi = landlock_abi() if "landlock" not in without else 0
    if abi:
        held += apply_landlock(reads, DEVICES, own, abi)
    else:
        notes.append("no Landlock" + (" (left out)" if "landlock" in without else " in this kernel"))
    resource.setrlimit(resource.RLIMIT_AS, (cfg["memory_bytes"],) * 2)
    held += apply_seccomp() if "seccomp" not in without else []
    return held


def _enter(own: str, source: str) -> None:
    os.chdir(own)  # onto the tmpfs, if one was mounted over the folder
    if not os.path.exists("program.py"):
        with open("program.py", "w", encoding="utf-8") as f:
            f.write(source)


def main() -> None:
    cfg = json.loads(sys.argv[1])
    own = os.path.realpath(os.getcwd())
    with open("program.py", encoding="utf-8") as f:
        source = f.read()
    set_limits(cfg)
    notes: list[str] = []
    held = isolate(cfg, own, source, notes)
    code = compile(source, "program.py", "exec")
    lines = ["herd-sandbox: " + "+".join(["hook", *held]), *(f"herd-sandbox: note: {n}" for n in notes)]
    os.write(2, ("\n".join(lines) + "\n").encode())
    sys.argv = ["program.py"]
    install_hook(own)
    exec(code, {"__name__": "__main__", "__builtins__": __builtins__})


if __name__ == "__main__":
    main()
