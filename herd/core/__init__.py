"""herd.core: config, stages and their runner, manifests, atomic io, logging and runtime helpers (the bottom tier)."""

from __future__ import annotations

from typing import Any

from herd.core.config import (
    ConfigError,
    config_hash,
    dump_toml,
    from_dict,
    load_config,
    save_resolved,
    to_dict,
)
from herd.core.logging import get_logger, progress
from herd.core.manifest import Manifest, ManifestError
from herd.core.stage import Stage, run_fn, run_stage

# Runtime helpers import torch; load them on first use so config-only callers (the CLI's --help) stay fast.
_RUNTIME = ("seed_everything", "pick_device", "pick_dtype", "autocast")

__all__ = [
    "ConfigError",
    "Manifest",
    "ManifestError",
    "Stage",
    "autocast",
    "config_hash",
    "dump_toml",
    "from_dict",
    "get_logger",
    "load_config",
    "pick_device",
    "pick_dtype",
    "progress",
    "run_fn",
    "run_stage",
    "save_resolved",
    "seed_everything",
    "to_dict",
]


def __getattr__(name: str) -> Any:
    if name in _RUNTIME:
        from herd.core import runtime

        return getattr(runtime, name)
    raise AttributeError(f"module 'herd.core' has no attribute {name!r}")
