"""MANIFEST.json: what a stage read, how it was configured, what it kept and dropped, and what it wrote.

Written by the one stage runner (`herd.core.stage.run_stage`), which alone decides from it whether a stage
is done.
"""

from __future__ import annotations

import dataclasses
import importlib.metadata
import json
import platform
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from functools import cache
from pathlib import Path
from typing import Any

from herd.core.config import config_hash, to_dict
from herd.core.io import MANIFEST_NAME, atomic_write_text, list_files, sha256_file, sha256_path

# Recorded when installed; read from package metadata so recording them never imports them.
_PACKAGES = ("herd", "torch", "numpy", "transformers", "tiktoken", "tokenizers", "safetensors", "datatrove")


class ManifestError(ValueError):
    """A MANIFEST.json that cannot be read (one line, names the file)."""


@cache
def package_versions() -> dict[str, str]:
    """Python and the installed versions of the packages that shape a stage's output."""
    versions = {"python": platform.python_version()}
    for name in _PACKAGES:
        try:
            versions[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            continue
    return versions


def input_records(inputs: Sequence[str | Path]) -> list[dict[str, str | None]]:
    """{path, sha256, manifest} per input; `manifest` hashes the input's own MANIFEST.json (lineage)."""
    records: list[dict[str, str | None]] = []
    for p in map(Path, inputs):
        upstream = p / MANIFEST_NAME
        records.append(
            {
                "path": str(p),
                "sha256": sha256_path(p),
                "manifest": sha256_file(upstream) if p.is_dir() and upstream.is_file() else None,
            }
        )
    return records


@dataclasses.dataclass
class Manifest:
    """The record one stage leaves in its output folder."""

    stage: str
    inputs: list[dict[str, Any]] = dataclasses.field(default_factory=list)
    config: dict[str, Any] = dataclasses.field(default_factory=dict)
    config_hash: str = ""
    counts: dict[str, Any] = dataclasses.field(default_factory=dict)
    outputs: list[str] = dataclasses.field(default_factory=list)
    versions: dict[str, str] = dataclasses.field(default_factory=dict)
    wall_time_s: float = 0.0
    created: str = ""
    key: str = ""  # herd.core.stage.stage_key: name, code version, config and inputs; equal key = done
    code_version: int = 0

    @classmethod
    def build(
        cls,
        out_dir: str | Path,
        stage: str,
        inputs: Sequence[str | Path] | list[dict[str, Any]],
        config: Any,
        counts: Mapping[str, Any] | None = None,
        wall_time_s: float = 0.0,
    ) -> Manifest:
        """A manifest for `out_dir` as it is now; `inputs` are paths or ready `input_records`."""
        records = list(inputs) if inputs and isinstance(inputs[0], dict) else input_records(inputs)
        return cls(
            stage=stage,
            inputs=records,
            config=to_dict(config),
            config_hash=config_hash(config),
            counts=dict(counts or {}),
            outputs=list_files(out_dir),
            versions=package_versions(),
            wall_time_s=round(wall_time_s, 3),
            created=datetime.now(UTC).isoformat(timespec="seconds"),
        )

    @classmethod
    def write(
        cls,
        out_dir: str | Path,
        stage: str,
        inputs: Sequence[str | Path] | list[dict[str, Any]],
        config: Any,
        counts: Mapping[str, Any] | None = None,
        wall_time_s: float = 0.0,
    ) -> Manifest:
        """Build the manifest for `out_dir` and write it there atomically."""
        m = cls.build(out_dir, stage, inputs, config, counts, wall_time_s)
        m.save(out_dir)
        return m

    def save(self, out_dir: str | Path) -> Path:
        text = json.dumps(dataclasses.asdict(self), indent=2, ensure_ascii=False, default=str)
        return atomic_write_text(Path(out_dir) / MANIFEST_NAME, text + "\n")

    @classmethod
    def read(cls, out_dir: str | Path) -> Manifest:
        """Read `out_dir/MANIFEST.json`; a corrupt file raises ManifestError naming it."""
        path = Path(out_dir) / MANIFEST_NAME
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except json.JSONDecodeError as e:
            raise ManifestError(f"{path}: corrupt manifest ({e.msg} at line {e.lineno})") from None
        except UnicodeDecodeError:
            raise ManifestError(f"{path}: corrupt manifest (not UTF-8 text)") from None
        try:
            return cls(**data)
        except TypeError as e:
            raise ManifestError(f"{path}: not a herd manifest ({e})") from None

    @classmethod
    def find(cls, out_dir: str | Path) -> Manifest | None:
        """The manifest in `out_dir`, or None when there is none."""
        return cls.read(out_dir) if (Path(out_dir) / MANIFEST_NAME).is_file() else None

    def complete(self, out_dir: str | Path) -> bool:
        """Every listed output still exists in `out_dir`."""
        return all((Path(out_dir) / rel).exists() for rel in self.outputs)


def check_counts(stage: str, counts: Mapping[str, Any]) -> None:
    """If counts has in, kept and dropped (reason -> n), require in == kept + sum(dropped)."""
    if not all(k in counts for k in ("in", "kept", "dropped")):
        return
    dropped = counts["dropped"]
    n_dropped = sum(dropped.values()) if isinstance(dropped, Mapping) else dropped
    if counts["in"] != counts["kept"] + n_dropped:
        raise ValueError(
            f"stage {stage!r}: documents lost: in={counts['in']} but kept={counts['kept']} "
            f"+ dropped={n_dropped} = {counts['kept'] + n_dropped}"
        )
