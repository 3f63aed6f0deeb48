"""Memorization at 50-grams: planted memorized continuations are found, novel ones are not."""

from __future__ import annotations

import dataclasses
import itertools

import numpy as np
import pytest

from herd.core.manifest import Manifest
from herd.data.shards import SUFFIX, write_shard
from herd.safety.memorization import MemorizationConfig, run_memorization

VOCAB = 1000


@pytest.fixture
def shards(tmp_path):
    rng = np.random.default_rng(0)
    docs = [rng.integers(0, VOCAB, size=int(rng.integers(90, 200))).tolist() for _ in range(40)]
    docs.append(list(range(30)))  # too short for a prefix + continuation: never sampled
    (tmp_path / "shards" / "web" / "train").mkdir(parents=True)
    (tmp_path / "shards" / "web" / "val").mkdir()
    write_shard(tmp_path / "shards" / "web" / "train" / f"a-00000{SUFFIX}", docs, VOCAB)
    # A held-out document: never indexed, so reciting it is not memorizing training data.
    write_shard(tmp_path / "shards" / "web" / "val" / f"a-00000{SUFFIX}", [list(range(500, 700))], VOCAB)
    return tmp_path / "shards", docs


def test_planted_memorized_and_novel_continuations(tmp_path, shards) -> None:
    folder, docs = shards
    rng = np.random.default_rng(1)

    def recite(prefixes):  # memorized: the training document's own continuation
        out = []
        for p in prefixes:
            doc = next(d for d in docs if any(d[i : i + len(p)] == p for i in range(len(d) - len(p) + 1)))
            i = next(i for i in range(len(doc)) if doc[i : i + len(p)] == p)
            out.append(doc[i + len(p) : i + len(p) + 50])
        return out

    def novel(prefixes):  # random tokens: a 50-gram of them is in the corpus with probability ~0
        return [rng.integers(0, VOCAB, 50).tolist() for _ in prefixes]

    def half(prefixes):  # 49 recited tokens then one wrong: no full 50-gram matches, so not included
        return [[*r[:49], (r[49] + 1) % VOCAB] for r in recite(prefixes)]

    cfg = MemorizationConfig(shards=str(folder), out=str(tmp_path / "m"), samples=20, prefix_len=16)
    m = run_memorization(cfg, recite)
    assert m["n"] == 50 and m["inclusion"]["rate"] == 1.0 and m["exact"]["rate"] == 1.0 and m["inclusion"]["n"] == 20
    assert m["index"]["tokens"] == sum(map(len, docs))
    for name, gen in (("novel", novel), ("half", half)):
        other = dataclasses.replace(cfg, out=str(tmp_path / name))
        assert run_memorization(other, gen)["inclusion"]["rate"] == 0.0, name
    val = dataclasses.replace(cfg, out=str(tmp_path / "val"))
    assert run_memorization(val, lambda ps: [list(range(600, 650))] * len(ps))["inclusion"]["rate"] == 0.0
    assert Manifest.find(tmp_path / "m").counts["inclusion"]["rate"] == 1.0  # what the recipe report reads


def test_mixed_rate_and_ci(tmp_path, shards) -> None:
    folder, docs = shards

    def mixed(prefixes):  # every other continuation recited from the corpus (a window of doc 0)
        return [docs[0][:50] if i % 2 == 0 else [7] * 50 for i in range(len(prefixes))]

    cfg = MemorizationConfig(shards=str(folder), out=str(tmp_path / "m"), samples=20, prefix_len=16)
    m = run_memorization(cfg, mixed)
    assert m["inclusion"]["rate"] == 0.5 and 0.2 < m["inclusion"]["ci95"] < 0.25  # 1.96·sqrt(.25/20) = 0.219
    with pytest.raises(ValueError, match="cannot hold a 50-gram"):
        run_memorization(MemorizationConfig(shards=str(folder), new_tokens=20), mixed)


def test_several_windows_per_document(shards) -> None:
    """per_doc > 1: more windows than documents, each a verbatim, non-overlapping chunk of one document."""
    from herd.safety.memorization import sample_windows, training_shards

    folder, docs = shards
    long_docs = [d for d in docs if len(d) >= 66]
    one = sample_windows(training_shards(folder), 66, 1000, 0)
    many = sample_windows(training_shards(folder), 66, 1000, 0, per_doc=3)
    assert len(one) == len(long_docs) < len(many) <= 3 * len(long_docs)
    spans = []
    for w in many:
        (d, i) = next((j, i) for j, d in enumerate(docs) for i in range(len(d) - 65) if d[i : i + 66] == w)
        spans.append((d, i))
    for d in {d for d, _ in spans}:
        starts = sorted(i for j, i in spans if j == d)
        assert all(b - a >= 66 for a, b in itertools.pairwise(starts))  # no two windows of a document overlap


def test_control_prefixes_from_held_out_shards(tmp_path, shards) -> None:
    """prefix_shards: windows come from the held-out shard (its continuation recited exactly), yet nothing is
    included, since the index holds the training shards only."""
    folder, _ = shards
    held = list(range(500, 700))

    def recite_held(prefixes):
        return [held[held.index(p[0]) + len(p) :][:50] for p in prefixes]

    cfg = MemorizationConfig(shards=str(folder), out=str(tmp_path / "c"), samples=5, prefix_len=16, per_doc=5,
                             prefix_shards=str(folder / "web" / "val"))  # fmt: skip
    m = run_memorization(cfg, recite_held)
    assert m["exact"] == {"rate": 1.0, "ci95": 0.0, "n": 3}  # 200 held-out tokens hold three 66-token windows
    assert m["inclusion"]["rate"] == 0.0 and m["prefix_shards"].endswith("val")
