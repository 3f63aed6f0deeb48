"""Ranks files: round trip, and one-line errors for every way a file can be wrong."""

from __future__ import annotations

import base64

import pytest

from herd.cli.main import main
from herd.tokenizer import Tokenizer, load_ranks, load_tokenizer, save_ranks


def _line(token: bytes, rank: int) -> str:
    return f"{base64.b64encode(token).decode()} {rank}"


def _bytes_lines() -> list[str]:
    return [_line(bytes([b]), b) for b in range(256)]


def _write(tmp_path, lines: list[str], name: str = "tok.model"):
    path = tmp_path / name
    path.write_text("\n".join(lines) + "\n")
    return path


def _one_line_error(path, match: str) -> str:
    with pytest.raises(ValueError, match=match) as info:
        load_ranks(path)
    msg = str(info.value)
    assert "\n" not in msg and str(path) in msg
    return msg


def test_round_trip(tmp_path):
    ranks = {bytes([b]): b for b in range(256)} | {b"ab": 256, b"abc": 257}
    path = save_ranks(ranks, tmp_path / "sub" / "tokenizer.model")
    assert load_ranks(path) == ranks
    tok = load_tokenizer(path)
    assert isinstance(tok, Tokenizer) and tok.vocab_size == 258 + 256 and tok.bos_id == 258
    assert tok.encode("abcab") == [257, 256]


def test_meta_file_round_trips(tmp_path, llama3):
    path = llama3.save(tmp_path / "tokenizer.model")
    assert load_ranks(path) == llama3.ranks
    from herd.tokenizer import llama3_path

    assert path.read_bytes().split() == llama3_path().read_bytes().split()


@pytest.mark.parametrize(
    ("bad", "match"),
    [
        ("not base64!! 256", "corrupt ranks line"),
        ("YWI= notanumber", "corrupt ranks line"),
        ("YWI=", "corrupt ranks line"),
        ("YWI= 256 extra", "corrupt ranks line"),
        ("YWI= -3", "corrupt ranks line"),
    ],
)
def test_corrupt_line(tmp_path, bad, match):
    msg = _one_line_error(_write(tmp_path, [*_bytes_lines(), bad]), match)
    assert ":257:" in msg  # names the line


def test_duplicate_rank(tmp_path):
    path = _write(tmp_path, [*_bytes_lines(), _line(b"ab", 256), _line(b"cd", 256)])
    _one_line_error(path, "duplicate rank 256")


def test_duplicate_token(tmp_path):
    path = _write(tmp_path, [*_bytes_lines(), _line(b"ab", 256), _line(b"ab", 257)])
    _one_line_error(path, "listed twice")


def test_fewer_than_256_byte_tokens(tmp_path):
    lines = [_line(bytes([b]), b) for b in range(200)] + [_line(b"ab", 200)]
    _one_line_error(_write(tmp_path, lines), "only 200 of the 256 single-byte tokens")


def test_gap_in_ranks(tmp_path):
    _one_line_error(_write(tmp_path, [*_bytes_lines(), _line(b"ab", 300)]), "rank 256 is missing")


def test_binary_and_empty_and_missing(tmp_path):
    binary = tmp_path / "sp.model"
    binary.write_bytes(b"\x0a\x80\xff\x00 sentencepiece")
    _one_line_error(binary, "not a tiktoken ranks file")
    _one_line_error(_write(tmp_path, [""], "empty.model"), "empty ranks file")
    with pytest.raises(FileNotFoundError, match="no tokenizer ranks file"):
        load_ranks(tmp_path / "missing.model")


def test_cli_reports_one_line(tmp_path, capsys):
    path = _write(tmp_path, [*_bytes_lines(), _line(b"ab", 256), _line(b"cd", 256)])
    assert main(["tokenizer", "encode", "-t", str(path), "hello"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("herd tokenizer: error:") and "duplicate rank 256" in err and "\n" not in err
