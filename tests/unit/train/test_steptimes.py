"""Step-time logs, the straggler report, the effective training time and the fault-injection hook, on
hand-made logs whose answers are worked out by hand (the 4-rank kill/restart run is tests/dist/test_elastic.py)."""

import json
import subprocess
import sys
import time

import pytest

from herd.train import faults
from herd.train.steptimes import ATTEMPTS, FOLDER, StepClock, effective_time, rank_file, report, straggler_report


def write_log(run_dir, rank: int, works: dict[int, float], restart: int = 0) -> None:
    path = rank_file(run_dir, rank)
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a") as f:
        for step, w in works.items():
            f.write(json.dumps({"step": step, "work_s": w, "step_s": 2.0, "end": 0.0, "restart": restart}) + "\n")


def test_straggler_is_the_rank_above_the_median(tmp_path) -> None:
    for r in range(3):
        write_log(tmp_path, r, {1: 1.0, 2: 1.0, 3: 1.0})
    write_log(tmp_path, 3, {1: 1.5, 2: 1.0, 3: 2.0})  # +50% on step 1, +100% on step 3
    write_log(tmp_path, 0, {3: 1.2})  # step 3 redone after a restart: the last record counts
    with open(rank_file(tmp_path, 2), "a") as f:
        f.write('{"step": 4, "work')  # torn by a kill: dropped, and step 4 is not on every rank anyway
    rep = straggler_report(tmp_path)
    assert rep["ranks"] == 4 and rep["steps"] == 3
    # Step 3: works 1.2, 1, 1, 2 → median 1.1; rank 3 is 2/1.1 - 1 = 0.8182 above it.
    assert rep["per_step"][2] == {"step": 3, "rank": 3, "work_s": 2.0, "median_s": 1.1, "slower_by": 0.8182}
    assert rep["per_step"][1]["slower_by"] == 0.0
    # Rank 3 over the steps: (0.5 + 0 + 0.8182) / 3.
    assert rep["per_rank"][3] == {"slowest_steps": 2, "mean_work_s": 1.5, "mean_slower_by": 0.4394}
    assert rep["stragglers"] == [3]


def test_effective_time_counts_from_the_first_start(tmp_path) -> None:
    folder = tmp_path / FOLDER
    folder.mkdir()
    (folder / ATTEMPTS).write_text('{"start": 100.0, "elastic_restart": 0}\n{"start": 130.0, "elastic_restart": 1}\n')
    write_log(tmp_path, 0, {1: 1.0, 2: 1.0, 3: 1.0})
    write_log(tmp_path, 0, {3: 1.0, 4: 1.0}, restart=1)  # step 3 done twice: once lost, once counted
    eff = effective_time(tmp_path, now=150.0)
    # Four counted steps of 2 s (step_s) in the 50 s since the first start.
    assert eff == {"effective_training_time": 0.16, "productive_step_s": 8.0, "wall_s_since_first_start": 50.0,
                   "attempts": 2, "steps_redone": 1}  # fmt: skip


def test_clock_logs_each_rank_and_report_writes_the_file(tmp_path) -> None:
    met = []
    clocks = [StepClock(tmp_path, r, lambda: met.append(1), started=time.time()) for r in range(2)]
    for step in (1, 2):
        for c in clocks:
            c.start(step)
            c.stop()
    assert len(met) == 4 and len((tmp_path / FOLDER / ATTEMPTS).read_text().splitlines()) == 1  # rank 0 only
    summary = report(tmp_path)
    assert json.loads((tmp_path / "stragglers.json").read_text())["steps"] == 2
    assert summary["attempts"] == 1 and 0 < summary["effective_training_time"] <= 1
    assert summary["slowest_rank"] in (0, 1)


def test_fault_spec_parses_and_refuses_nonsense() -> None:
    assert faults.parse("kill:1:3, slow:2:0.5") == (faults.Fault("kill", 1, 3.0), faults.Fault("slow", 2, 0.5))
    for bad in ("kill:1", "stop:1:3", "kill:x:3", "slow:-1:2"):
        with pytest.raises(ValueError, match="kill:RANK:STEP or slow:RANK:SECONDS"):
            faults.parse(bad)


def test_kill_fires_on_its_rank_and_step_of_the_first_attempt_only() -> None:
    def run(rank: int, step: int, restart: str) -> int:
        code = f"from herd.train.faults import inject; inject({rank}, {step}); print('alive')"
        env = {"HERD_FAULT": "kill:1:3", "TORCHELASTIC_RESTART_COUNT": restart, "PYTHONPATH": ":".join(sys.path)}
        return subprocess.run([sys.executable, "-c", code], env=env, capture_output=True).returncode

    assert run(1, 3, "0") == -9
    assert run(1, 3, "1") == run(0, 3, "0") == run(1, 2, "0") == 0


def test_slow_fault_delays_its_rank() -> None:
    start = time.perf_counter()
    faults.inject(0, 1, {"HERD_FAULT": "slow:0:0.05"})
    faults.inject(1, 1, {"HERD_FAULT": "slow:0:5"})  # another rank: no delay
    assert 0.05 <= time.perf_counter() - start < 1


def test_restart_warning_names_the_launcher_setting() -> None:
    shared = {"TORCHELASTIC_MAX_RESTARTS": "3", "TORCHELASTIC_USE_AGENT_STORE": "True"}
    assert "TORCH_DISABLE_SHARE_RDZV_TCP_STORE=1" in faults.restart_warning(shared)
    assert faults.restart_warning(shared | {"TORCHELASTIC_USE_AGENT_STORE": "False"}) is None
    assert faults.restart_warning({}) is None
