"""MANIFEST.json and run_stage: skip when done, never look done when half-written."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from herd.core.manifest import Manifest, ManifestError
from herd.core.stage import run_fn as run_stage


class Stage:
    """A stage fn that copies its input's lines, dropping empty ones, and counts its calls."""

    def __init__(self, src: Path, fail: bool = False, lose: bool = False) -> None:
        self.src, self.fail, self.lose, self.calls = src, fail, lose, 0

    def __call__(self, out: Path) -> dict:
        self.calls += 1
        lines = self.src.read_text().splitlines()
        kept = [x for x in lines if x]
        (out / "docs.txt").write_text("\n".join(kept))
        if self.fail:
            raise RuntimeError("stage crashed")
        dropped = len(lines) - len(kept) - (1 if self.lose else 0)
        return {"in": len(lines), "kept": len(kept), "dropped": {"empty": dropped}}


@pytest.fixture
def src(tmp_path: Path) -> Path:
    path = tmp_path / "raw.txt"
    path.write_text("a\n\nb\nc\n")
    return path


def test_run_writes_outputs_and_manifest(tmp_path: Path, src: Path) -> None:
    out = tmp_path / "out"
    m = run_stage("clean", [src], {"min_len": 1}, out, Stage(src))
    assert (out / "docs.txt").read_text() == "a\nb\nc"
    assert m.counts == {"in": 4, "kept": 3, "dropped": {"empty": 1}}
    assert m.outputs == ["docs.txt"]
    assert m.inputs[0]["path"] == str(src) and m.inputs[0]["manifest"] is None
    assert m.config == {"min_len": 1} and len(m.config_hash) == 64
    assert {"python", "torch", "numpy"} <= set(m.versions)
    assert m.created.endswith("+00:00") and m.wall_time_s >= 0
    assert Manifest.read(out) == m
    assert json.loads((out / "MANIFEST.json").read_text())["stage"] == "clean"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out", "raw.txt"], "no temp folder left"


def test_rerun_skips_until_config_or_input_changes(tmp_path: Path, src: Path) -> None:
    out, fn = tmp_path / "out", Stage(src)
    first = run_stage("clean", [src], {"min_len": 1}, out, fn)
    again = run_stage("clean", [src], {"min_len": 1}, out, fn)
    assert fn.calls == 1 and again == first
    run_stage("clean", [src], {"min_len": 2}, out, fn)
    assert fn.calls == 2
    src.write_text("a\nb\n")
    m = run_stage("clean", [src], {"min_len": 2}, out, fn)
    assert fn.calls == 3 and m.counts["in"] == 2
    (out / "docs.txt").unlink()
    run_stage("clean", [src], {"min_len": 2}, out, fn)
    assert fn.calls == 4, "a manifest whose outputs are gone is not done"


def test_skip_is_logged(tmp_path: Path, src: Path, caplog: pytest.LogCaptureFixture) -> None:
    out = tmp_path / "out"
    run_stage("clean", [src], {}, out, Stage(src))
    with caplog.at_level("INFO", logger="herd"):
        run_stage("clean", [src], {}, out, Stage(src))
    assert any(r.getMessage().startswith("skip clean") for r in caplog.records)


def test_failing_stage_leaves_nothing(tmp_path: Path, src: Path) -> None:
    out = tmp_path / "out"
    with pytest.raises(RuntimeError, match="stage crashed"):
        run_stage("clean", [src], {}, out, Stage(src, fail=True))
    assert not out.exists()
    assert Manifest.find(out) is None
    assert sorted(p.name for p in tmp_path.iterdir()) == ["raw.txt"]


def test_failing_rerun_keeps_previous_result(tmp_path: Path, src: Path) -> None:
    out = tmp_path / "out"
    m = run_stage("clean", [src], {"v": 1}, out, Stage(src))
    with pytest.raises(RuntimeError):
        run_stage("clean", [src], {"v": 2}, out, Stage(src, fail=True))
    assert Manifest.read(out) == m


def test_documents_lost_is_an_error(tmp_path: Path, src: Path) -> None:
    out = tmp_path / "out"
    with pytest.raises(ValueError, match=r"stage 'clean': documents lost: in=4 but kept=3 \+ dropped=0"):
        run_stage("clean", [src], {}, out, Stage(src, lose=True))
    assert not out.exists()


def test_corrupt_manifest_names_the_file(tmp_path: Path, src: Path) -> None:
    out = tmp_path / "out"
    fn = Stage(src)
    run_stage("clean", [src], {}, out, fn)
    (out / "MANIFEST.json").write_text('{"stage": "clean", ')
    with pytest.raises(ManifestError) as e:
        Manifest.read(out)
    assert str(out / "MANIFEST.json") in str(e.value) and "corrupt" in str(e.value)
    assert "\n" not in str(e.value)
    run_stage("clean", [src], {}, out, fn)  # a corrupt manifest means not done: run again
    assert fn.calls == 2 and Manifest.read(out).stage == "clean"


def test_lineage_links_upstream_manifest(tmp_path: Path, src: Path) -> None:
    up, down = tmp_path / "up", tmp_path / "down"
    run_stage("clean", [src], {}, up, Stage(src))
    docs = up / "docs.txt"
    m = run_stage("count", [up], {}, down, lambda out: {"chars": (out / "n").write_text(docs.read_text())})
    assert m.inputs[0]["manifest"] is not None
    assert m.key and m.code_version == 1
    assert run_stage("count", [up], {}, down, lambda out: 1 / 0).key == m.key  # same key: skipped, not run


def test_fn_must_return_counts(tmp_path: Path, src: Path) -> None:
    with pytest.raises(TypeError, match="stage 'bad': run must return a dict of numbers or None, got int"):
        run_stage("bad", [src], {}, tmp_path / "out", lambda out: 3)
    assert not (tmp_path / "out").exists()


def test_write_and_find(tmp_path: Path, src: Path) -> None:
    assert Manifest.find(tmp_path / "nothing") is None
    (tmp_path / "o").mkdir()
    (tmp_path / "o" / "x.bin").write_bytes(b"1")
    m = Manifest.write(tmp_path / "o", "manual", [src], {"a": Path("p")}, {"kept": 1})
    assert Manifest.find(tmp_path / "o") == m
    assert m.config == {"a": "p"} and m.outputs == ["x.bin"]


def test_a_resumable_folder_started_under_another_config_says_what_changed(tmp_path: Path, src: Path, caplog) -> None:
    from herd.core.stage import FnStage
    from herd.core.stage import run_stage as run

    class Resumable(FnStage):
        resumable = True

    out = tmp_path / "train"

    def interrupted(folder: Path) -> None:
        (folder / "half").write_text("x")
        raise KeyboardInterrupt  # killed mid-stage: started, never finished

    with pytest.raises(KeyboardInterrupt):
        run(Resumable("train", {"lr": 0.1, "steps": [1, 2]}, out, [src], interrupted))
    run(Resumable("train", {"lr": 0.1, "steps": [1, 2]}, out, [src], lambda f: {"n": len(list(f.iterdir()))}))
    assert (out / "half").exists()  # same key: resumed in place, nothing cleared
    assert "holds a run started" not in caplog.text
    (out / "MANIFEST.json").unlink()
    run(Resumable("train", {"lr": 0.2, "steps": [1, 2]}, out, [src], lambda f: {}))
    assert "holds a run started under another config or inputs (lr: 0.1 → 0.2)" in caplog.text
    assert not (out / "half").exists()
