"""herd.sandbox: run untrusted Python (model-written code, tool calls) behind kernel-enforced layers.

    from herd.sandbox import run_python, Limits
    r = run_python("print(sum(range(10)))", Limits(cpu_s=2, wall_s=5))
    r.status, r.stdout, r.protections     # "passed", "45\\n", "hook+uid+netns+tmpfs+...+seccomp"

`herd sandbox check` runs the hostile suite (herd.sandbox.hostile) on this machine; docs/sandbox.md has
the threat model. Used by herd.eval (HumanEval/MBPP), post-training data, and tool calls.
"""

from herd.sandbox.launch import BLOCKED_EXIT
from herd.sandbox.layers import THREATS, SandboxUnavailable, kernel_protections, require_isolation, unprotected
from herd.sandbox.runner import Limits, SandboxResult, run_python

__all__ = [
    "BLOCKED_EXIT",
    "THREATS",
    "Limits",
    "SandboxResult",
    "SandboxUnavailable",
    "kernel_protections",
    "require_isolation",
    "run_python",
    "unprotected",
]
