"""Stages: the one abstraction every step of the recipe is, and the one runner that decides whether it runs.

A stage is an object with a typed config dataclass, declared inputs (files or upstream stage folders),
one output folder, and `run(workdir) -> numbers`. `run_stage` alone decides whether a stage runs: it
hashes the stage's name, code version, whole resolved config and the content of its inputs into one
key; a folder whose MANIFEST.json carries that key (and still holds every listed output) is done and
skipped. Otherwise the stage writes into a temp folder renamed into place last (or, for a resumable
stage such as pretraining, into its own folder, which it resumes from), and the runner writes the
manifest last, so a half-written stage never looks finished.

The numbers `run` returns are the stage's record: they land in the manifest's `counts`, and the run
report renders them from there (it never recomputes them).
"""

from __future__ import annotations

import abc
import dataclasses
import json
import os
import shutil
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any, ClassVar

from herd.core.config import config_hash, to_dict
from herd.core.io import MANIFEST_NAME, atomic_dir, atomic_write_text
from herd.core.logging import get_logger
from herd.core.manifest import Manifest, ManifestError, check_counts, input_records

log = get_logger(__name__)

# A resumable stage's folder records the key it was started under: a later run with another key must
# not resume into it (checkpoints of another config).
STARTED_NAME = ".stage-key"


class StageFailed(RuntimeError):
    """A stage that cannot go on for a reason the user can act on (one line, names the setting); not a bug."""


class Stage(abc.ABC):
    """One step of the recipe: files in → files out + MANIFEST.json.

    Subclasses set `name`, hold their typed `config` dataclass, and implement `out`, `inputs` and
    `run`. Bump `version` when a code change alters what the stage writes: it is part of the key, so
    finished folders of the older code run again.
    """

    name: ClassVar[str]
    version: ClassVar[int] = 1
    resumable: ClassVar[bool] = False  # True: `run` works in `out` itself and resumes what it finds there
    config: Any

    @property
    @abc.abstractmethod
    def out(self) -> Path:
        """The folder this stage owns."""

    def inputs(self) -> Sequence[Path]:
        """Files or folders whose content this stage reads (hashed; an upstream MANIFEST.json is lineage)."""
        return ()

    @abc.abstractmethod
    def run(self, workdir: Path) -> Mapping[str, Any] | None:
        """Write the outputs into `workdir`; return the numbers this stage reports (counts, metrics)."""


def stage_key(stage: Stage, records: Sequence[Mapping[str, Any]]) -> str:
    """What decides a rerun: stage name and code version, the whole config, the inputs' content."""
    inputs = [r["sha256"] for r in records]
    return config_hash({"stage": stage.name, "version": stage.version, "config": stage.config, "inputs": inputs})


def is_writer() -> bool:
    """Only global rank 0 writes manifests and clears folders (torchrun sets RANK; one process is rank 0)."""
    return os.environ.get("RANK", "0") == "0"


def finished(stage: Stage, key: str | None = None) -> Manifest | None:
    """The stage's manifest when its folder is finished under this key; None when it must run."""
    key = key or stage_key(stage, input_records(stage.inputs()))
    try:
        old = Manifest.find(stage.out)
    except ManifestError as e:
        log.warning("%s; running the stage again", e)
        return None
    if old and old.stage == stage.name and old.key == key and old.complete(stage.out):
        return old
    return None


def run_stage(stage: Stage, *, force: bool = False, fresh: bool = True) -> Manifest:
    """Run `stage` unless its folder is finished under the same key; the only place that decides.

    `force` runs it even so. For a resumable stage, `fresh` (the default) clears a folder that was
    started under another key instead of resuming into it; `fresh=False` leaves the stage to resume
    whatever it finds (the standalone `herd pretrain`, whose checkpoints carry their own checks).
    """
    out = stage.out
    records = input_records(stage.inputs())
    key = stage_key(stage, records)
    if not force and (done := finished(stage, key)):
        log.info("skip %s: %s matches its inputs, config and code version", stage.name, out)
        return done
    log.info("run %s -> %s", stage.name, out)
    start = time.perf_counter()
    if stage.resumable:
        return _run_in_place(stage, records, key, start, fresh)
    with atomic_dir(out) as tmp:
        counts = _counts(stage.name, stage.run(tmp))
        # Written last and inside the temp folder: outputs and manifest appear together, by one rename.
        m = _write_manifest(stage, tmp, records, key, counts, start)
    log.info("done %s in %.1fs: %s", stage.name, m.wall_time_s, _brief(counts))
    return m


def _run_in_place(stage: Stage, records: list, key: str, start: float, fresh: bool) -> Manifest:
    out = stage.out
    started = out / STARTED_NAME
    # The key and what it was made of: a folder started under another key can then say what changed.
    now = {"key": key, "version": stage.version, "config": to_dict(stage.config),
           "inputs": {r["path"]: r["sha256"] for r in records}}  # fmt: skip
    if is_writer():
        before = _started(started)
        if fresh and before and before.get("key") != key:
            log.warning("%s: %s holds a run started under another config or inputs (%s); starting afresh",
                        stage.name, out, _what_changed(before, now))  # fmt: skip
            shutil.rmtree(out)
        (out / MANIFEST_NAME).unlink(missing_ok=True)  # a stage being rerun is not finished
        out.mkdir(parents=True, exist_ok=True)
        atomic_write_text(started, json.dumps(now, sort_keys=True, default=str) + "\n")
    counts = _counts(stage.name, stage.run(out))
    m = _write_manifest(stage, out, records, key, counts, start) if is_writer() else Manifest(stage=stage.name)
    log.info("done %s in %.1fs: %s", stage.name, time.perf_counter() - start, _brief(counts))
    return m


def _started(path: Path) -> dict | None:
    """What a resumable stage's folder was started under (an older folder holds the bare key)."""
    if not path.is_file():
        return None
    text = path.read_text().strip()
    try:
        found = json.loads(text)
    except json.JSONDecodeError:
        return {"key": text}
    return found if isinstance(found, dict) else {"key": text}


def _what_changed(before: Mapping[str, Any], now: Mapping[str, Any], most: int = 5) -> str:
    """The config keys, inputs and code version that differ, `key: old → new` (a few; the rest counted)."""
    if "config" not in before:
        return "the folder predates recorded keys"
    old = _flat(before["config"])
    new = _flat(json.loads(json.dumps(now["config"], default=str)))  # as it reads back: tuples are lists
    keys = sorted(old.keys() | new.keys())
    diffs = [f"{k}: {old.get(k)!r} → {new.get(k)!r}" for k in keys if old.get(k) != new.get(k)]
    was, nows = before.get("inputs", {}), now["inputs"]
    diffs += [f"input {p} changed" for p in sorted(was.keys() | nows.keys()) if was.get(p) != nows.get(p)]
    if before.get("version") != now["version"]:
        diffs.append(f"code version {before.get('version')} → {now['version']}")
    more = f"; and {len(diffs) - most} more" if len(diffs) > most else ""
    return "; ".join(diffs[:most]) + more if diffs else "nothing recorded differs"


def _flat(tree: Any, prefix: str = "") -> dict[str, Any]:
    if not isinstance(tree, Mapping):
        return {prefix: tree}
    out: dict[str, Any] = {}
    for k, v in tree.items():
        out.update(_flat(v, f"{prefix}.{k}" if prefix else str(k)))
    return out


def _write_manifest(stage: Stage, folder: Path, records: list, key: str, counts: dict, start: float) -> Manifest:
    check_counts(stage.name, counts)
    m = Manifest.build(folder, stage.name, records, stage.config, counts, time.perf_counter() - start)
    m.key, m.code_version = key, stage.version
    m.outputs = [o for o in m.outputs if o != STARTED_NAME]
    m.save(folder)
    return m


@dataclasses.dataclass
class FnStage(Stage):
    """A stage given as parts: for small steps whose config, inputs and body are plain values."""

    name: str  # type: ignore[misc]  # an instance's name, not the class's
    config: Any
    out_dir: Path
    input_paths: Sequence[Path]
    fn: Callable[[Path], Mapping[str, Any] | None]
    version: int = 1  # type: ignore[misc]

    @property
    def out(self) -> Path:
        return Path(self.out_dir)

    def inputs(self) -> Sequence[Path]:
        return [Path(p) for p in self.input_paths]

    def run(self, workdir: Path) -> Mapping[str, Any] | None:
        return self.fn(workdir)


def run_fn(
    name: str,
    inputs: Sequence[str | Path],
    config: Any,
    out_dir: str | Path,
    fn: Callable[[Path], Mapping[str, Any] | None],
    version: int = 1,
) -> Manifest:
    """`run_stage` for a stage given as parts: `fn(tmp_dir) -> counts` writes into a temp folder."""
    return run_stage(FnStage(name, config, Path(out_dir), [Path(p) for p in inputs], fn, version))


def _counts(stage: str, result: Any) -> dict[str, Any]:
    if result is None:
        return {}
    if not isinstance(result, Mapping):
        raise TypeError(f"stage {stage!r}: run must return a dict of numbers or None, got {type(result).__name__}")
    return dict(result)


def _brief(counts: Mapping[str, Any]) -> str:
    return ", ".join(f"{k}={v}" for k, v in counts.items() if not isinstance(v, dict | list)) or "no counts"
