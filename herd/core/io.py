"""Atomic writes and content hashes: a reader never sees a half-written file or folder."""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import shutil
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import IO

BLOCK = 1 << 20
MANIFEST_NAME = "MANIFEST.json"


def _sibling(path: Path, tag: str) -> Path:
    # Hidden, unique and in the same folder, so os.replace stays a same-filesystem rename.
    return path.parent / f".{path.name}.{tag}-{os.getpid()}-{uuid.uuid4().hex[:8]}"


def fsync_dir(folder: Path) -> None:
    """Flush `folder`'s entries to disk: a rename into it (or a file made in it) survives a power cut."""
    # Makes the rename itself durable; some platforms cannot open a folder, which is fine to skip.
    with contextlib.suppress(OSError):
        fd = os.open(folder, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


def atomic_write_bytes(path: str | Path, data: bytes) -> Path:
    """Write `data` to a temp file beside `path`, fsync, then rename over `path`."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = _sibling(path, "tmp")
    try:
        with open(tmp, "xb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    fsync_dir(path.parent)
    return path


def atomic_write_text(path: str | Path, text: str, encoding: str = "utf-8") -> Path:
    """Text version of `atomic_write_bytes`."""
    return atomic_write_bytes(path, text.encode(encoding))


@contextlib.contextmanager
def atomic_dir(final: str | Path) -> Iterator[Path]:
    """Yield a temp folder beside `final`; on success it replaces `final`, on error it is removed."""
    final = Path(final)
    final.parent.mkdir(parents=True, exist_ok=True)
    tmp = _sibling(final, "tmp")
    tmp.mkdir()
    try:
        yield tmp
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    _replace_dir(tmp, final)


def _replace_dir(tmp: Path, final: Path) -> None:
    # os.replace cannot overwrite a non-empty folder: move the old one aside first, restore it on failure.
    old = None
    if final.exists() or final.is_symlink():
        old = _sibling(final, "old")
        os.replace(final, old)
    try:
        os.replace(tmp, final)
    except BaseException:
        if old is not None:
            os.replace(old, final)
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    fsync_dir(final.parent)
    if old is not None:
        if old.is_dir() and not old.is_symlink():
            shutil.rmtree(old, ignore_errors=True)
        else:
            old.unlink(missing_ok=True)


def sha256_file(path: str | Path) -> str:
    """sha256 hex digest of a file, read in 1 MiB blocks."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(BLOCK):
            h.update(block)
    return h.hexdigest()


def sha256_path(path: str | Path) -> str:
    """Hash of a file, or of a folder: sorted relative paths with their file hashes (MANIFEST.json skipped,
    so rerunning a stage that writes the same data keeps the same hash)."""
    path = Path(path)
    if not path.is_dir():
        return sha256_file(path)
    h = hashlib.sha256()
    for rel in list_files(path):
        # A FIFO, device or dangling symlink is never opened (a FIFO would block forever); its name counts.
        digest = sha256_file(path / rel) if (path / rel).is_file() else "not-a-regular-file"
        h.update(f"{rel}\0{digest}\n".encode())
    return h.hexdigest()


def list_files(folder: str | Path) -> list[str]:
    """Sorted POSIX relative paths of the files under `folder`, without its own MANIFEST.json (those of
    stages nested inside it are outputs: a nested stage whose manifest is gone is not finished)."""
    folder = Path(folder)
    out = []
    for root, _dirs, files in os.walk(folder):
        for name in files:
            rel = (Path(root) / name).relative_to(folder).as_posix()
            if rel != MANIFEST_NAME:
                out.append(rel)
    return sorted(out)


def iter_jsonl(
    path: str | Path, opener: Callable[[Path], IO[str]] | None = None, error: type[ValueError] = ValueError
) -> Iterator[tuple[int, dict]]:
    """(line number, object) for every non-blank line of a JSONL file; a bad line raises `error` naming
    `path:line`. `opener` reads compressed files (it must return a text stream)."""
    path = Path(path)
    with opener(path) if opener else open(path, encoding="utf-8") as f:
        for lineno, line in enumerate(f, 1):
            if not line.strip():
                continue
            try:
                row = json.loads(line)
            except json.JSONDecodeError as e:
                raise error(f"{path}:{lineno}: invalid JSON ({e.msg} at column {e.colno})") from None
            if not isinstance(row, dict):
                raise error(f"{path}:{lineno}: expected a JSON object, got {type(row).__name__}")
            yield lineno, row
