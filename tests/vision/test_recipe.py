"""The bundled vision recipe end to end on a sliver (a step or two per phase: CLIP, pre-training,
annealing, SFT, DPO, video): phases run in order, the zero-gate model answers exactly as the text-only
model before training, the report, its tables and the model folder land."""

from __future__ import annotations

import json

import pytest

from herd.vision.clip import ClipConfig
from herd.vision.data import VisionDataConfig
from herd.vision.dpo import VisionDPOConfig
from herd.vision.train import StageSteps, VisionTrainConfig, format_report, run_recipe, seeds_summary
from herd.vision.video_qa import VideoQAConfig


@pytest.mark.slow
def test_recipe_sliver(tmp_path, smollm2_gguf):
    cfg = VisionTrainConfig(
        data=VisionDataConfig(out_dir=str(tmp_path / "data"), n_scenes=20, n_digits=6, n_ocr=4, n_charts=2, n_videos=8),
        out_dir=str(tmp_path / "out"),
        batch_size=2,
        pretrain=StageSteps(1, 1e-3, 1),
        anneal=StageSteps(1, 3e-4, 1),
        sft=StageSteps(2, 3e-4, 1),
        eval_limit=12,
        clip=ClipConfig(steps=2, batch_size=4, warmup=1),
        dpo=VisionDPOConfig(steps=1, batch_size=2, warmup=1),
        video=VideoQAConfig(steps=1, batch_size=2, warmup=1, eval_limit=6),
    )
    report = run_recipe(cfg)  # raises if the zero-gate model disagrees with the text-only one
    assert [len(v) for v in report["losses"].values()] == [1, 1, 2]
    assert set(report["eval"]) == {"text_only", "majority_prior", "vision"}
    assert report["eval"]["vision"]["all"]["n"] == 12
    assert json.loads((tmp_path / "out" / "report.json").read_text())["questions"] == 12
    assert (tmp_path / "out" / "model" / "adapter.safetensors").stat().st_size > 0
    assert len(report["clip"]["losses"]) == 2 and report["clip"]["retrieval"]["n"] > 0
    assert len(report["dpo"]["loss"]) == 1 and report["eval_dpo"]["all"]["n"] == 12
    assert report["video"]["questions"] <= 6 and set(report["video"]["eval"]) == {
        "text_only",
        "majority_prior",
        "video",
    }
    text = format_report(report)
    assert "gain_vs_text_only" in text and "gain_dpo_vs_sft" in text and "recall@1" in text
    heads = [t["head"][0] for t in report["report"]["tables"]]
    assert heads == ["model", "paired gain", "CLIP encoder", "video model"]


def test_seeds_summary_pools_paired_differences():
    # Seed A: +1 on 2 of 4 questions; seed B: +1 on one, -1 on one. Pooled differences: 1,1,0,0,1,-1,0,0.
    a = {"hits": {"vision": [1, 1, 0, 1], "text_only": [0, 0, 0, 1]}}
    b = {"hits": {"vision": [1, 0, 0, 0], "text_only": [0, 1, 0, 0]}}
    s = seeds_summary([a, b])
    assert [g["gain"] for g in s["per_seed"]] == [0.5, 0.0]
    assert s["mean"]["gain"] == 0.25 and s["mean"]["n"] == 8
    assert (s["min"], s["max"]) == (0.0, 0.5)
    sd = (sum((d - 0.25) ** 2 for d in [1, 1, 0, 0, 1, -1, 0, 0]) / 7) ** 0.5
    assert abs(s["mean"]["ci95"] - 1.96 * sd / 8**0.5) < 1e-12
