"""The bundled vision recipe end to end on a sliver (one step per stage): stages run in order, the
zero-gate model answers exactly as the text-only model before training, the report and adapter land."""

from __future__ import annotations

import json

import pytest

from herd.vision.data import VisionDataConfig
from herd.vision.train import StageSteps, VisionTrainConfig, format_report, run_recipe


@pytest.mark.slow
def test_recipe_sliver(tmp_path, smollm2_gguf):
    cfg = VisionTrainConfig(
        data=VisionDataConfig(out_dir=str(tmp_path / "data"), n_scenes=20, n_digits=6, n_ocr=4, n_charts=2),
        out_dir=str(tmp_path / "out"),
        batch_size=2,
        pretrain=StageSteps(1, 1e-3, 1),
        anneal=StageSteps(1, 3e-4, 1),
        sft=StageSteps(2, 3e-4, 1),
        eval_limit=12,
    )
    report = run_recipe(cfg)  # raises if the zero-gate model disagrees with the text-only one
    assert [len(v) for v in report["losses"].values()] == [1, 1, 2]
    assert set(report["eval"]) == {"text_only", "majority_prior", "vision"}
    assert report["eval"]["vision"]["all"]["n"] == 12
    assert json.loads((tmp_path / "out" / "report.json").read_text())["questions"] == 12
    assert (tmp_path / "out" / "adapter.safetensors").stat().st_size > 0
    assert "gain_vs_text_only" in format_report(report)
