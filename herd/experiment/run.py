"""`herd experiment CONFIG`: run the grid, analyse it, write results.json, the report and MANIFEST.json."""

from __future__ import annotations

import json
from dataclasses import asdict
from pathlib import Path
from typing import Any

from herd.core.config import save_resolved
from herd.core.manifest import Manifest
from herd.experiment.analysis import analyse, arm_stats
from herd.experiment.grid import ExperimentConfig, plan_runs, run_experiment
from herd.experiment.report import write_experiment_report


def experiment(cfg: ExperimentConfig) -> dict[str, Any]:
    """Every run (finished ones are skipped by their own stages), then the analysis; returns results.json."""
    out = Path(cfg.out)
    out.mkdir(parents=True, exist_ok=True)
    save_resolved(cfg, out)
    records = run_experiment(cfg)
    exp = cfg.experiment
    analysis = analyse(records, cfg.baseline, exp.higher_is_better)
    result = {"claim": exp.claim, "metric": exp.metric, "higher_is_better": exp.higher_is_better,
              "baseline": cfg.baseline, "runs": records, **analysis}  # fmt: skip
    result["also"] = also_analyses(records, cfg)
    (out / "results.json").write_text(json.dumps(result, indent=2) + "\n")
    report = write_experiment_report(
        f"herd experiment: {out.name}", exp.claim, exp.metric, analysis, records, out, result["also"]
    )
    counts = {**analysis, "report": str(report), "wall_s": sum(r["wall_s"] for r in records)}
    Manifest.write(out, "experiment", [r.out for r in plan_runs(cfg)], cfg, counts)
    return result


def also_analyses(records: list[dict[str, Any]], cfg: ExperimentConfig) -> dict[str, Any]:
    """`experiment.also`: each further metric analysed over the runs that recorded it (a derived arm through
    its `also` paths); without the baseline among them, per-arm statistics only."""
    out: dict[str, Any] = {}
    for metric, higher in cfg.experiment.also.items():
        rows = [{**r, "value": r["also"][metric]} for r in records if metric in r.get("also", {})]
        if any(r["arm"] == cfg.baseline for r in rows):
            out[metric] = {"higher_is_better": higher, **analyse(rows, cfg.baseline, higher)}
        elif rows:
            arms = list(dict.fromkeys(r["arm"] for r in rows))
            stats = [asdict(arm_stats(a, [r for r in rows if r["arm"] == a])) for a in arms]
            out[metric] = {"higher_is_better": higher, "arms": stats, "comparisons": []}
    return out
