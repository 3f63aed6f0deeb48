"""BM25 search over the bundled State of the Union slice: the right speech first, scores as BM25 defines them."""

from __future__ import annotations

import math

import pytest

from herd.tools.search import Document, SearchIndex, load_documents, title_of, tokenize


def test_titles_from_sotu_file_names():
    assert title_of("1908_theodore_roosevelt_r") == "1908 address, Theodore Roosevelt (R)"


def test_year_query_finds_its_speech(sotu_slice):
    index = SearchIndex.from_path(sotu_slice)
    for doc in load_documents(sotu_slice):
        if doc.id.startswith(("1908", "1949", "1858")):
            assert index.search(f"{doc.id[:4]} address", 1)[0].doc_id == doc.id


def test_one_hit_per_document_and_k(sotu_slice):
    hits = SearchIndex.from_path(sotu_slice, passage_words=50).search("congress war peace", 3)
    assert len(hits) == 3 and len({h.doc_id for h in hits}) == 3
    assert hits[0].score >= hits[1].score >= hits[2].score > 0


def test_score_is_okapi_bm25_by_hand():
    # One passage per document; "whale" occurs once in the first of three: idf = ln((3 - 1 + .5) / (1 + .5)).
    docs = [Document("a", "A", "whale ship sea sea"), Document("b", "B", "ship port"), Document("c", "C", "port town")]
    index = SearchIndex(docs, passage_words=100)
    lengths = [len(tokenize(f"{d.title} {d.text}")) for d in docs]
    avgdl, k1, b = sum(lengths) / 3, 1.5, 0.75
    idf = math.log((3 - 1 + 0.5) / (1 + 0.5))
    expected = idf * (1 * (k1 + 1)) / (1 + k1 * (1 - b + b * lengths[0] / avgdl))
    [hit] = index.search("whale", 3)
    assert hit.doc_id == "a" and hit.score == pytest.approx(expected, rel=1e-12)


def test_bad_jsonl_names_file_and_line(tmp_path):
    (tmp_path / "docs.jsonl").write_text('{"text": "fine"}\n{"title": "no text"}\n')
    with pytest.raises(ValueError, match=r"docs.jsonl:2: field 'text'"):
        load_documents(tmp_path)
    with pytest.raises(FileNotFoundError, match="no search corpus"):
        load_documents(tmp_path / "missing")
