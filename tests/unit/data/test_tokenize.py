"""`herd tokenize` and the one document reader: a curation stage folder gives its kept documents only."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from herd.cli.main import main
from herd.core.stage import run_stage
from herd.data.documents import document_files, iter_documents, iter_texts, stage_parts, to_record
from herd.data.shards import TokenShard
from herd.data.tokenize import TokenizeConfig, TokenizeStage
from herd.data.tokenizer_stage import TokenizerStage, TokenizerTrainConfig
from herd.tokenizer import llama3_path, load_tokenizer

KEPT = {
    "general/en": ["The annual message to Congress.", "A second kept essay on rivers.", "Third: the budget."],
    "general/de": ["Ein Dokument auf Deutsch."],
    "code/code": ["def f(x):\n    return x + 1\n", "print('kept code')\n"],
}


def _shard(path: Path, texts: list[str], **extra: object) -> None:
    zstandard = pytest.importorskip("zstandard")
    path.parent.mkdir(parents=True, exist_ok=True)
    rows = [{**to_record(f"{path.parent.name}-{i}", t, {"source": "web", "language": "en"}), **extra}
            for i, t in enumerate(texts)]  # fmt: skip
    path.write_bytes(zstandard.compress("".join(json.dumps(r) + "\n" for r in rows).encode()))


def curation_folder(root: Path) -> Path:
    """The last curation stage's layout: 6 kept documents, and beside them files that are not documents."""
    for part, texts in KEPT.items():
        _shard(root / "kept" / part / "00000.jsonl.zst", texts)
    _shard(root / "dropped" / "quality" / "00000.jsonl.zst", ["DROPPED spam spam spam"], reason="quality")
    _shard(root / "anneal" / "general" / "00000.jsonl.zst", ["ANNEAL copy of a kept essay"])
    (root / "kept" / "general" / ".00001.jsonl.zst.tmp").write_text("HIDDEN half-written shard")
    (root / "mix_weights.json").write_text(json.dumps({"buckets": {"general": {"weight": 0.5}}}))
    (root / "notes.txt").write_text("NOTES beside the stage, not a document")
    (root / "MANIFEST.json").write_text(json.dumps({"stage": "mix", "counts": {"kept": 6}}))
    return root


def kept_texts() -> list[str]:
    return [t for texts in KEPT.values() for t in texts]


def decoded_docs(out: Path, tok) -> list[str]:
    # Each document is stored as <|begin_of_text|> ids <|end_of_text|> (bos and eos are on by default).
    return [tok.decode(doc[1:-1].tolist()) for path in sorted(out.rglob("*.bin")) for doc in TokenShard(path).docs()]


def test_tokenize_of_a_curation_stage_folder_reads_exactly_its_kept_documents(tmp_path: Path, capsys) -> None:
    stage = curation_folder(tmp_path / "07_mix")
    out = tmp_path / "tokens"
    assert main(["tokenize", "/dev/null", f"sources.web=['{stage}']", f"out='{out}'", "workers=1"]) == 0
    assert capsys.readouterr().out.startswith("6 documents")
    counts = json.loads((out / "MANIFEST.json").read_text())["counts"]
    assert counts["in"] == counts["kept"] == 6 and counts["sources"]["web"]["docs"] == 6
    docs = decoded_docs(out, load_tokenizer("llama3"))
    assert sorted(docs) == sorted(kept_texts())
    shards = b"".join(p.read_bytes() for p in out.rglob("*.bin")).decode("latin-1")
    text = " ".join(docs) + shards
    assert not any(word in text for word in ("DROPPED", "ANNEAL", "HIDDEN", "NOTES", "buckets", '"stage"'))
    # The tokenizer the ids come from travels with them: Meta's file, byte for byte.
    assert (out / "tokenizer.model").read_bytes() == llama3_path().read_bytes()


def test_reader_rules(tmp_path: Path) -> None:
    stage = curation_folder(tmp_path / "07_mix")
    kept = [f.relative_to(stage).as_posix() for f in document_files(stage)]
    assert kept == ["kept/code/code/00000.jsonl.zst", "kept/general/de/00000.jsonl.zst",
                    "kept/general/en/00000.jsonl.zst"]  # fmt: skip
    assert stage_parts(stage) == ["code", "general"]
    assert list(iter_texts(stage, part="code")) == KEPT["code/code"]
    assert [d["language"] for d in iter_documents(stage, part="general/de")] == ["en"]  # the record's own
    with pytest.raises(FileNotFoundError, match="kept/math"):
        list(iter_documents(stage, part="math"))
    # A plain folder: raw text, JSONL and Parquet under it, never MANIFEST.json, .json, dropped/ or hidden files.
    plain = tmp_path / "plain"
    (plain / "dropped").mkdir(parents=True)
    (plain / "a.txt").write_text("plain a")
    (plain / "dropped" / "b.txt").write_text("dropped b")
    (plain / ".hidden.txt").write_text("hidden")
    (plain / "MANIFEST.json").write_text("{}")
    (plain / "c.json").write_text('{"text": "json is not a document format here"}')
    (plain / "d.jsonl").write_text(json.dumps({"body": "row d", "lang": "fr"}) + "\n")
    assert [f.name for f in document_files(plain)] == ["a.txt", "d.jsonl"]
    docs = list(iter_documents(plain, text_key="body", language="de"))
    assert [(d["text"], d["source"], d["language"]) for d in docs] == [("plain a", "plain", "de"), ("row d", "", "fr")]
    with pytest.raises(ValueError, match=r"d\.jsonl:1: field 'text'"):
        list(iter_documents(plain))
    # A named file is read whatever its suffix; max_chars stops after the document that reaches it.
    assert list(iter_texts([plain / "c.json", plain / "a.txt"], max_chars=5)) == [(plain / "c.json").read_text()]
    # A folder that holds a stage folder: that stage's kept documents, not its anneal/ copies or notes.
    found = [f.relative_to(tmp_path).as_posix() for f in document_files(tmp_path)]
    assert found == [*(f"07_mix/{k}" for k in kept), "plain/a.txt", "plain/d.jsonl"]


def test_stages_skip_rerun_and_carry_their_tokenizer(tmp_path: Path) -> None:
    stage = curation_folder(tmp_path / "07_mix")
    for i in range(40):  # enough text for a 540-id tokenizer (256 bytes + merges + 256 specials)
        _shard(
            stage / "kept" / "general" / "en" / f"{i + 1:05d}.jsonl.zst",
            [f"Document {i} on the rivers of region {i * 37} and the budget of {1900 + i}. " * 20],
        )
    tcfg = TokenizerTrainConfig(inputs=[str(stage)], out=str(tmp_path / "tok"), vocab_size=540, min_frequency=1)
    m = run_stage(TokenizerStage(tcfg))
    assert m.stage == "tokenizer" and m.counts["docs"] == 6 + 40 and m.counts["vocab_size"] == 540
    cfg = TokenizeConfig(tokenizer=str(tmp_path / "tok"), sources={"web": [str(stage)]}, out=str(tmp_path / "t"))
    m = run_stage(TokenizeStage(cfg))
    assert m.counts["kept"] == 46 and "tokenizer.model" in m.outputs
    assert (tmp_path / "t" / "tokenizer.model").read_bytes() == (tmp_path / "tok" / "tokenizer.model").read_bytes()
    assert any(r["path"] == str(tmp_path / "tok") and r["manifest"] for r in m.inputs)  # lineage of the tokenizer
    assert run_stage(TokenizeStage(cfg)).created == m.created  # same inputs and config: skipped
    run_stage(TokenizerStage(TokenizerTrainConfig(**{**vars(tcfg), "vocab_size": 550})))
    m2 = run_stage(TokenizeStage(cfg))  # the tokenizer changed under the same path: tokenize runs again
    assert m2.key != m.key and load_tokenizer(tmp_path / "t").vocab_size == 550
    # An HF tokenizer.json folder: saved as tokenizer.json beside the shards, loadable from the folder.
    hf = tmp_path / "hf"
    hf.mkdir()
    load_tokenizer(tmp_path / "tok").to_hf().save(str(hf / "tokenizer.json"))
    run_stage(TokenizeStage(TokenizeConfig(tokenizer=str(hf), sources={"web": [str(stage)]}, out=str(tmp_path / "h"))))
    assert (tmp_path / "h" / "tokenizer.json").is_file() and not (tmp_path / "h" / "tokenizer.model").exists()
    text = KEPT["code/code"][0]
    assert load_tokenizer(tmp_path / "h").encode(text) == load_tokenizer(tmp_path / "tok").encode(text)


def test_stage_configs_are_checked_when_built() -> None:
    with pytest.raises(ValueError, match="no sources"):
        TokenizeStage(TokenizeConfig())
    with pytest.raises(ValueError, match="no inputs"):
        TokenizerStage(TokenizerTrainConfig())
    with pytest.raises(ValueError, match="extra_merges > 0"):
        TokenizerStage(TokenizerTrainConfig(inputs=["x"], base="llama3"))
