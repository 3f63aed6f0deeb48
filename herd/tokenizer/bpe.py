"""The Llama 3 tokenizer: tiktoken byte-level BPE with Meta's regex and 256 special tokens [P §3.2].

`Tokenizer` reproduces `llama_models.llama3.tokenizer.Tokenizer` id for id (tests/unit/tokenizer hold
the golden comparison) while staying within a few percent of raw tiktoken: the long-input guard Meta
writes as a Python loop over every character is done here with a check every 25,000 characters.
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from functools import partial
from itertools import pairwise
from pathlib import Path
from typing import TYPE_CHECKING, Literal

import tiktoken

from herd.tokenizer.protocol import AllowedSpecial
from herd.tokenizer.ranks import check_ranks, load_ranks, merges_from_ranks, save_ranks, spell

if TYPE_CHECKING:
    import tokenizers

# Meta's pre-tokenization regex [L3 Tokenizer.pat_str; LM]: contractions, letter runs with one leading
# non-letter, digits in groups of at most 3, punctuation runs, newlines, other whitespace.
LLAMA3_PAT_STR = (
    r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*"
    r"|\s*[\r\n]+|\s+(?!\S)|\s+"
)
# tiktoken panics past these (openai/tiktoken#195); Meta's encoder cuts input to respect both [L3][LM].
MAX_ENCODE_CHARS = 400_000
MAX_RUN_CHARS = 25_000

NUM_SPECIAL = 256  # ids n_ranks .. n_ranks+255, 128,000-128,255 for Meta's file [P §3.2, Table 3]
# Llama 3.1 names and order [LM models/llama3/tokenizer.py]; the rest are reserved_special_token_2...
LLAMA31_NAMED = (
    "<|begin_of_text|>",
    "<|end_of_text|>",
    "<|reserved_special_token_0|>",
    "<|reserved_special_token_1|>",
    "<|finetune_right_pad_id|>",
    "<|step_id|>",
    "<|start_header_id|>",
    "<|end_header_id|>",
    "<|eom_id|>",  # end of message: a tool call is pending
    "<|eot_id|>",  # end of turn
    "<|python_tag|>",  # starts a tool call
)


def llama3_special_tokens(n: int = NUM_SPECIAL, layout: Literal["3.1", "3.2"] = "3.1") -> list[str]:
    """Special token names in id order. "3.2" puts `<|image|>` at position 11, as llama-models 0.3.0 does."""
    named = [*LLAMA31_NAMED, "<|image|>"] if layout == "3.2" else list(LLAMA31_NAMED)
    if n < len(named):
        raise ValueError(f"need at least {len(named)} special tokens for the Llama 3 layout, got {n}")
    return named + [f"<|reserved_special_token_{2 + i}|>" for i in range(n - len(named))]


class Tokenizer:
    """Byte-level BPE over tiktoken ranks, special tokens right after the ranks (Llama 3 layout)."""

    def __init__(
        self,
        ranks: Mapping[bytes, int],
        special_tokens: Sequence[str] | None = None,
        pat_str: str = LLAMA3_PAT_STR,
        name: str = "herd",
    ) -> None:
        names = list(special_tokens) if special_tokens is not None else llama3_special_tokens()
        check_ranks(ranks, name)
        self._ranks = dict(ranks)
        self.n_ranks = len(ranks)
        self.special_ids: dict[str, int] = {tok: self.n_ranks + i for i, tok in enumerate(names)}
        self.pat_str = pat_str
        self.name = name
        self.model = tiktoken.Encoding(
            name=name, pat_str=pat_str, mergeable_ranks=self._ranks, special_tokens=self.special_ids
        )
        self.vocab_size = self.n_ranks + len(names)
        self.bos_id = self.special_ids["<|begin_of_text|>"]
        self.eos_id = self.special_ids["<|end_of_text|>"]
        self.eot_id = self.special_ids.get("<|eot_id|>", self.eos_id)
        self.eom_id = self.special_ids.get("<|eom_id|>", self.eos_id)
        self.pad_id = self.special_ids.get("<|finetune_right_pad_id|>", self.eos_id)
        # 3.1 stops on all three: eom hands the turn to a tool, eot to the user [P §4.1.1]
        self.stop_ids: set[int] = {self.eos_id, self.eom_id, self.eot_id}
        self._encode_ordinary = self.model.encode_ordinary

    @classmethod
    def from_file(cls, path: str | Path, special_tokens: Sequence[str] | None = None) -> Tokenizer:
        """Load a checked ranks file (Meta's `tokenizer.model` or one herd trained)."""
        return cls(load_ranks(path), special_tokens, name=Path(path).name)

    @property
    def special_tokens(self) -> dict[str, int]:
        """Meta's name for `special_ids`."""
        return self.special_ids

    @property
    def ranks(self) -> dict[bytes, int]:
        """{token bytes: rank}; do not modify (build a new Tokenizer instead)."""
        return self._ranks

    def encode(
        self, text: str, bos: bool = False, eos: bool = False, allowed_special: AllowedSpecial = frozenset()
    ) -> list[int]:
        """Token ids; special-token text is ordinary text unless named in `allowed_special` (or "all")."""
        if allowed_special:
            encode = partial(self.model.encode, allowed_special=allowed_special, disallowed_special=())
        else:
            encode = self._encode_ordinary
        if len(text) <= MAX_RUN_CHARS:
            ids = encode(text)  # no run can be too long: the common case costs one call
        else:
            ids = []
            for piece in guard_pieces(text):
                ids.extend(encode(piece))  # C-level extend: a Python loop per id costs ~20% of throughput
        if bos:
            ids.insert(0, self.bos_id)
        if eos:
            ids.append(self.eos_id)
        return ids

    def encode_batch(
        self,
        texts: Sequence[str],
        bos: bool = False,
        eos: bool = False,
        num_threads: int = 8,
        allowed_special: AllowedSpecial = frozenset(),
    ) -> list[list[int]]:
        """Encode on threads: tiktoken releases the GIL while it merges."""
        with ThreadPoolExecutor(num_threads) as pool:
            return list(pool.map(lambda t: self.encode(t, bos, eos, allowed_special), texts))

    def decode(self, ids: Sequence[int]) -> str:
        """Text for `ids`; special tokens come back as their names, broken UTF-8 as U+FFFD."""
        return self.model.decode(list(ids))

    def decode_bytes(self, ids: Sequence[int]) -> bytes:
        return self.model.decode_bytes(list(ids))

    def save(self, path: str | Path) -> Path:
        """Write the ranks file; the special tokens follow from the layout, as in Meta's file."""
        return save_ranks(self.ranks, path)

    def to_hf(self) -> tokenizers.Tokenizer:
        """The same tokenizer as an HF `tokenizers.Tokenizer` (ids equal; for tokenizer.json export)."""
        return ranks_to_hf(self.ranks, self.special_ids, self.pat_str)

    def __repr__(self) -> str:
        return f"Tokenizer({self.name!r}, n_ranks={self.n_ranks}, vocab_size={self.vocab_size})"


def ranks_to_hf(ranks: Mapping[bytes, int], special_ids: Mapping[str, int], pat_str: str) -> tokenizers.Tokenizer:
    """HF byte-level BPE with tiktoken's ids and behaviour (merges derived from ranks, whole-piece lookup)."""
    from tokenizers import AddedToken, Regex, Tokenizer, decoders, models, pre_tokenizers

    vocab = {spell(tok): rank for tok, rank in ranks.items()}
    merges = [(spell(a), spell(b)) for a, b in merges_from_ranks(ranks)]
    # ignore_merges: a piece that is itself a token is emitted whole, as tiktoken does.
    hf = Tokenizer(models.BPE(vocab, merges, ignore_merges=True))
    hf.pre_tokenizer = pre_tokenizers.Sequence(
        [
            pre_tokenizers.Split(Regex(pat_str), behavior="isolated"),
            pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False),
        ]
    )
    hf.decoder = decoders.ByteLevel()
    specials = sorted(special_ids.items(), key=lambda kv: kv[1])
    hf.add_special_tokens([AddedToken(tok, special=True, normalized=False) for tok, _ in specials])
    return hf


# ---------------------------------------------------------------- long-input guard

_RUN = {True: re.compile(r"\s*"), False: re.compile(r"\S*")}


def guard_pieces(text: str, max_chars: int = MAX_ENCODE_CHARS, max_run: int = MAX_RUN_CHARS) -> Iterator[str]:
    """Meta's cut of `text`: chunks of ≤400,000 chars, each cut again inside same-class runs >25,000.

    Yields exactly the pieces `llama_models` `Tokenizer._split_whitespaces_or_nonwhitespaces` yields.
    """
    for start in range(0, max(len(text), 1), max_chars):
        chunk = text[start : start + max_chars]
        yield from _cut_long_runs(chunk, max_run) if _has_long_run(chunk, max_run) else (chunk,)


def _has_long_run(chunk: str, max_run: int) -> bool:
    """A run of more than `max_run` same-class chars covers a multiple of `max_run`: look only there."""
    for p in range(max_run, len(chunk), max_run):
        run = _RUN[chunk[p].isspace()]
        ahead = run.match(chunk, p, p + max_run + 1).end() - p
        need = max_run + 1 - ahead  # chars of the same class needed right before p
        if need <= 0 or (need <= p and run.fullmatch(chunk, p - need, p)):
            return True
    return False


def _cut_long_runs(chunk: str, max_run: int) -> Iterator[str]:
    # Meta cuts a run every `max_run` chars counted from the run's start.
    long_run = re.compile(rf"(?<!\S)\S{{{max_run + 1},}}|(?<!\s)\s{{{max_run + 1},}}")
    cuts = [c for m in long_run.finditer(chunk) for c in range(m.start() + max_run, m.end(), max_run)]
    bounds = [0, *cuts, len(chunk)]
    for a, b in pairwise(bounds):
        yield chunk[a:b]
