"""HerdReader on literal inputs: every format, and every unreadable record becomes a reasoned drop."""

from __future__ import annotations

import gzip
import io
import json
from pathlib import Path

import pytest

pytest.importorskip("datatrove")

from herd.data.documents import iter_documents, to_record
from herd.data.readers import HerdReader, decode_text, looks_binary


def read(folder: Path, **kw: object) -> list:
    return list(HerdReader(str(folder), **kw).run(None, 0, 1))


def test_formats_and_metadata(tmp_path: Path) -> None:
    pytest.importorskip("warcio")
    import pyarrow as pa
    import pyarrow.parquet as pq
    from warcio.statusandheaders import StatusAndHeaders
    from warcio.warcwriter import WARCWriter

    (tmp_path / "site").mkdir()
    (tmp_path / "site" / "page.html").write_text("<html><body><p>hello</p></body></html>")
    (tmp_path / "site" / "mod.py").write_text("def f():\n    return 1\n")
    (tmp_path / "site" / "_private.py").write_text("X = 1\n")  # underscore names are documents too
    (tmp_path / "site" / "notes.txt").write_text("plain words")
    pq.write_table(pa.table({"text": ["row one", "row two"], "url": ["u1", None]}), tmp_path / "site" / "t.parquet")
    buf = io.BytesIO()
    w = WARCWriter(buf, gzip=True)
    for url, body, ctype in (
        ("https://a.example/x", b"<html><p>page</p></html>", "text/html"),
        ("https://a.example/img", b"\x89PNG", "image/png"),
    ):
        headers = StatusAndHeaders("200 OK", [("Content-Type", ctype)], protocol="HTTP/1.1")
        rec = w.create_warc_record(url, "response", payload=io.BytesIO(body), http_headers=headers,
                                   warc_headers_dict={"WARC-Date": "2023-01-02T00:00:00Z"})  # fmt: skip
        w.write_record(rec)
    (tmp_path / "site" / "crawl.warc.gz").write_bytes(buf.getvalue())
    docs = {d.id: d for d in read(tmp_path)}
    assert docs["site/page.html"].metadata["raw_format"] == "html"
    assert docs["site/mod.py"].metadata["language"] == "code"
    assert "site/_private.py" in docs
    assert docs["site/notes.txt"].text == "plain words" and docs["site/notes.txt"].metadata["source"] == "site"
    assert [d.text for i, d in docs.items() if "parquet" in i] == ["row one", "row two"]
    warc = [d for d in docs.values() if d.metadata.get("url", "").startswith("https://a.example")]
    assert len(warc) == 2  # the image response is a document too: dropped later as non_html_record
    assert any(d.metadata.get("read_error") == "non_html_record" for d in warc)
    html = next(d for d in warc if d.metadata["url"].endswith("/x"))
    assert html.metadata["timestamp"] == "2023-01-02T00:00:00Z" and "page" in html.text


def test_hostile_records_become_reasoned_drops(tmp_path: Path) -> None:
    (tmp_path / "bad.txt").write_bytes(b"\xff\xfe\xfa" * 100)
    (tmp_path / "bin.dat").write_bytes(b"\x00\x01\x02" * 100)
    (tmp_path / "big.txt").write_text("x" * 2000)
    lines = [json.dumps({"text": "good"}), "{not json", json.dumps([1, 2]), json.dumps({"text": 5})]
    (tmp_path / "rows.jsonl").write_text("\n".join(lines) + "\n")
    whole = gzip.compress(
        "".join(json.dumps({"text": f"record {i} " + "w" * (i % 7)}) + "\n" for i in range(500)).encode()
    )
    (tmp_path / "cut.jsonl.gz").write_bytes(whole[: len(whole) // 2])
    docs = read(tmp_path, max_doc_bytes=1000)
    reasons = sorted(d.metadata.get("read_error", "ok") for d in docs if d.metadata.get("read_error"))
    assert reasons.count("malformed_json") >= 2  # the bad line, and the partial line at the cut
    assert {
        "invalid_utf8",
        "binary_file",
        "too_large",
        "malformed_record",
        "missing_text_field",
        "truncated_archive",
    } <= set(reasons)
    assert sum(d.text.startswith("record ") for d in docs) > 0  # records before the cut are kept


def test_decode_and_sniff() -> None:
    assert decode_text("héllo".encode(), 0.01) == ("héllo", None)
    assert decode_text(b"caf\xe9", 0.01, "latin-1") == ("café", None)
    assert decode_text(b"\xff" * 10, 0.01) == ("", "invalid_utf8")
    assert looks_binary(b"ab\x00cd") and not looks_binary(b"plain text\n")


def test_iter_documents_reads_kept_shards_and_text(tmp_path: Path) -> None:
    zstandard = pytest.importorskip("zstandard")
    rec = to_record("a", "text a", {"source": "s", "language": "en", "scores": {"quality": 0.5}, "bytes_in": 3})
    (tmp_path / "kept" / "en").mkdir(parents=True)
    (tmp_path / "kept" / "en" / "00000.jsonl.zst").write_bytes(zstandard.compress((json.dumps(rec) + "\n").encode()))
    (tmp_path / "dropped").mkdir()
    (tmp_path / "dropped" / "x.jsonl").write_text(json.dumps({"text": "never read"}) + "\n")
    docs = list(iter_documents(tmp_path))
    assert docs == [{"id": "a", "text": "text a", "source": "s", "language": "en", "url": None,
                     "metadata": {"scores": {"quality": 0.5}}}]  # fmt: skip
    (tmp_path / "plain").mkdir()
    (tmp_path / "plain" / "p.txt").write_text("plain")
    assert [d["text"] for d in iter_documents(tmp_path / "plain")] == ["plain"]


@pytest.mark.parametrize("cut", [0.1, 0.5, 0.9])
def test_a_truncated_zst_archive_keeps_its_whole_lines_and_reports_the_cut(tmp_path: Path, cut: float) -> None:
    """Issue 16: a truncated .jsonl.zst lost records with nothing reported (zstd's stream reader stops
    quietly). Now the complete lines before the cut are read and the cut is one `truncated_archive`."""
    zstandard = pytest.importorskip("zstandard")
    rows = "".join(json.dumps({"text": f"record {i} " + "w" * (i % 13)}) + "\n" for i in range(20_000))
    whole = zstandard.ZstdCompressor(level=3).compress(rows.encode())
    (tmp_path / "cut.jsonl.zst").write_bytes(whole[: int(len(whole) * cut)])
    (tmp_path / "empty.jsonl.zst").write_bytes(b"")  # no frame at all: no records, nothing lost
    docs = read(tmp_path)
    kept = [d for d in docs if not d.metadata.get("read_error")]
    reasons = [d.metadata["read_error"] for d in docs if d.metadata.get("read_error")]
    assert reasons.count("truncated_archive") == 1 and set(reasons) <= {"truncated_archive", "malformed_json"}
    assert [d.text for d in kept] == [json.loads(r)["text"] for r in rows.splitlines()[: len(kept)]]
    assert 0 < len(kept) < 20_000 or cut == 0.1
