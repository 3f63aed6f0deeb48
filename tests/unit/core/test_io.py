"""Atomic writes and content hashes."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest

from herd.core.io import atomic_dir, atomic_write_bytes, atomic_write_text, sha256_file, sha256_path


def test_atomic_write_replaces_and_leaves_no_temp(tmp_path: Path) -> None:
    path = tmp_path / "sub" / "a.txt"
    atomic_write_text(path, "one")
    atomic_write_text(path, "two")
    assert path.read_text() == "two"
    atomic_write_bytes(path, b"\x00\x01")
    assert path.read_bytes() == b"\x00\x01"
    assert [p.name for p in path.parent.iterdir()] == ["a.txt"]


def test_atomic_dir_success_replaces_existing(tmp_path: Path) -> None:
    final = tmp_path / "out"
    final.mkdir()
    (final / "stale.txt").write_text("old")
    with atomic_dir(final) as tmp:
        assert tmp.parent == tmp_path and tmp != final
        (tmp / "new.txt").write_text("new")
        assert (final / "stale.txt").exists()  # the old folder stays until the block succeeds
    assert sorted(p.name for p in final.iterdir()) == ["new.txt"]
    assert [p.name for p in tmp_path.iterdir()] == ["out"]


def test_atomic_dir_failure_keeps_old_and_cleans_temp(tmp_path: Path) -> None:
    final = tmp_path / "out"
    with pytest.raises(RuntimeError), atomic_dir(final) as tmp:
        (tmp / "half.txt").write_text("x")
        raise RuntimeError("boom")
    assert list(tmp_path.iterdir()) == []
    final.mkdir()
    (final / "keep.txt").write_text("k")
    with pytest.raises(RuntimeError), atomic_dir(final):
        raise RuntimeError("boom")
    assert [p.name for p in tmp_path.iterdir()] == ["out"]
    assert (final / "keep.txt").read_text() == "k"


def test_sha256_file_matches_hashlib(tmp_path: Path) -> None:
    data = bytes(range(256)) * 9000  # > 1 MiB, so several blocks
    path = tmp_path / "blob"
    path.write_bytes(data)
    assert sha256_file(path) == hashlib.sha256(data).hexdigest()
    assert sha256_path(path) == sha256_file(path)


def test_sha256_path_of_folder(tmp_path: Path) -> None:
    d = tmp_path / "d"
    (d / "sub").mkdir(parents=True)
    (d / "a.txt").write_text("a")
    (d / "sub" / "b.txt").write_text("b")
    h = sha256_path(d)
    (d / "MANIFEST.json").write_text("{}")
    assert sha256_path(d) == h, "MANIFEST.json is metadata, not data"
    (d / "sub" / "b.txt").write_text("B")
    assert sha256_path(d) != h
    (d / "sub" / "b.txt").write_text("b")
    (d / "sub" / "b.txt").rename(d / "sub" / "c.txt")
    assert sha256_path(d) != h, "names are part of a folder's hash"


def test_sha256_path_never_opens_a_fifo_or_a_dangling_link(tmp_path: Path) -> None:
    """Issue 16: hashing an input folder opened every file: a FIFO hung the run, a broken symlink aborted it."""
    import os
    import signal

    (tmp_path / "a.txt").write_text("a")
    before = sha256_path(tmp_path)
    os.mkfifo(tmp_path / "pipe")
    (tmp_path / "gone").symlink_to(tmp_path / "nowhere")

    def hung(*_: object) -> None:
        raise TimeoutError("sha256_path hung on the FIFO")

    old = signal.signal(signal.SIGALRM, hung)  # a FIFO opened for reading blocks until a writer comes
    signal.alarm(10)
    try:
        after = sha256_path(tmp_path)
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, old)
    assert after != before and after == sha256_path(tmp_path)  # their names count; nothing was opened
