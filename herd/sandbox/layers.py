"""Which kernel layer stops which threat, and the refusal to run tool-call code where none does."""

from __future__ import annotations

from collections.abc import Collection
from functools import cache

# A threat counts as covered when at least one of its kernel layers held. The audit hook ("hook") never
# counts: the program it guards can disarm it.
THREATS: dict[str, tuple[str, ...]] = {
    "files": ("landlock-fs",),  # a uid of its own still reads and writes what is world-readable/-writable
    "network": ("netns", "seccomp"),  # no interfaces at all; socket() refused
    "processes": ("seccomp",),  # fork/clone/exec/ptrace refused (Landlock also refuses exec)
    "signals": ("seccomp", "landlock-scope", "uid"),
    "disk": ("tmpfs",),  # RLIMIT_FSIZE bounds one file; the tmpfs bounds the folder
}


class SandboxUnavailable(RuntimeError):
    """The kernel offers no layer against some threat and the caller did not accept running unprotected."""


def unprotected(protections: str | Collection[str]) -> list[str]:
    """The threats no kernel layer in `protections` ("a+b+c" or a collection of names) stops."""
    held = set(protections.split("+")) if isinstance(protections, str) else set(protections)
    return [threat for threat, layers in THREATS.items() if not held.intersection(layers)]


@cache
def kernel_protections() -> str:
    """The layers that hold on this machine, as a trivial program in the sandbox reports them."""
    from herd.sandbox.runner import Limits, run_python

    return run_python("pass\n", Limits(cpu_s=5, wall_s=30)).protections


def require_isolation(accepted: Collection[str] = ()) -> list[str]:
    """Before running code that a prompt or a retrieved document can steer (tool calls in chat and the
    server): raise unless every threat is covered by a kernel layer or named in `accepted` (the user's
    `--unprotected files,network` flag). Returns the threats left uncovered, for a warning."""
    missing = unprotected(kernel_protections())
    refused = [t for t in missing if t not in set(accepted)]
    if refused:
        raise SandboxUnavailable(
            f"this kernel offers no isolation for {', '.join(refused)}; code from tool calls is not run. "
            f"Pass --unprotected {','.join(missing)} to run it anyway, unprotected against exactly that."
        )
    return missing
