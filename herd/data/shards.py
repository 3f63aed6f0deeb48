"""Token shards: one binary file of documents' token ids that describes itself and is checked when read.

Layout (little-endian):
    header, 64 bytes: magic b"HERDTOK\\0" | version u32 | dtype code u32 | n_tokens u64 | n_docs u64 |
                      vocab_size u64 | 24 reserved bytes
    tokens:  n_tokens × dtype (uint16 when the vocabulary fits, else uint32)
    offsets: (n_docs + 1) × uint64, document i is tokens[offsets[i]:offsets[i + 1]] (the document index)

Readers memory-map the file, so a shard costs no RAM until its tokens are touched.
"""

from __future__ import annotations

import os
import struct
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path

import numpy as np

MAGIC = b"HERDTOK\0"
VERSION = 1
HEADER = struct.Struct("<8sIIQQQ24x")
DTYPES = {1: np.dtype("<u2"), 2: np.dtype("<u4")}
SUFFIX = ".bin"


def dtype_for(vocab_size: int) -> tuple[int, np.dtype]:
    return (1, DTYPES[1]) if vocab_size <= 2**16 else (2, DTYPES[2])


def write_shard(path: str | Path, docs: Iterable[Sequence[int]], vocab_size: int) -> tuple[int, int]:
    """Write documents' token ids to `path` atomically; return (n_tokens, n_docs)."""
    path = Path(path)
    code, dtype = dtype_for(vocab_size)
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    offsets = [0]
    with open(tmp, "wb") as f:
        f.write(b"\0" * HEADER.size)  # placeholder: counts are known only at the end
        for doc in docs:
            arr = np.asarray(doc, dtype=np.int64)
            if arr.size and (arr.min() < 0 or arr.max() >= vocab_size):
                raise ValueError(f"{path}: document {len(offsets) - 1} has token ids outside [0, {vocab_size})")
            f.write(arr.astype(dtype).tobytes())
            offsets.append(offsets[-1] + arr.size)
        f.write(np.asarray(offsets, dtype="<u8").tobytes())
        f.seek(0)
        f.write(HEADER.pack(MAGIC, VERSION, code, offsets[-1], len(offsets) - 1, vocab_size))
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)
    return offsets[-1], len(offsets) - 1


class TokenShard:
    """A read-only, memory-mapped view of one shard, validated against its header."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        size = self.path.stat().st_size
        with open(self.path, "rb") as f:
            raw = f.read(HEADER.size)
        if len(raw) < HEADER.size:
            raise ValueError(f"{self.path}: truncated token shard (no header)")
        magic, version, code, n_tokens, n_docs, vocab = HEADER.unpack(raw)
        if magic != MAGIC:
            raise ValueError(f"{self.path}: not a herd token shard (magic {magic!r})")
        if version != VERSION:
            raise ValueError(f"{self.path}: token shard version {version}, this herd reads {VERSION}")
        if code not in DTYPES:
            raise ValueError(f"{self.path}: unknown dtype code {code}")
        dtype = DTYPES[code]
        expected = HEADER.size + n_tokens * dtype.itemsize + (n_docs + 1) * 8
        if size != expected:
            raise ValueError(f"{self.path}: size {size} bytes, header promises {expected} (truncated or corrupt)")
        self.vocab_size, self.n_tokens, self.n_docs = vocab, n_tokens, n_docs
        self.tokens = np.memmap(self.path, dtype=dtype, mode="r", offset=HEADER.size, shape=(n_tokens,))
        self.offsets = np.memmap(
            self.path, dtype="<u8", mode="r", offset=HEADER.size + n_tokens * dtype.itemsize, shape=(n_docs + 1,)
        )
        if self.offsets[0] != 0 or self.offsets[-1] != n_tokens:
            raise ValueError(f"{self.path}: document index does not span the tokens")

    def __len__(self) -> int:
        return self.n_docs

    def check_ids(self) -> None:
        """Every token id below the header's vocab_size. A scan of the tokens (GB/s on a memory map), done
        when a loader opens the shard: a bad id then names its file instead of failing in the embedding."""
        if self.n_tokens and (top := int(self.tokens.max())) >= self.vocab_size:
            raise ValueError(
                f"{self.path}: token id {top} is outside the shard's vocab_size {self.vocab_size} "
                "(tokenized with another tokenizer, or corrupt)"
            )

    def doc(self, i: int) -> np.ndarray:
        return self.tokens[self.offsets[i] : self.offsets[i + 1]]

    def docs(self) -> Iterator[np.ndarray]:
        for i in range(self.n_docs):
            yield self.doc(i)


def list_shards(folder: str | Path) -> list[Path]:
    """Every shard under `folder`, sorted (so every rank and every rerun sees the same order)."""
    folder = Path(folder)
    if folder.is_file():
        return [folder]
    shards = sorted(folder.rglob(f"*{SUFFIX}"))
    if not shards:
        raise FileNotFoundError(f"{folder}: no token shards (*{SUFFIX})")
    return shards
