"""Data stages record the numbers the run report renders: tokenize its compression [P §3.2] (which decoding
its own shards gives back exactly), the mix stage its weights [P §3.1.2]."""

from __future__ import annotations

import json
from pathlib import Path

from herd.data.shards import TokenShard, list_shards
from herd.tokenizer import load_tokenizer


def test_compression_recorded_matches_decoding_the_shards(token_dir: Path) -> None:
    m = json.loads((token_dir / "MANIFEST.json").read_text())
    tok = load_tokenizer(m["config"]["tokenizer"])
    assert m["code_version"] == 3  # recording compression changed what the stage writes
    for source, recorded in m["counts"]["sources"].items():
        chars = nbytes = n = 0
        for shard in list_shards(token_dir / source):
            for doc in TokenShard(shard).docs():
                ids = [int(i) for i in doc if i < tok.n_ranks]  # BOS/EOS are not text
                text = tok.decode(ids)
                chars, nbytes, n = chars + len(text), nbytes + len(text.encode("utf-8", "replace")), n + len(ids)
        assert recorded["chars_per_token"] == round(chars / n, 3), source
        assert recorded["bytes_per_token"] == round(nbytes / n, 3), source
    overall = m["counts"]["compression"]
    assert 1.0 < overall["chars_per_token"] <= overall["bytes_per_token"]


def test_the_mix_stage_records_its_weights(tmp_path: Path) -> None:
    """A curation stage that writes mix_weights.json records it in its counts, for the run report."""
    from herd.data.curate_stage import funnel_counts

    weights = {"buckets": {"general": {"docs": 1, "tokens": 4, "weight": 1.0}}, "missing_buckets": ["code"]}
    output = tmp_path / "output"
    output.mkdir()
    (output / "mix_weights.json").write_text(json.dumps(weights))
    assert funnel_counts([], tmp_path / "logs", output, 1.0)["mix"] == weights
