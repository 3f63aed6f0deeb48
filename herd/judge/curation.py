"""Curation with its judge: `herd curate` and the recipe build the judge here and pass it down.

herd.data sits below herd.judge and never loads a model; its quality stage takes any `DocumentJudge`.
"""

from __future__ import annotations

from pathlib import Path

from herd.core.config import save_resolved
from herd.core.manifest import Manifest
from herd.data.bundle import build_corpus
from herd.data.config import CurateConfig, QualityConfig
from herd.data.pipeline import run_curation
from herd.judge.lm import LMJudge, load_judge


def curation_judge(quality: QualityConfig) -> LMJudge | None:
    """The judge `quality.judge` names (labels by rank of its expected digit); None when it or the stage is off."""
    if not quality.enabled or quality.judge == "none":
        return None
    return load_judge(quality.judge)


def curate(
    cfg: CurateConfig, sources: str | Path | None = None, corpus: str | Path = "runs/corpus"
) -> list[tuple[str, Manifest]]:
    """`herd curate`: the resolved config saved under `cfg.out`, then every stage with the configured judge.

    When `cfg.inputs` is the bundled `corpus` folder and it is not built yet, it is assembled first from
    the downloaded packages in `sources`."""
    if sources and cfg.inputs == [str(corpus)] and not Path(corpus).exists() and Path(sources).is_dir():
        build_corpus(sources, corpus)
    save_resolved(cfg, cfg.out)
    return run_curation(cfg, curation_judge(cfg.quality))
