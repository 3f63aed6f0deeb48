"""The code sandbox HumanEval/MBPP use: herd.sandbox (kernel-enforced layers; docs/sandbox.md), re-exported
here so that callers of herd.eval keep their imports."""

from herd.sandbox import BLOCKED_EXIT, Limits, SandboxResult, run_python

__all__ = ["BLOCKED_EXIT", "Limits", "SandboxResult", "run_python"]
