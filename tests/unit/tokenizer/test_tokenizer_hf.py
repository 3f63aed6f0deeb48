"""GGUF / tokenizer.json tokenizers vs transformers, `load_tokenizer` dispatch, stats and the CLI."""

from __future__ import annotations

import json
import shutil

import pytest
from unit.tokenizer.tok_texts import MULTILINGUAL, golden_strings

from herd.cli.main import main
from herd.data.documents import iter_documents
from herd.tokenizer import Document, HFTokenizer, Tokenizer, TokenizerLike, compression_stats, load_tokenizer


def test_gguf_ids_equal_transformers(smollm2, hf_reference):
    texts = [t for t in golden_strings() if len(t) <= 100_000]
    assert len(texts) >= 200
    for text in texts:
        expected = hf_reference(text, add_special_tokens=False)["input_ids"]
        assert smollm2.encode(text, allowed_special="all") == expected, text[:60]
        if len(text) < 5_000:
            assert smollm2.decode(expected) == hf_reference.decode(expected)


def test_gguf_special_tokens(smollm2):
    assert isinstance(smollm2, TokenizerLike) and isinstance(smollm2, HFTokenizer)
    assert smollm2.vocab_size == 49152
    assert (smollm2.bos_id, smollm2.eos_id) == (1, 2)  # <|im_start|>, <|im_end|>
    assert smollm2.stop_ids == {0, 2}  # <|endoftext|> too
    assert smollm2.special_ids["<|im_end|>"] == 2 and len(smollm2.special_ids) == 17
    text = "<|im_start|>user"
    assert smollm2.encode(text)[0] != 1  # ordinary text by default
    assert smollm2.encode(text, allowed_special="all")[0] == 1
    assert smollm2.encode(text, bos=True, eos=True) == [1, *smollm2.encode(text), 2]
    assert smollm2.encode("a<|im_end|>b<|im_start|>", allowed_special={"<|im_end|>"}) == [
        *smollm2.encode("a"), 2, *smollm2.encode("b<|im_start|>"),
    ]  # fmt: skip


def test_folder_round_trip(smollm2, tmp_path):
    folder = smollm2.save(tmp_path / "smol")
    again = load_tokenizer(folder)
    assert isinstance(again, HFTokenizer) and again.chat_template == smollm2.chat_template
    assert (again.bos_id, again.eos_id, again.stop_ids) == (smollm2.bos_id, smollm2.eos_id, smollm2.stop_ids)
    for text in MULTILINGUAL.values():
        assert again.encode(text) == smollm2.encode(text)
    assert isinstance(load_tokenizer(folder / "tokenizer.json"), HFTokenizer)


def test_load_tokenizer_dispatch(llama3, tmp_path, smollm2_gguf):
    assert load_tokenizer("llama3") is llama3 and isinstance(llama3, TokenizerLike)
    path = llama3.save(tmp_path / "meta" / "tokenizer.model")
    assert isinstance(load_tokenizer(path), Tokenizer)
    assert load_tokenizer(path.parent).encode("hello world") == llama3.encode("hello world")
    assert isinstance(load_tokenizer(smollm2_gguf), HFTokenizer)
    # an HF folder whose tokenizer.model is SentencePiece (binary) loads through tokenizer.json
    mixed = tmp_path / "mixed"
    mixed.mkdir()
    (mixed / "tokenizer.model").write_bytes(b"\n\x0f\x00\xffsentencepiece")
    shutil.copy(load_tokenizer(smollm2_gguf).save(tmp_path / "s") / "tokenizer.json", mixed)
    assert isinstance(load_tokenizer(mixed), HFTokenizer)
    with pytest.raises(FileNotFoundError, match="no tokenizer"):
        load_tokenizer(tmp_path / "nope")
    with pytest.raises(FileNotFoundError, match=r"no tokenizer\.model or tokenizer\.json"):
        load_tokenizer(tmp_path / "meta" / "..")


def test_corrupt_gguf(tmp_path):
    bad = tmp_path / "bad.gguf"
    bad.write_bytes(b"GGUF\x03\x00\x00\x00" + b"\x00" * 8 + b"\xff" * 8)
    with pytest.raises(ValueError, match="not a readable GGUF") as info:
        load_tokenizer(bad)
    assert "\n" not in str(info.value)


def test_compression_stats(llama3, tmp_path):
    docs = [Document(text, "handwritten", lang) for lang, text in MULTILINGUAL.items()]
    docs += [Document(MULTILINGUAL["en"] * 3, "other", "en")]
    rows = compression_stats(llama3, docs)
    assert rows[-1].source == "all" and rows[-1].docs == len(docs)
    assert sum(r.tokens for r in rows[:-1]) == rows[-1].tokens
    en = next(r for r in rows if (r.source, r.language) == ("other", "en"))
    assert en.chars == len(MULTILINGUAL["en"]) * 3 and en.tokens == len(llama3.encode(MULTILINGUAL["en"] * 3))
    assert 3.0 < en.chars_per_token < 6.0 and en.bytes_per_token == en.chars_per_token  # ASCII
    ja = next(r for r in rows if r.language == "ja")
    assert ja.bytes_per_token > ja.chars_per_token


def test_cli_stats_encode_decode(tmp_path, capsys):
    (tmp_path / "a.jsonl").write_text(
        "\n".join(json.dumps({"text": t, "language": k, "source": "web"}) for k, t in MULTILINGUAL.items())
    )
    (tmp_path / "b.txt").write_text(MULTILINGUAL["en"])
    docs = list(iter_documents([tmp_path]))
    assert len(docs) == len(MULTILINGUAL) + 1 and docs[-1]["source"] == tmp_path.name  # a file's folder
    out = tmp_path / "stats.json"
    assert main(["tokenizer", "stats", str(tmp_path), "-t", "llama3", "--json", str(out)]) == 0
    table = capsys.readouterr().out
    assert "llama3 c/t" in table and "web" in table
    rows = json.loads(out.read_text())["llama3"]
    assert rows[-1]["docs"] == len(docs)

    assert main(["tokenizer", "encode", "The Llama 3 Herd of Models", "--bos"]) == 0
    assert capsys.readouterr().out.split() == [str(i) for i in (128000, 791, 445, 81101, 220, 18, 6385, 67, 315, 27972)]
    assert main(["tokenizer", "decode", "791", "445", "81101"]) == 0
    assert capsys.readouterr().out == "The Llama\n"
    assert main(["tokenizer", "decode", "128256"]) == 2
    assert "outside 0..128255" in capsys.readouterr().err
    assert main(["tokenizer", "stats", str(tmp_path / "missing")]) == 2
    assert main(["tokenizer", "train"]) == 2  # no inputs: one-line error
    assert "no inputs" in capsys.readouterr().err
