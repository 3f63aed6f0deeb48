"""Programs per second: herd's sandbox (every kernel layer) vs a bare subprocess run of the same program.

    .venv/bin/python benchmarks/sandbox.py [--n 100] [--workers 1 2]

The peer is what a harness without isolation does: a temp folder, the program written there, `python -I -B
program.py` with a timeout, the folder removed. Both run the same HumanEval-style program (a function and
its asserts), alternating one by one so that load from other work falls on both alike; `--workers` runs
each side through a thread pool of that size, as herd.eval does. Prints the machine, versions, date and
the ratio; writes benchmarks/results/sandbox.json.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from pathlib import Path

from machine import cpu_name

from herd.sandbox import Limits, run_python
from herd.sandbox.launch import landlock_abi

RESULTS = Path(__file__).parent / "results" / "sandbox.json"
PROGRAM = """def has_close_elements(numbers, threshold):
    for i, a in enumerate(numbers):
        for j, b in enumerate(numbers):
            if i != j and abs(a - b) < threshold:
                return True
    return False


assert has_close_elements([1.0, 2.0, 3.9, 4.0, 5.0, 2.2], 0.3)
assert not has_close_elements([1.0, 2.0, 5.9, 4.0, 5.0], 0.8)
"""


def bare(program: str) -> bool:
    workdir = Path(tempfile.mkdtemp(prefix="bench-bare-"))
    try:
        (workdir / "program.py").write_text(program)
        cmd = [sys.executable, "-I", "-B", "program.py"]
        return subprocess.run(cmd, cwd=workdir, capture_output=True, timeout=20).returncode == 0
    finally:
        shutil.rmtree(workdir, ignore_errors=True)


def sandboxed(program: str) -> bool:
    return run_python(program, Limits()).passed


def rate(fn: Callable[[str], bool], n: int, workers: int) -> float:
    start = time.perf_counter()
    with ThreadPoolExecutor(workers) as pool:
        ok = list(pool.map(fn, [PROGRAM] * n))
    assert all(ok), f"{fn.__name__}: {ok.count(False)} programs failed"
    return n / (time.perf_counter() - start)


def measure(n: int, workers: int, rounds: int) -> dict[str, float]:
    """Best of `rounds` batches per side, the sides alternating batch by batch."""
    best = {"bare": 0.0, "sandbox": 0.0}
    for r in range(rounds):
        order = [("bare", bare), ("sandbox", sandboxed)]
        for name, fn in order if r % 2 == 0 else order[::-1]:
            best[name] = max(best[name], rate(fn, n // rounds, workers))
    return best


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--n", type=int, default=100, help="programs per side and worker count")
    ap.add_argument("--workers", type=int, nargs="+", default=[1, 2])
    ap.add_argument("--rounds", type=int, default=4)
    ap.add_argument("--out", default=str(RESULTS))
    args = ap.parse_args()
    probe = run_python("pass\n", Limits())
    rows = []
    for w in args.workers:
        best = measure(args.n, w, args.rounds)
        rows.append({"workers": w, **best, "ratio": best["sandbox"] / best["bare"]})
        print(
            f"workers {w}: sandbox {best['sandbox']:.1f}/s, bare subprocess {best['bare']:.1f}/s, "
            f"sandbox/bare {rows[-1]['ratio']:.2f}x"
        )
    result = {
        "benchmark": "sandbox programs per second vs a bare subprocess",
        "rows": rows,
        "protections": probe.protections,
        "machine": f"{cpu_name()}, {os.cpu_count()} cores, kernel {platform.release()}, Landlock ABI {landlock_abi()}",
        "versions": f"Python {platform.python_version()}",
        "user": "root" if os.geteuid() == 0 else "non-root",
        "date": datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "command": "python benchmarks/sandbox.py " + " ".join(sys.argv[1:]),
    }
    print(f"  layers: {probe.protections}")
    print(f"  {result['machine']}; {result['versions']}; as {result['user']}; {result['date']}")
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(result, indent=2) + "\n")


if __name__ == "__main__":
    main()
