"""Train byte-level BPE in Meta's format, or extend an existing ranks file with extra merges [P §3.2].

Training runs HF `tokenizers`' BPE trainer with the Llama 3 pre-tokenization regex, then exports the
result as tiktoken ranks (single bytes 0-255 first, then merged tokens in merge order), so it loads
through `Tokenizer` like Meta's file. Extension reproduces the paper's construction (tiktoken's 100K
tokens + 28K extra tokens for non-English text): merges are learned on extra text *on top of* the base
ranks, appended after them, and every base rank keeps its id.
"""

from __future__ import annotations

import heapq
from collections import Counter, defaultdict
from collections.abc import Iterable, Mapping, Sequence
from itertools import pairwise
from typing import TYPE_CHECKING

import tiktoken

from herd.tokenizer.bpe import LLAMA3_PAT_STR, NUM_SPECIAL, Tokenizer
from herd.tokenizer.ranks import N_BYTES, check_ranks, unspell

if TYPE_CHECKING:
    import tokenizers

Pair = tuple[bytes, bytes]


def train_bpe(
    texts: Iterable[str],
    vocab_size: int,
    n_special: int = NUM_SPECIAL,
    min_frequency: int = 2,
    pat_str: str = LLAMA3_PAT_STR,
) -> dict[bytes, int]:
    """Ranks for a tokenizer of `vocab_size` ids in all: 256 bytes + merges + `n_special` specials."""
    n_ranks = vocab_size - n_special
    if n_ranks < N_BYTES:
        raise ValueError(f"vocab_size {vocab_size} leaves no room: need > {N_BYTES} byte tokens + {n_special} specials")
    return hf_to_ranks(train_hf(texts, n_ranks, min_frequency, pat_str))


def train_hf(
    texts: Iterable[str], n_ranks: int, min_frequency: int = 2, pat_str: str = LLAMA3_PAT_STR
) -> tokenizers.Tokenizer:
    """HF byte-level BPE trained with the given regex (the raw trainer output, HF's own ids)."""
    from tokenizers import Regex, Tokenizer, decoders, models, pre_tokenizers, trainers

    hf = Tokenizer(models.BPE())
    split = pre_tokenizers.Split(Regex(pat_str), behavior="isolated")
    hf.pre_tokenizer = pre_tokenizers.Sequence([split, pre_tokenizers.ByteLevel(False, use_regex=False)])
    hf.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=n_ranks,
        min_frequency=min_frequency,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),  # all 256 bytes, seen or not
        special_tokens=[],
        show_progress=False,
    )
    hf.train_from_iterator(texts, trainer)
    return hf


def hf_to_ranks(hf: tokenizers.Tokenizer) -> dict[bytes, int]:
    """HF byte-level vocab -> tiktoken ranks: bytes 0-255 in byte order, then tokens in merge (id) order."""
    vocab = hf.get_vocab(with_added_tokens=False)
    by_id = sorted(vocab.items(), key=lambda kv: kv[1])
    merged = [unspell(tok) for tok, _ in by_id if len(tok) > 1]
    ranks = {bytes([b]): b for b in range(N_BYTES)}
    ranks.update({tok: N_BYTES + i for i, tok in enumerate(merged)})
    check_ranks(ranks, "trained vocabulary")
    return ranks


# ---------------------------------------------------------------- extension


def extend_ranks(
    ranks: Mapping[bytes, int],
    texts: Iterable[str],
    n_merges: int,
    min_frequency: int = 2,
    pat_str: str = LLAMA3_PAT_STR,
) -> dict[bytes, int]:
    """Learn up to `n_merges` new tokens on `texts` over the base ranks; base ranks are unchanged.

    Each word is first encoded with the base ranks; a new token's rank is above all base ranks, so
    tiktoken applies every base merge before any new one and the counts here are exactly the pairs
    tiktoken would see.
    """
    counts = _count_pieces(texts, pat_str)
    base = tiktoken.Encoding("base", pat_str=pat_str, mergeable_ranks=dict(ranks), special_tokens={})
    out = dict(ranks)
    words = [[base.decode_single_token_bytes(t) for t in base._encode_single_piece(w)] for w in counts]
    freqs = list(counts.values())
    pairs: Counter[Pair] = Counter()
    where: defaultdict[Pair, set[int]] = defaultdict(set)
    for i, parts in enumerate(words):
        _update_pairs(i, parts, freqs[i], pairs, where)
    heap = [(-c, p) for p, c in pairs.items()]
    heapq.heapify(heap)
    for _ in range(n_merges):
        pair = _pop_best(heap, pairs, min_frequency)
        if pair is None:
            break
        out[pair[0] + pair[1]] = len(out)
        touched: set[Pair] = set()
        for i in list(where[pair]):
            touched |= _update_pairs(i, words[i], -freqs[i], pairs, where)
            words[i] = _merge_greedy(words[i], out)
            touched |= _update_pairs(i, words[i], freqs[i], pairs, where)
        for p in touched:
            if pairs[p] > 0:
                heapq.heappush(heap, (-pairs[p], p))
    return out


def _count_pieces(texts: Iterable[str], pat_str: str) -> Counter[bytes]:
    from tokenizers import Regex, pre_tokenizers

    split = pre_tokenizers.Split(Regex(pat_str), behavior="isolated")
    counts: Counter[bytes] = Counter()
    for text in texts:
        counts.update(piece.encode("utf-8") for piece, _ in split.pre_tokenize_str(text))
    return counts


def _update_pairs(i: int, parts: list[bytes], weight: int, pairs: Counter[Pair], where: dict) -> set[Pair]:
    seen = set(pairwise(parts))
    for p in pairwise(parts):
        pairs[p] += weight
    for p in seen:
        (where[p].add if weight > 0 else where[p].discard)(i)
    return seen


def _pop_best(heap: list, pairs: Counter[Pair], min_frequency: int) -> Pair | None:
    # Lazy heap: an entry whose count no longer matches is stale; ties break on the pair's bytes.
    while heap:
        neg, pair = heapq.heappop(heap)
        if pairs.get(pair, 0) == -neg:
            return pair if -neg >= max(min_frequency, 1) else None
    return None


def _merge_greedy(parts: list[bytes], ranks: Mapping[bytes, int]) -> list[bytes]:
    """tiktoken's merge loop: repeatedly join the adjacent pair whose join has the lowest rank."""
    while len(parts) > 1:
        best, at = None, -1
        for j in range(len(parts) - 1):
            r = ranks.get(parts[j] + parts[j + 1])
            if r is not None and (best is None or r < best):
                best, at = r, j
        if best is None:
            break
        parts = [*parts[:at], parts[at] + parts[at + 1], *parts[at + 2 :]]
    return parts


# ---------------------------------------------------------------- from texts


def train_tokenizer(
    texts: Sequence[str], vocab_size: int, min_frequency: int = 2, base: str = "", extra_merges: int = 0
) -> Tokenizer:
    """A tokenizer trained on `texts`, or `base` ("llama3" or a ranks file/folder) extended by up to
    `extra_merges` tokens learned on them. Reading the texts is herd.data's job (herd.data.tokenizer_stage)."""
    from herd.tokenizer.load import load_tokenizer

    if not base:
        return Tokenizer(train_bpe(texts, vocab_size, min_frequency=min_frequency))
    if extra_merges <= 0:
        raise ValueError("tokenizer train: extending a base tokenizer needs extra_merges > 0")
    tok = load_tokenizer(base)
    if not isinstance(tok, Tokenizer):
        raise ValueError(f"tokenizer train: base {base!r} is not a tiktoken ranks tokenizer")
    return Tokenizer(extend_ranks(tok.ranks, texts, extra_merges, min_frequency, tok.pat_str))
