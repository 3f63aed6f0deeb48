"""The `vision` stage of `herd recipe` [P §7]: the bundled vision recipe (herd.vision.train) as one stage.

Off unless `[vision] enabled = true`. It runs the vision TOML named by `config` with its folders moved
under the run (`vision-data/`, `vision/`); the stage's MANIFEST.json carries the VQA, retrieval, DPO and
video numbers and the tables the recipe report shows (counts["report"]).
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from herd.core.logging import get_logger

log = get_logger(__name__)


@dataclass(frozen=True)
class RecipeVisionSection:
    enabled: bool = False
    config: str = "configs/vision/tiny.toml"  # a VisionTrainConfig TOML
    lm: str = ""  # the frozen language model; "" keeps the vision TOML's (the bundled SmolLM2)


def vision_stage_config(section: RecipeVisionSection, root: Path):
    """The vision TOML with its output folders under the run root (and `lm` when the section sets it)."""
    from herd.core.config import load_config
    from herd.vision.train import VisionTrainConfig

    cfg = load_config(VisionTrainConfig, section.config)
    cfg = replace(cfg, data=replace(cfg.data, out_dir=str(root / "vision-data")), out_dir=str(root / "vision"))
    return replace(cfg, lm=section.lm) if section.lm else cfg


def run_recipe_vision(section: RecipeVisionSection, root: Path) -> dict[str, Any] | None:
    """Run the vision recipe as a stage (skipped when finished under the same config); its counts."""
    from herd.core.stage import FnStage, run_stage
    from herd.vision.train import run_recipe

    if not section.enabled:
        log.info("vision: not enabled ([vision] enabled = true)")
        return None
    cfg = vision_stage_config(section, root)

    def body(tmp: Path) -> dict[str, Any]:
        report = run_recipe(replace(cfg, out_dir=str(tmp)))
        return {k: v for k, v in report.items() if k != "losses"}  # the curves stay in report.json

    return run_stage(FnStage("vision", cfg, Path(cfg.out_dir), [], body)).counts
