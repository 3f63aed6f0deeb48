"""Data an experiment needs besides the recipe's, as stages (files → files + MANIFEST.json + dropped/).

`unfiltered`: the documents before any filtering (curation's extract stage) for the quality-filtering
ablation [P §3.1.1], less every document that the clean held-out set holds — the curated documents that
`herd tokenize` puts in `val/` (by text hash, the same rule `herd.data.tokenize.is_val` applies) — so
neither arm trains on what both are scored on. A curated document keeps its id through curation, so the
match is by id; dropped rows go to `dropped/clean_held_out.jsonl` with that reason.

    python -m herd.experiment.prepare unfiltered RAW_STAGE CLEAN_STAGE OUT [VAL_FRACTION]
    python -m herd.experiment.prepare bundle OUT       # the post-training bundle, once, before parallel runs
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

from herd.core.manifest import Manifest
from herd.core.stage import run_fn
from herd.data.documents import iter_documents
from herd.data.tokenize import is_val


def unfiltered(raw: Path, clean: Path, out: Path, val_fraction: float) -> Manifest:
    """`raw`'s documents minus `clean`'s held-out ones → `out/documents.jsonl`, with a manifest."""
    settings = {"prepare": "unfiltered", "val_fraction": val_fraction}
    return run_fn("prepare-unfiltered", [raw, clean], settings, out, lambda tmp: _write(raw, clean, tmp, val_fraction))


def _write(raw: Path, clean: Path, tmp: Path, val_fraction: float) -> dict[str, Any]:
    held = {d["id"] for d in iter_documents(clean) if is_val(d["text"], val_fraction)}
    (tmp / "dropped").mkdir(parents=True)
    counts = {"in": 0, "kept": 0, "dropped": {"clean_held_out": 0}, "clean_held_out_docs": len(held)}
    with open(tmp / "documents.jsonl", "w") as kept, open(tmp / "dropped" / "clean_held_out.jsonl", "w") as dropped:
        for doc in iter_documents(raw):
            counts["in"] += 1
            row = {"id": doc["id"], "text": doc["text"], "source": doc.get("source", ""), "language": doc["language"]}
            if doc["id"] in held:
                counts["dropped"]["clean_held_out"] += 1
                dropped.write(json.dumps({**row, "reason": "clean_held_out"}) + "\n")
            else:
                counts["kept"] += 1
                kept.write(json.dumps(row) + "\n")
    return counts


def posttrain_bundle(out: Path) -> Manifest:
    """The post-training data bundle, built once before parallel runs share it (two runs building it at
    once would race on its folder)."""
    from herd.posttrain.bundle import BundleConfig, build_bundle

    return build_bundle(BundleConfig(out=str(out)))


def main(argv: list[str]) -> int:
    if len(argv) == 2 and argv[0] == "bundle":
        print(posttrain_bundle(Path(argv[1])).counts)
        return 0
    if len(argv) not in (4, 5) or argv[0] != "unfiltered":
        print("usage: python -m herd.experiment.prepare unfiltered RAW_STAGE CLEAN_STAGE OUT [VAL_FRACTION]")
        print("       python -m herd.experiment.prepare bundle OUT")
        return 2
    m = unfiltered(Path(argv[1]), Path(argv[2]), Path(argv[3]), float(argv[4]) if len(argv) == 5 else 0.02)
    print(m.counts)
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
