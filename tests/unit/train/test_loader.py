"""Shards and the mixing loader: self-describing files, exact resume, mix weights, rank sharding."""

import itertools

import numpy as np
import pytest
import torch

from herd.data.loader import IGNORE_INDEX, MixSchedule, MixStage, TokenLoader, split_sources
from herd.data.shards import TokenShard, write_shard


def test_shard_round_trip_and_header_checks(tmp_path) -> None:
    docs = [[1, 2, 3], [], [70_000, 5]]
    write_shard(tmp_path / "a.bin", docs, vocab_size=128_256)
    s = TokenShard(tmp_path / "a.bin")
    assert [s.doc(i).tolist() for i in range(len(s))] == docs and s.tokens.dtype == np.uint32
    write_shard(tmp_path / "b.bin", [[1, 2]], vocab_size=512)
    assert TokenShard(tmp_path / "b.bin").tokens.dtype == np.uint16
    raw = (tmp_path / "a.bin").read_bytes()
    (tmp_path / "trunc.bin").write_bytes(raw[:-5])
    with pytest.raises(ValueError, match=r"trunc.bin: size .* header promises"):
        TokenShard(tmp_path / "trunc.bin")
    (tmp_path / "magic.bin").write_bytes(b"NOTMAGIC" + raw[8:])
    with pytest.raises(ValueError, match=r"magic.bin: not a herd token shard"):
        TokenShard(tmp_path / "magic.bin")
    with pytest.raises(ValueError, match="outside"):
        write_shard(tmp_path / "c.bin", [[600]], vocab_size=512)


def test_packing_labels_and_document_ids(tmp_path) -> None:
    docs = [[10, 11, 12], [20, 21], [30, 31, 32, 33]]
    write_shard(tmp_path / "a.bin", docs, vocab_size=100)
    loader = TokenLoader({"a": [tmp_path / "a.bin"]}, MixSchedule.constant({"a": 1}), seed=0)
    b = loader.next_batch(2, 8)
    for row in range(2):
        toks, labels, ids = b.tokens[row].tolist(), b.labels[row].tolist(), b.doc_ids[row].tolist()
        for t in range(7):
            want = toks[t + 1] if ids[t + 1] == ids[t] else IGNORE_INDEX
            assert labels[t] == want  # next token of the same document, else ignored
        # Row-local document ids count up from 0, one per (piece of a) document.
        assert ids[0] == 0 and all(b - a in (0, 1) for a, b in itertools.pairwise(ids))
    # Consecutive tokens within a document always come from one of the real documents.
    pairs = {(d[i], d[i + 1]) for d in docs for i in range(len(d) - 1)}
    for row in range(2):
        toks, labels = b.tokens[row].tolist(), b.labels[row].tolist()
        assert all((x, y) in pairs for x, y in zip(toks, labels) if y != IGNORE_INDEX)


def test_resume_is_exact(token_dir) -> None:
    sources = split_sources(token_dir)
    mix = MixSchedule((MixStage(0, {"code": 1, "prose": 1}), MixStage(20_000, {"code": 1, "prose": 9})))
    a = TokenLoader(sources, mix, seed=3)
    for _ in range(7):
        a.next_batch(4, 128)
    b = TokenLoader(sources, mix, seed=3)
    b.load_state_dict(a.state_dict())
    for _ in range(20):
        x, y = a.next_batch(4, 128), b.next_batch(4, 128)
        assert torch.equal(x.tokens, y.tokens) and torch.equal(x.labels, y.labels) and torch.equal(x.doc_ids, y.doc_ids)


def test_mix_weights_are_followed(token_dir) -> None:
    sources = split_sources(token_dir)
    loader = TokenLoader(sources, MixSchedule.constant({"code": 1, "prose": 3}), seed=0)
    picks = [loader._draw_source() for _ in range(4000)]
    # Binomial(4000, 0.75): σ ≈ 0.007, so ±0.03 is > 4σ.
    assert picks.count("prose") / len(picks) == pytest.approx(0.75, abs=0.03)
    loader.mix = MixSchedule((MixStage(0, {"code": 1}), MixStage(10, {"prose": 1})))
    loader.tokens_seen = 10
    assert {loader._draw_source() for _ in range(50)} == {"prose"}


def test_ranks_see_disjoint_documents(token_dir) -> None:
    sources = split_sources(token_dir)
    seen = []
    for rank in range(2):
        loader = TokenLoader(sources, MixSchedule.constant({"prose": 1}), seed=0, rank=rank, world=2)
        src = loader.sources["prose"]
        seen.append({src.next_doc() for _ in range(src.n_docs // 2)})
    assert not seen[0] & seen[1]


def test_resume_refuses_another_rank(token_dir) -> None:
    sources = split_sources(token_dir)
    state = TokenLoader(sources, MixSchedule.constant({"code": 1}), rank=0, world=2).state_dict()
    with pytest.raises(ValueError, match="rank 0/2"):
        TokenLoader(sources, MixSchedule.constant({"code": 1}), rank=1, world=2).load_state_dict(state)


def test_chunked_documents_are_shuffled_pieces_and_resume_exactly(tmp_path, token_dir) -> None:
    docs = [list(range(100, 130)), list(range(200, 205))]  # 30 tokens → pieces of 8, 8, 8, 6; then 5
    write_shard(tmp_path / "a.bin", docs, vocab_size=300)
    loader = TokenLoader({"a": [tmp_path / "a.bin"]}, MixSchedule.constant({"a": 1}), seed=0, chunk_tokens=8)
    b = loader.next_batch(1, 38)  # one epoch: 30 + 5 tokens, then the next epoch's first piece
    toks, ids = b.tokens[0].tolist(), b.doc_ids[0].tolist()
    runs = [list(g) for _, g in itertools.groupby(zip(ids, toks), key=lambda x: x[0])]
    pieces = [[t for _, t in r] for r in runs]
    # Every piece is a contiguous slice of one document of at most 8 tokens, and the first epoch's five
    # pieces cover both documents exactly once, in an order that is not the documents' own.
    assert all(len(p) <= 8 and any(p == d[i : i + len(p)] for d in docs for i in range(len(d))) for p in pieces)
    first_epoch = sorted(t for p in pieces[:5] for t in p)
    assert first_epoch == sorted(docs[0] + docs[1]) and [p[0] for p in pieces[:5]] != [100, 108, 116, 124, 200]
    # Resume mid-piece with chunking on.
    sources = split_sources(token_dir)
    a = TokenLoader(sources, MixSchedule.constant({"code": 1, "prose": 1}), seed=1, chunk_tokens=50)
    for _ in range(3):
        a.next_batch(2, 37)
    c = TokenLoader(sources, MixSchedule.constant({"code": 1, "prose": 1}), seed=1, chunk_tokens=50)
    c.load_state_dict(a.state_dict())
    for _ in range(5):
        x, y = a.next_batch(2, 37), c.next_batch(2, 37)
        assert torch.equal(x.tokens, y.tokens) and torch.equal(x.doc_ids, y.doc_ids)
