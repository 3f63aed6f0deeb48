"""Issue 16 (reliability), curation reader: every input file is read or listed as skipped with a reason,
oversized records are never loaded whole, and every record is accounted for per file."""

from __future__ import annotations

import gzip
import io
import json
import os
import tracemalloc
from collections import Counter
from pathlib import Path

import pytest

pytest.importorskip("datatrove")

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from herd.data.readers import READ_ERROR, HerdReader


def read(folder: Path, **kw: object) -> list:
    return list(HerdReader(str(folder), **kw).run(None, 0, 1))


def reasons(docs: list) -> Counter[str]:
    return Counter(d.metadata[READ_ERROR] for d in docs if d.metadata.get(READ_ERROR))


def test_every_skipped_file_is_listed_with_its_reason(tmp_path: Path) -> None:
    """Was: files under dropped/, hidden files and bookkeeping names were skipped without a trace."""
    (tmp_path / "docs" / "dropped").mkdir(parents=True)
    (tmp_path / "docs" / "a.txt").write_text("kept words")
    (tmp_path / "docs" / "dropped" / "x.jsonl").write_text(json.dumps({"text": "old drop"}) + "\n")
    (tmp_path / "docs" / ".hidden.txt").write_text("hidden")
    for name in ("MANIFEST.json", "LICENSES.json", "LICENSES.md", "mix_weights.json"):
        (tmp_path / "docs" / name).write_text("{}")
    os.mkfifo(tmp_path / "docs" / "pipe.txt")
    (tmp_path / "docs" / "gone.txt").symlink_to(tmp_path / "nowhere")
    reader = HerdReader(str(tmp_path))
    files, skipped = reader.inventory()
    assert files == ["docs/a.txt"]
    assert {s["path"]: s["reason"] for s in skipped} == {
        "docs/dropped/x.jsonl": "dropped_folder",
        "docs/.hidden.txt": "hidden",
        "docs/MANIFEST.json": "bookkeeping",
        "docs/LICENSES.json": "bookkeeping",
        "docs/LICENSES.md": "bookkeeping",
        "docs/mix_weights.json": "bookkeeping",
        "docs/pipe.txt": "not_a_regular_file",  # a FIFO is never opened: opening it would hang
        "docs/gone.txt": "broken_symlink",
    }
    assert [d.text for d in read(tmp_path)] == ["kept words"]


def test_a_single_file_input_is_read(tmp_path: Path) -> None:
    """Was: a file given as the input folder crashed datatrove's listing with an IndexError."""
    good = tmp_path / "good.jsonl"
    good.write_text("".join(json.dumps({"text": f"row {i}"}) + "\n" for i in range(3)))
    docs = list(HerdReader(str(tmp_path), files=["good.jsonl"]).run(None, 0, 1))
    assert [d.text for d in docs] == ["row 0", "row 1", "row 2"]
    assert [d.metadata["source_line"] for d in docs] == [1, 2, 3]


@pytest.mark.parametrize("suffix", [".jsonl", ".jsonl.zst", ".jsonl.gz"])
def test_an_oversized_jsonl_line_is_skipped_without_loading_it(tmp_path: Path, suffix: str) -> None:
    """Was: a line over max_doc_bytes was read whole (a 200 MB line cost 481 MB) before being dropped."""
    import random

    rng = random.Random(0)
    words = [f"w{rng.randrange(10**6)}" for _ in range(800_000)]  # about 6 MB, hard to compress
    rows = [json.dumps({"text": "small one"}), json.dumps({"text": " ".join(words)}), json.dumps({"text": "after"})]
    data = ("\n".join(rows) + "\n").encode()
    if suffix.endswith(".zst"):
        import zstandard

        data = zstandard.compress(data)
    elif suffix.endswith(".gz"):
        data = gzip.compress(data)
    (tmp_path / f"rows{suffix}").write_bytes(data)
    del words, rows, data
    tracemalloc.start()
    try:
        docs = read(tmp_path, max_doc_bytes=100_000)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert [d.text for d in docs if not d.metadata.get(READ_ERROR)] == ["small one", "after"]
    assert reasons(docs) == {"too_large": 1}
    big = next(d for d in docs if d.metadata.get(READ_ERROR))
    assert big.metadata["bytes_in"] > 5_000_000 and big.metadata["source_line"] == 2
    assert peak < 2_000_000, peak  # well below the 6 MB line


def test_records_carry_their_file_and_line_and_replacements_are_counted(tmp_path: Path) -> None:
    """Was: no record said where it came from; a JSONL line with one bad byte was `malformed_json`."""
    lines = [json.dumps({"text": "first"}).encode(), b'{"text": "caf\xe9 ' + b"x" * 200 + b'"}', b"{bad"]
    (tmp_path / "rows.jsonl").write_bytes(b"\n".join(lines) + b"\n")
    docs = read(tmp_path)
    by_line = {d.metadata["source_line"]: d for d in docs}
    assert all(d.metadata["source_file"] == "rows.jsonl" for d in docs)
    assert by_line[1].text == "first"
    assert by_line[2].text.startswith("caf\ufffd") and by_line[2].metadata["utf8_replaced"] == 1
    assert by_line[3].metadata[READ_ERROR] == "malformed_json"


def test_a_gzipped_text_file_is_read_as_text(tmp_path: Path) -> None:
    """Was: notes.txt.gz was sniffed as binary and dropped as `binary_file`."""
    (tmp_path / "notes.txt.gz").write_bytes(gzip.compress(b"plain words, compressed"))
    (tmp_path / "mod.py.gz").write_bytes(gzip.compress(b"def f():\n    return 1\n"))
    docs = {d.id: d for d in read(tmp_path)}
    assert docs["notes.txt.gz"].text == "plain words, compressed" and not reasons(list(docs.values()))
    assert docs["mod.py.gz"].metadata["code_language"] == "python"


def test_a_corrupt_parquet_file_is_not_called_a_truncated_archive(tmp_path: Path) -> None:
    (tmp_path / "bad.parquet").write_bytes(b"PAR1" + b"\x00garbage" * 10 + b"PAR1")
    assert reasons(read(tmp_path)) == {"corrupt_parquet": 1}


# ------------------------------------------------------------------ hostile files, at random


def _archives(payload: bytes, cut: float) -> dict[str, bytes]:
    """The payload in every supported container, each cut at `cut` of its length (1.0: whole)."""
    import pyarrow as pa
    import pyarrow.parquet as pq
    import zstandard
    from warcio.statusandheaders import StatusAndHeaders
    from warcio.warcwriter import WARCWriter

    text = payload.decode("utf-8", "replace")
    rows = "".join(json.dumps({"text": t}) + "\n" for t in text.split("\n")).encode()
    pbuf = io.BytesIO()
    pq.write_table(pa.table({"text": text.split("\n")}), pbuf)
    wbuf = io.BytesIO()
    headers = StatusAndHeaders("200 OK", [("Content-Type", "text/html")], protocol="HTTP/1.1")
    writer = WARCWriter(wbuf, gzip=True)
    url = "https://x.example/"
    writer.write_record(writer.create_warc_record(url, "response", payload=io.BytesIO(payload), http_headers=headers))
    whole = {
        "a.jsonl.gz": gzip.compress(rows),
        "a.jsonl.zst": zstandard.compress(rows),
        "a.txt.gz": gzip.compress(payload),
        "a.parquet": pbuf.getvalue(),
        "a.warc.gz": wbuf.getvalue(),
        "a.jsonl": rows,
    }
    return {name: data[: max(1, int(len(data) * cut))] for name, data in whole.items()}


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    payload=st.binary(max_size=600),
    cut=st.sampled_from([0.2, 0.5, 0.9, 1.0]),
    junk=st.binary(max_size=300),
    obj=st.recursive(
        st.none() | st.booleans() | st.integers() | st.text(max_size=20),
        lambda kids: st.lists(kids, max_size=3) | st.dictionaries(st.sampled_from(["text", "id", "metadata"]), kids),
        max_leaves=6,
    ),
)
def test_hostile_files_lose_no_record(tmp_path_factory: pytest.TempPathFactory, payload: bytes, cut: float,
                                      junk: bytes, obj: object) -> None:  # fmt: skip
    """Random bytes, cut archives of every kind and random JSON: per file, records in = kept + dropped by
    reason, and the reader never raises."""
    pytest.importorskip("warcio")
    folder = tmp_path_factory.mktemp("hostile")
    files = _archives(payload, cut)
    for name in ("r.jsonl", "r.jsonl.gz", "r.jsonl.zst", "r.parquet", "r.warc.gz", "r.txt", "r.txt.gz", "r.bin"):
        files[name] = junk
    files["j.jsonl"] = (json.dumps(obj) + "\n" + json.dumps({"text": obj})).encode()
    for name, data in files.items():
        (folder / name).write_bytes(data)
    docs = read(folder, max_doc_bytes=400)
    per_file: dict[str, Counter[str]] = {}
    for d in docs:
        per_file.setdefault(d.metadata["source_file"], Counter())[d.metadata.get(READ_ERROR) or "kept"] += 1
    reader_files, skipped = HerdReader(str(folder)).inventory()
    assert sorted(reader_files) == sorted(files) and not skipped
    for name, tally in per_file.items():
        assert name in files
        assert all(isinstance(reason, str) and reason for reason in tally), (name, tally)
    assert sum(sum(t.values()) for t in per_file.values()) == len(docs)  # every document names its file
    whole_docs = {n for n in files if not n.endswith((".jsonl", ".jsonl.gz", ".jsonl.zst", ".parquet", ".warc.gz"))}
    for name in whole_docs:  # a whole-file document is exactly one record, kept or dropped
        assert sum(per_file.get(name, Counter()).values()) == 1, name
    if cut == 1.0:  # whole archives: one record per row, each kept or dropped with its reason
        rows = len(payload.decode("utf-8", "replace").split("\n"))
        for name in ("a.jsonl", "a.jsonl.gz", "a.jsonl.zst", "a.parquet"):
            assert sum(per_file[name].values()) == rows, (name, per_file[name])
