"""Video QA: the data stage's clips (strips of frames, questions whose answers are in the frames), and the
video path (frames → encoder → perceiver resampler → video cross-attention) trains end to end."""

from __future__ import annotations

import random

import pytest
import torch
from vision_tiny import WordTok, tiny_model

from herd.vision.data import COLOURS, DIRECTIONS, NUMBER_WORDS, answer_set, load_split, render_video, run_data_stage
from herd.vision.video_qa import VideoQAConfig, build_video_model, load_clips, predict, qa_items, train_video

pytest.importorskip("PIL")


def test_clip_answers_are_in_its_frames():
    import numpy as np

    for i in range(20):
        row, strip = render_video(random.Random(i), 32, 8, i)
        qa = {q["question"].split()[1]: q["answer"] for q in row["qa"]}
        assert strip.size == (8 * 32, 32) and qa["way"] in DIRECTIONS
        frames = np.asarray(strip).reshape(32, 8, 32, 3).transpose(1, 0, 2, 3)
        colour_a = row["qa"][0]["question"].split()[4]

        def shown(colour: str, frames=frames) -> list[bool]:
            rgb = np.array(COLOURS[colour])
            return [bool((np.abs(f.astype(int) - rgb).sum(-1) == 0).sum() > 3) for f in frames]

        assert NUMBER_WORDS[sum(shown(colour_a))] == qa["how"]  # "In how many frames ..."
        firsts = {c: shown(c).index(True) for c in COLOURS if any(shown(c))}
        assert len(firsts) == 2 and min(firsts, key=firsts.get) == qa["colour"]  # "Which colour appeared first?"
        for q in row["qa"]:
            assert q["answer"] in answer_set(q["question"])


def test_data_stage_writes_video_splits(tmp_path):
    from herd.vision.data import VisionDataConfig

    cfg = VisionDataConfig(out_dir=str(tmp_path / "d"), n_scenes=10, n_digits=2, n_ocr=2, n_charts=1, n_videos=10)
    counts = run_data_stage(cfg).counts
    rows = load_split(tmp_path / "d", "video_train") + load_split(tmp_path / "d", "video_heldout")
    assert counts["video_train"] + counts["video_heldout"] == 10 == len(rows)
    assert counts["preferences"] == len(load_split(tmp_path / "d", "preferences")) > 0
    clips = load_clips(tmp_path / "d", rows, 32)
    assert next(iter(clips.values())).shape == (8, 3, 32, 32)


def test_video_model_trains_end_to_end(tmp_path):
    rng = random.Random(0)
    folder = tmp_path
    (folder / "videos").mkdir()
    rows = []
    for i in range(8):
        row, strip = render_video(rng, 32, 4, i)
        strip.save(folder / row["image"])
        rows.append(row)
    clips = load_clips(folder, rows, 32)
    base = tiny_model()
    video = build_video_model(base, 4, VideoQAConfig(n_latents=4))
    q = [(r["id"], "video", x["question"], x["answer"]) for r in rows for x in r["qa"]]
    blind_before = predict(video, WordTok(), clips, q, see=False)
    assert predict(video, WordTok(), clips, q) == blind_before  # gates at 0: the video changes nothing
    frozen = {n: p.clone() for n, p in base.named_parameters()}
    losses = train_video(video, WordTok(), clips, rows, VideoQAConfig(steps=30, lr=3e-3, batch_size=8, warmup=2))
    assert sum(losses[-5:]) / 5 < 0.6 * sum(losses[:3]) / 3
    assert all(torch.equal(p, frozen[n]) for n, p in base.named_parameters())  # the image model stays frozen
    assert len(qa_items(rows)) == 24
