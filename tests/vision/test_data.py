"""The image-text data stage: counts add up, duplicates and resampled captions land in dropped/ with a
reason, reruns skip, bad rows are named; and the recipe's pieces on a tiny slice."""

from __future__ import annotations

import json

import pytest

from herd.core.manifest import Manifest
from herd.vision.data import Pair, VisionDataConfig, load_split, ngram_resample, ngrams, phash_dedup, run_data_stage

pytest.importorskip("PIL")
pytest.importorskip("imagehash")


def small(tmp_path, **kw) -> VisionDataConfig:
    return VisionDataConfig(
        out_dir=str(tmp_path / "data"), n_scenes=40, n_digits=15, n_ocr=8, n_charts=3, n_videos=6, **kw
    )


def test_stage_writes_pairs_manifest_and_dropped(tmp_path):
    cfg = small(tmp_path)
    m = run_data_stage(cfg)
    c = m.counts
    assert c["in"] == 66 and c["in"] == c["kept"] + sum(c["dropped"].values())
    assert c["kept"] == c["train"] + c["heldout"]
    assert set(c["by_kind"]) == {"scene", "digit", "ocr", "chart"}
    folder = tmp_path / "data"
    rows = load_split(folder, "train") + load_split(folder, "heldout")
    assert len(rows) == c["kept"] and all((folder / r["image"]).is_file() for r in rows)
    dropped = [json.loads(line) for line in (folder / "dropped" / "dropped.jsonl").read_text().splitlines()]
    assert len(dropped) == sum(c["dropped"].values())
    assert all(d["reason"] == "ngram_resample" or d["reason"].startswith("duplicate_image:") for d in dropped)
    # Held-out images never appear in training (the split is by image, after de-duplication).
    assert not {r["image"] for r in load_split(folder, "train")} & {r["image"] for r in load_split(folder, "heldout")}
    assert Manifest.find(folder) is not None
    assert run_data_stage(cfg).wall_time_s == m.wall_time_s  # rerun: skipped, same manifest


def test_phash_drops_duplicates_and_names_the_kept_one():
    import numpy as np
    from PIL import Image

    rng = np.random.default_rng(0)
    a = Image.fromarray(rng.integers(0, 256, (64, 64, 3), dtype=np.uint8)).resize((8, 8)).resize((64, 64))
    near = a.copy()
    near.putpixel((3, 3), (0, 0, 0))  # not byte-identical; its pHash differs from a's by a few bits
    import imagehash

    assert 0 < imagehash.phash(a) - imagehash.phash(near) <= 4
    pairs = [Pair(i, "scene", "x", [], img) for i, img in (("a", a), ("copy", a.copy()), ("near", near),
                                                             ("turned", a.rotate(90)))]  # fmt: skip
    kept, dropped = phash_dedup(pairs, 0)
    assert [p.id for p in kept] == ["a", "near", "turned"] and [(p.id, r) for p, r in dropped] == [
        ("copy", "duplicate_image:a")
    ]
    kept, dropped = phash_dedup(pairs, 4)
    assert [p.id for p in kept] == ["a", "turned"] and [p.id for p, _ in dropped] == ["copy", "near"]


def test_ngram_resampling_keeps_rare_captions_and_thins_frequent_ones():
    pairs = [Pair(f"h{i}", "scene", "a red circle", [], None) for i in range(400)]
    pairs += [Pair(f"r{i}", "scene", f"a rare caption number{i}", [], None) for i in range(20)]
    kept, dropped = ngram_resample(pairs, n=2, t=4.0, seed=0)
    rare = [p for p in kept if p.id.startswith("r")]
    head = [p for p in kept if p.id.startswith("h")]
    assert len(rare) == 20  # "caption number{i}" is seen once: √(T/f) ≥ 1
    # Each head caption has 2 bigrams seen 400 times: kept with 1 − (1 − √(4/400))² = 0.19.
    assert 0.12 < len(head) / 400 < 0.26
    assert len(kept) + len(dropped) == 420
    assert ngrams("A red circle.", 2) == {"a red", "red circle"}


def test_bad_row_names_file_and_line(tmp_path):
    (tmp_path / "pairs.jsonl").write_text('{"id": "x", "image": "i.png", "caption": "c", "qa": []}\n{"id": 1}\n')
    with pytest.raises(ValueError, match=r"pairs.jsonl:2: missing field 'image'"):
        load_split(tmp_path, "train")
    with pytest.raises(FileNotFoundError, match="run the vision data stage first"):
        load_split(tmp_path, "heldout")


def test_answer_sets_cover_every_generated_question(tmp_path):
    from herd.vision.train import answer_set

    run_data_stage(small(tmp_path, seed=3))
    for r in load_split(tmp_path / "data", "train"):
        for q in r["qa"]:
            assert q["answer"] in answer_set(q["question"])
    with pytest.raises(ValueError, match="no answer set"):
        answer_set("Why?")


def test_paired_gain_interval():
    from herd.vision.train import paired_gain

    # d = a − b = [1, 0, 1, 0]: mean 0.5, sample sd √(1/3), half-width 1.96·√(1/3)/√4.
    g = paired_gain([1, 1, 1, 0], [0, 1, 0, 0])
    assert g["gain"] == 0.5 and g["ci95"] == pytest.approx(1.96 * (1 / 3) ** 0.5 / 2)
    assert paired_gain([1, 0], [1, 0]) == {"gain": 0.0, "ci95": 0.0, "n": 2}
