"""Training checkpoints with torch.distributed.checkpoint (DCP): atomic, verified, keep-last-N.

A checkpoint is a folder `step-00000100/` holding DCP files for the model and optimizer, the trainer's
own state (step, tokens, loader, guard, RNG) as `train_state.json`, and `CHECKSUMS.json` (size and
sha256 of every file). It is written under a temp name and renamed last, so a half-written checkpoint
never looks like one; on load a checkpoint whose files do not match their checksums is skipped, logged,
and the previous one is used.
"""

from __future__ import annotations

import contextlib
import json
import pathlib
import pickle
import shutil
import warnings
from collections.abc import Callable
from pathlib import Path

import torch
import torch.distributed.checkpoint as dcp
from torch.distributed.checkpoint.api import CheckpointException
from torch.distributed.checkpoint.state_dict import (
    StateDictOptions,
    get_model_state_dict,
    get_optimizer_state_dict,
    set_model_state_dict,
    set_optimizer_state_dict,
)

from herd.core.io import atomic_write_text, fsync_dir, sha256_file
from herd.core.logging import get_logger

log = get_logger(__name__)
# One process without a process group is a supported DCP mode (it reloads bit-identically on N ranks).
warnings.filterwarnings("ignore", message="torch.distributed is disabled, unavailable or uninitialized")
CHECKSUMS = "CHECKSUMS.json"
TRAIN_STATE = "train_state.json"
# The optimizer's param-group settings keyed by parameter name ("param_groups.<name>.lr"). Unflattened,
# every pipeline stage saves its own group as "param_groups.0", DCP keeps one stage's, and the other
# stages, resumed on the same layout, lose their lr and betas.
FLAT_OPTIM = StateDictOptions(flatten_optimizer_state_dict=True)


def optim_options(metadata: object) -> StateDictOptions:
    """How a checkpoint's optimizer state was saved: flattened, or (written before FLAT_OPTIM) nested."""
    nested = any(k.startswith("optim.param_groups.0.") for k in metadata.state_dict_metadata)
    return StateDictOptions() if nested else FLAT_OPTIM


# What DCP's `.metadata` pickle names besides its own classes (torch 2.11–2.13): anything else in a run
# folder's `.metadata` is refused, so a planted pickle cannot run code on resume.
_METADATA_GLOBALS = {
    ("torch", "Size"),
    ("torch.serialization", "_get_layout"),
    ("pathlib", "PosixPath"),
    ("collections", "OrderedDict"),
}


class MetadataUnpickler(pickle.Unpickler):
    """Unpickles DCP checkpoint metadata only: its own classes, dtypes and the few globals above."""

    def find_class(self, module: str, name: str) -> object:
        obj = super().find_class(module, name)
        own = isinstance(obj, type) and obj.__module__.startswith("torch.distributed.checkpoint.")
        if own or (module, name) in _METADATA_GLOBALS or (module == "torch" and isinstance(obj, torch.dtype)):
            return obj
        raise pickle.UnpicklingError(f"{module}.{name} is not checkpoint metadata")


class SafeReader(dcp.FileSystemReader):
    """DCP's file reader with the metadata read by `MetadataUnpickler` instead of a bare `pickle.load`."""

    def read_metadata(self, *args: object, **kwargs: object) -> object:
        from torch.distributed.checkpoint.metadata import StorageMeta

        path = pathlib.Path(self.path) / ".metadata"
        try:
            with open(path, "rb") as f:
                metadata = MetadataUnpickler(f).load()
        except (pickle.UnpicklingError, EOFError, AttributeError, ImportError) as e:
            raise ValueError(f"{path}: not a DCP checkpoint's metadata ({e})") from None
        if getattr(metadata, "storage_meta", None) is None:
            metadata.storage_meta = StorageMeta()
        metadata.storage_meta.load_id = self.load_id
        return metadata


class Checkpointer:
    """Saves are collective (every rank writes its DCP shards); rank 0 alone writes the JSON files,
    renames the folder and prunes, and the others wait for it at `barrier`."""

    def __init__(
        self,
        folder: str | Path,
        keep: int = 3,
        verify: bool = True,
        is_main: bool = True,
        barrier: Callable[[], None] = lambda: None,
    ) -> None:
        self.folder, self.keep, self.verify = Path(folder), keep, verify
        self.is_main, self.barrier = is_main, barrier

    def save(self, step: int, model: torch.nn.Module, optim: torch.optim.Optimizer, train_state: dict) -> Path:
        final = self.folder / self.name(step)
        tmp = self.folder / f".{self.name(step)}.tmp"
        if self.is_main:
            shutil.rmtree(tmp, ignore_errors=True)
        self.barrier()
        optim_state = get_optimizer_state_dict(model, optim, options=FLAT_OPTIM)
        state = {"model": get_model_state_dict(model), "optim": optim_state}
        dcp.save(state, checkpoint_id=str(tmp))
        if not self.is_main:
            self.barrier()
            return final
        atomic_write_text(tmp / TRAIN_STATE, json.dumps(train_state))
        sums = {f.name: {"size": f.stat().st_size, "sha256": sha256_file(f)} for f in sorted(tmp.iterdir())}
        atomic_write_text(tmp / CHECKSUMS, json.dumps(sums, indent=1))
        fsync_dir(tmp)
        if final.exists():
            shutil.rmtree(final)
        tmp.rename(final)
        fsync_dir(self.folder)  # the rename is what makes it a checkpoint: it must reach the disk too
        self._prune()
        self.barrier()
        return final

    @staticmethod
    def name(step: int) -> str:
        """The folder name of the checkpoint taken after `step` steps."""
        return f"step-{step:08d}"

    def _prune(self) -> None:
        """Keep the newest `keep` checkpoints that pass the size check; the others (older, or unusable) go.
        The last trustworthy checkpoint is therefore never deleted, whatever is newer than it."""
        if self.keep <= 0:
            return
        found = self.list()
        usable = [c for c in found if self.problem(c, hashes=False) is None]
        for old in set(found) - set(usable[-self.keep :]):
            log.info("pruning checkpoint %s%s", old, "" if old in usable else " (unusable)")
            shutil.rmtree(old, ignore_errors=True)

    def list(self) -> list[Path]:
        """Finished checkpoints, oldest first (temp folders of interrupted saves are ignored)."""
        if not self.folder.is_dir():
            return []
        return sorted(p for p in self.folder.iterdir() if p.is_dir() and p.name.startswith("step-"))

    def problem(self, ckpt: Path, hashes: bool = True) -> str | None:
        """Why `ckpt` cannot be trusted, or None (`hashes=False`: file sizes only, the cheap check)."""
        sums_file = ckpt / CHECKSUMS
        if not sums_file.is_file():
            return "no CHECKSUMS.json"
        try:
            sums = json.loads(sums_file.read_text())
        except (json.JSONDecodeError, UnicodeDecodeError):
            return "CHECKSUMS.json is corrupt"
        if not isinstance(sums, dict) or not all(
            isinstance(w, dict) and isinstance(w.get("size"), int) and isinstance(w.get("sha256"), str)
            for w in sums.values()
        ):
            return "CHECKSUMS.json is not {file: {size, sha256}}"
        for name, want in sums.items():
            f = ckpt / name
            if not f.is_file():
                return f"{name} is missing"
            if f.stat().st_size != want["size"]:
                return f"{name} has {f.stat().st_size} bytes, expected {want['size']}"
            if hashes and self.verify and sha256_file(f) != want["sha256"]:
                return f"{name} does not match its sha256"
        return None

    def newest_train_state(self) -> dict | None:
        """The train state of the newest checkpoint that passes the size check (no tensors read)."""
        for ckpt in reversed(self.list()):
            if self.problem(ckpt, hashes=False) is None:
                with contextlib.suppress(json.JSONDecodeError, UnicodeDecodeError):
                    return json.loads((ckpt / TRAIN_STATE).read_text())
        return None

    def load_latest(
        self, model: torch.nn.Module, optim: torch.optim.Optimizer, skip: Callable[[Path], bool] = lambda c: False
    ) -> dict | None:
        """Restore the newest trustworthy checkpoint (that `skip` does not exclude) into model and optim;
        return its train state, or None when there is none."""
        for ckpt in reversed(self.list()):
            if skip(ckpt):
                continue
            why = self.problem(ckpt)
            if why:
                log.warning("checkpoint %s is unusable (%s); trying the previous one", ckpt, why)
                continue
            return self.load(ckpt, model, optim)
        return None

    def load(self, ckpt: Path, model: torch.nn.Module, optim: torch.optim.Optimizer | None) -> dict:
        reader = SafeReader(str(ckpt))
        metadata = reader.read_metadata()  # checked here, where its error is one line; DCP would wrap it
        options = optim_options(metadata)
        state = {"model": get_model_state_dict(model)}
        if optim is not None:
            state["optim"] = get_optimizer_state_dict(model, optim, options=options)
        try:
            dcp.load(state, storage_reader=reader)
        except CheckpointException as e:  # a BaseException whose text is every rank's traceback
            first = next(iter(e.failures.values()), e)
            cause = getattr(first, "exception", first)
            raise ValueError(
                f"{ckpt}: does not fit this model and optimizer ({type(cause).__name__}: "
                f"{str(cause).splitlines()[0] if str(cause) else ''})"
            ) from None
        set_model_state_dict(model, state["model"])
        if optim is not None:
            set_optimizer_state_dict(model, optim, state["optim"], options=options)
        log.info("resumed from %s", ckpt)
        return json.loads((ckpt / TRAIN_STATE).read_text())
