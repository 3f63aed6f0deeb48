"""The tiktoken ranks format: one `<base64 token bytes> <rank>` line per BPE token, rank = merge order.

Meta ships the Llama 3 tokenizer in this format (`tokenizer.model`, 128,000 lines) [P §3.2]; herd writes
the tokenizers it trains in the same format, so one loader serves both. A ranks file is checked when
read: a corrupt line, a token or rank given twice, a gap in the ranks or a missing single-byte token is
a one-line ValueError naming the file and line.
"""

from __future__ import annotations

import base64
import binascii
from collections import Counter
from collections.abc import Mapping
from functools import cache
from pathlib import Path

N_BYTES = 256  # byte-level BPE: every single byte is a token, so any input can be encoded


def load_ranks(path: str | Path) -> dict[bytes, int]:
    """Read and check a tiktoken ranks file; returns {token bytes: rank}."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"no tokenizer ranks file at {path}")
    try:
        text = path.read_bytes().decode("ascii")
    except UnicodeDecodeError:
        raise ValueError(f"{path}: not a tiktoken ranks file (binary data; expected '<base64> <rank>' lines)") from None
    ranks = parse_ranks(text, str(path))
    check_ranks(ranks, str(path))
    return ranks


def parse_ranks(text: str, where: str = "ranks") -> dict[bytes, int]:
    """Parse `<base64> <rank>` lines; duplicate tokens or ranks are errors, not silent overwrites."""
    ranks: dict[bytes, int] = {}
    line_of_rank: dict[int, int] = {}
    for lineno, line in enumerate(text.splitlines(), 1):
        if not line.strip():
            continue
        token, rank = _parse_line(line, where, lineno)
        if token in ranks:
            raise ValueError(f"{where}:{lineno}: token {token!r} is listed twice (first with rank {ranks[token]})")
        if rank in line_of_rank:
            raise ValueError(f"{where}:{lineno}: duplicate rank {rank} (already used on line {line_of_rank[rank]})")
        ranks[token] = rank
        line_of_rank[rank] = lineno
    return ranks


def _parse_line(line: str, where: str, lineno: int) -> tuple[bytes, int]:
    parts = line.split()
    try:
        if len(parts) != 2:
            raise ValueError
        token, rank = base64.b64decode(parts[0], validate=True), int(parts[1])
        if rank < 0 or not token:
            raise ValueError
    except (ValueError, binascii.Error):
        shown = line if len(line) <= 40 else line[:37] + "..."
        raise ValueError(f"{where}:{lineno}: corrupt ranks line {shown!r} (expected '<base64 token> <rank>')") from None
    return token, rank


def check_ranks(ranks: Mapping[bytes, int], where: str = "ranks") -> None:
    """Ranks must be 0..N-1 (special tokens go right after them) and hold all 256 single bytes."""
    if not ranks:
        raise ValueError(f"{where}: empty ranks file")
    missing = [b for b in range(N_BYTES) if bytes([b]) not in ranks]
    if missing:
        raise ValueError(
            f"{where}: only {N_BYTES - len(missing)} of the {N_BYTES} single-byte tokens "
            f"(missing bytes {missing[:4]}{'...' if len(missing) > 4 else ''}); byte-level BPE needs all of them"
        )
    n = len(ranks)
    if len(set(ranks.values())) != n:
        dup = next(r for r, c in Counter(ranks.values()).items() if c > 1)
        raise ValueError(f"{where}: duplicate rank {dup} (each rank names one token)")
    if min(ranks.values()) < 0 or max(ranks.values()) != n - 1:
        gap = min(set(range(n)) - set(ranks.values()), default=-1)
        raise ValueError(f"{where}: ranks must be 0..{n - 1} without gaps, but rank {gap} is missing")


def dump_ranks(ranks: Mapping[bytes, int]) -> str:
    """The file text, in rank order (the order Meta's file uses)."""
    lines = (f"{base64.b64encode(token).decode('ascii')} {rank}" for token, rank in _by_rank(ranks))
    return "\n".join(lines) + "\n"


def save_ranks(ranks: Mapping[bytes, int], path: str | Path) -> Path:
    """Check and write a ranks file atomically (a reader never sees half a file)."""
    from herd.core.io import atomic_write_text

    check_ranks(ranks, str(path))
    return atomic_write_text(path, dump_ranks(ranks), encoding="ascii")


def _by_rank(ranks: Mapping[bytes, int]) -> list[tuple[bytes, int]]:
    return sorted(ranks.items(), key=lambda kv: kv[1])


@cache
def bytes_to_unicode() -> dict[int, str]:
    """GPT-2's printable spelling of each byte, the alphabet HF byte-level BPE stores tokens in."""
    printable = [*range(ord("!"), ord("~") + 1), *range(ord("¡"), ord("¬") + 1), *range(ord("®"), ord("ÿ") + 1)]
    spelled = dict(zip(printable, map(chr, printable)))
    extra = (b for b in range(N_BYTES) if b not in spelled)
    spelled.update({b: chr(N_BYTES + i) for i, b in enumerate(extra)})
    return dict(sorted(spelled.items()))


@cache
def unicode_to_bytes() -> dict[str, int]:
    return {c: b for b, c in bytes_to_unicode().items()}


def spell(token: bytes) -> str:
    """Token bytes in HF's byte-level alphabet."""
    alphabet = bytes_to_unicode()
    return "".join(alphabet[b] for b in token)


def unspell(token: str) -> bytes:
    """HF byte-level alphabet back to raw bytes (KeyError for a character outside the alphabet)."""
    table = unicode_to_bytes()
    return bytes(table[c] for c in token)


def merges_from_ranks(ranks: Mapping[bytes, int]) -> list[tuple[bytes, bytes]]:
    """Every pair tiktoken would merge, ordered as tiktoken prefers them (by the rank they produce).

    tiktoken merges any adjacent pair whose concatenation is a token, so each split of a token into two
    tokens is a merge; ties within one token go to the lower-ranked pieces.
    """
    merges: list[tuple[int, int, int, bytes, bytes]] = []
    for token, rank in ranks.items():
        for i in range(1, len(token)):
            left, right = token[:i], token[i:]
            if left in ranks and right in ranks:
                merges.append((rank, ranks[left], ranks[right], left, right))
    merges.sort()
    return [(left, right) for *_, left, right in merges]
