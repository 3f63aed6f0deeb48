"""What every curation stage shares: its reader and tail, the sections it reads, and running its phases.

A curation stage is a `herd.core.stage.Stage` whose `run` is a list of datatrove phases over the previous
stage's kept shards. Its `config` is a dataclass of the config sections the stage reads (StepConfig plus
its own), filled from a CurateConfig by field name, so the sections that decide a rerun are the ones the
stage's type declares. `run_stage` alone decides whether a stage runs; inside `run`, datatrove's
completion markers in `<out>/_work/<stage>-<key>/` let a killed stage skip the tasks it had finished.
"""

from __future__ import annotations

import abc
import dataclasses
import json
import shutil
import time
from pathlib import Path
from typing import Any, ClassVar, Self, get_type_hints

from herd.core.manifest import input_records
from herd.core.stage import Stage, stage_key
from herd.data.config import CurateConfig, ReadConfig
from herd.data.documents import KEPT_DIR, is_stage_folder
from herd.data.executor import ExecutorConfig, Phase, run_phase, step_stats
from herd.data.filters import ReadErrorFilter
from herd.data.outputs import DroppedWriter, KeptWriter, count_shards
from herd.data.readers import HerdReader, Tally

# Side counters worth reporting (PII masked, languages, lines removed), summed over phases.
COUNTERS = ("pii_", "lang_", "lines_removed", "html_extracted", "to_remove", "frequent_lines", "docs_with_pii")
MOVING = "MOVING"  # marks a work folder whose outputs are being handed over: a kill then means start afresh


@dataclasses.dataclass
class StepConfig:
    """What every curation stage reads; a stage's own config adds its sections (field name = section)."""

    read: ReadConfig
    tasks: int  # executor.tasks: output shards are written per task, so the split shapes the output


def stage_reader(read: ReadConfig, source: Path) -> HerdReader:
    """Reads a stage's kept shards (a stage folder), every raw file under a folder or one raw file."""
    limits = {"max_doc_bytes": read.max_doc_bytes, "max_invalid_utf8": read.max_invalid_utf8}
    if not source.is_dir():  # one file: its folder, reading only it (never listing that folder)
        return HerdReader(str(source.parent), files=[source.name], **limits)
    folder = source / KEPT_DIR if is_stage_folder(source) else source
    return HerdReader(str(folder), **limits)


def input_inventory(read: ReadConfig, source: Path) -> tuple[list[str], list[dict[str, str]]]:
    """(files read, [{path, reason}] of files not read) of a stage's input: together, every file in it.

    Paths are relative to `source` (or its folder, for one file). A stage folder's records and reports
    beside `kept/` (dropped/, anneal/, MANIFEST.json, mix_weights.json) are listed as skipped too."""
    if not is_stage_folder(source):
        return stage_reader(read, source).inventory()
    files, skipped = HerdReader(str(source)).inventory()
    kept = [f for f in files if f.startswith(f"{KEPT_DIR}/")]
    skipped += [{"path": f, "reason": "stage_output_not_kept"} for f in files if not f.startswith(f"{KEPT_DIR}/")]
    return kept, sorted(skipped, key=lambda s: s["path"])


def stage_tail(output: Path, partition: str = "${language}", check: bool = True) -> list[Any]:
    """Last steps of a stage: drop unreadable records (after any index-based dedup filter, which must see
    every record the signature pass saw), count what is kept, write it."""
    head = [ReadErrorFilter(DroppedWriter(output, "read_check"))] if check else []
    return [*head, Tally("kept"), KeptWriter(output, partition)]


@dataclasses.dataclass
class CurationStage(Stage):
    """One curation step: datatrove phases from `source` into `out_dir`, resumable task by task."""

    # 2: records carry their input file and line, the manifest lists skipped files and per-file counts
    version: ClassVar[int] = 2
    source: Path  # the previous stage's folder, or the raw input folder
    out_dir: Path
    root: Path  # the curation run folder: `_work/` and `_logs/` live there
    executor: ExecutorConfig
    config: StepConfig  # subclasses narrow the type to the sections they read

    @classmethod
    def from_config(cls, cfg: CurateConfig, source: Path, out_dir: Path, **extra: Any) -> Self:
        """The stage with its config filled from `cfg`: each field of its config type is the section of that name."""
        settings = get_type_hints(cls)["config"]
        values = {f.name: getattr(cfg, f.name) for f in dataclasses.fields(settings) if f.name != "tasks"}
        return cls(
            Path(source),
            Path(out_dir),
            Path(cfg.out),
            cfg.executor,
            settings(**values, tasks=cfg.executor.tasks),
            **extra,
        )

    @property
    def out(self) -> Path:
        return self.out_dir

    def inputs(self) -> list[Path]:
        return [self.source]

    def reader(self) -> HerdReader:
        return stage_reader(self.config.read, self.source)

    @abc.abstractmethod
    def phases(self, output: Path, work: Path) -> list[Phase]:
        """The datatrove phases writing into `output`; `work` holds signatures and indexes between phases."""

    def run(self, workdir: Path) -> dict[str, Any]:
        # The work folder is named by the stage key: a rerun under the same config and input resumes the
        # tasks datatrove marked complete, never those of another config.
        key = stage_key(self, input_records(self.inputs()))[:12]
        work = self.root / "_work" / f"{self.name}-{key}"
        if (work / MOVING).exists():  # killed while handing outputs over: some are gone, start afresh
            shutil.rmtree(work)
        output, logs = work / "output", work / "logs"
        start = time.perf_counter()
        phases = self.phases(output, work)
        for i, phase in enumerate(phases):
            run_phase(phase, logs / f"{i}-{phase.name}", self.executor)
        counts = funnel_counts(phases, logs, output, time.perf_counter() - start)
        read, counts["skipped_files"] = input_inventory(self.config.read, self.source)
        counts["input_files"] = len(read)
        (work / MOVING).touch()
        for child in sorted(output.iterdir()) if output.exists() else []:
            shutil.move(str(child), str(workdir / child.name))  # same filesystem: renames
        self._keep_logs(logs)
        shutil.rmtree(work, ignore_errors=True)  # signatures and temp shards are not needed once handed over
        return counts

    def _keep_logs(self, logs: Path) -> None:
        """datatrove's task logs and stats, kept in `_logs/<stage>/` for inspection."""
        if logs.exists():
            keep = self.root / "_logs" / self.name
            shutil.rmtree(keep, ignore_errors=True)
            keep.parent.mkdir(parents=True, exist_ok=True)
            shutil.move(str(logs), str(keep))


def funnel_counts(phases: list[Phase], logs: Path, output: Path, elapsed: float) -> dict[str, Any]:
    """The stage's record: documents and bytes in, the funnel on disk, side counters, throughput."""
    # "in" is counted by the Tally of the last phase that reads the stage's input
    last: dict[str, dict[str, float]] = {}
    for i in reversed(range(len(phases))):
        if "in" in (last := step_stats(logs / f"{i}-{phases[i].name}")):
            break
    counts: dict[str, Any] = {
        "in": int(last.get("in", {}).get("docs", 0)),
        "in_bytes": int(last.get("in", {}).get("bytes", 0)),
    }
    counts |= count_shards(output)
    counts["steps"] = step_counters(logs, phases)
    if (mix := output / "mix_weights.json").is_file():  # the mix stage records its weights [P §3.1.2]
        counts["mix"] = json.loads(mix.read_text())
    counts["docs_per_s"] = round(counts["in"] / max(elapsed, 1e-9), 1)
    counts["mb_per_s"] = round(counts["in_bytes"] / 1e6 / max(elapsed, 1e-9), 3)
    return counts


def step_counters(logs: Path, phases: list[Phase]) -> dict[str, float]:
    """Side counters (COUNTERS prefixes) summed over the phases' steps."""
    out: dict[str, float] = {}
    for i, phase in enumerate(phases):
        for step in step_stats(logs / f"{i}-{phase.name}").values():
            for label, v in step.items():
                if label.startswith(COUNTERS):
                    out[label] = out.get(label, 0) + v
    return dict(sorted(out.items()))
