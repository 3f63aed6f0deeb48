"""The `vision` stage of `herd recipe`: its place, its config wiring, and the report showing the tables the
stage records in its MANIFEST.json (no stage code needed to render them)."""

from __future__ import annotations

import json
from pathlib import Path

from herd.recipe.config import STAGES, load_recipe
from herd.recipe.report import write_report
from herd.vision.recipe import RecipeVisionSection, run_recipe_vision, vision_stage_config


def test_vision_runs_after_safety_and_before_the_report(tmp_path):
    assert STAGES.index("safety") < STAGES.index("vision") < STAGES.index("report")
    recipe = tmp_path / "r.toml"
    recipe.write_text('run_dir = "runs/x"\n[vision]\nenabled = true\nlm = "smollm2"\n')
    cfg = load_recipe(recipe)
    assert cfg.vision == RecipeVisionSection(enabled=True, lm="smollm2")
    vcfg = vision_stage_config(cfg.vision, tmp_path / "run")
    assert vcfg.out_dir == str(tmp_path / "run" / "vision") and vcfg.data.out_dir == str(
        tmp_path / "run" / "vision-data"
    )
    assert (vcfg.sft.steps, vcfg.sft.lr) == (120, 2e-3)  # the bundled TOML's schedule, not the defaults
    assert run_recipe_vision(RecipeVisionSection(), tmp_path / "off") is None  # off by default
    assert not (tmp_path / "off").exists()


def test_report_shows_the_recorded_vision_tables(tmp_path):
    folder = tmp_path / "vision"
    folder.mkdir()
    tables = [{"head": ["model", "all"], "rows": [["text_only", "29.5 ± 4.5"], ["vision", "61.0 ± 4.8"]],
               "caption": "held-out VQA accuracy"}]  # fmt: skip
    manifest = {"stage": "vision", "inputs": [], "config": {}, "counts": {"report": {"tables": tables}}}
    (folder / "MANIFEST.json").write_text(json.dumps(manifest))
    md = Path(write_report({"vision": folder}, tmp_path / "report")).with_name("report.md").read_text()
    assert "Vision" in md and "61.0 ± 4.8" in md and "held-out VQA accuracy" in md
    empty = Path(write_report({}, tmp_path / "empty")).with_name("report.md").read_text()
    assert "vision: not run." in empty


def test_compare_runs_is_paired_and_refuses_other_questions():
    import pytest

    from herd.vision.train import compare_runs

    a = {"questions": 4, "hits": {"vision": [1, 1, 0, 1]}}
    b = {"questions": 4, "hits": {"vision": [1, 0, 0, 0]}}
    g = compare_runs(a, b)
    assert g["gain"] == 0.5 and g["n"] == 4 and g["ci95"] == pytest.approx(1.96 * (1 / 3) ** 0.5 / 2)
    with pytest.raises(ValueError, match="scored 4 and 3 questions"):
        compare_runs(a, {"questions": 3, "hits": {"vision": [1, 0, 0]}})
