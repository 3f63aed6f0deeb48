"""`herd experiment CONFIG`: a grid of runs (arms × seeds) of any herd command, and its analysis with
per-arm means, 95% confidence intervals and paired tests between arms [P §3.1.2, §3.1.3]."""

from herd.experiment.analysis import ArmStats, Comparison, analyse, compare
from herd.experiment.grid import ExperimentConfig, Run, plan_runs, run_experiment
from herd.experiment.run import experiment

__all__ = [
    "ArmStats",
    "Comparison",
    "ExperimentConfig",
    "Run",
    "analyse",
    "compare",
    "experiment",
    "plan_runs",
    "run_experiment",
]
