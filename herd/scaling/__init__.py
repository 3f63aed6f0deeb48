"""herd.scaling: IsoFLOP sweeps, compute-optimal fits and the two-stage downstream forecast [P §3.2.1].

    herd scaling sweep configs/scaling/tiny.toml     # one resumable run per (budget, size)
    herd scaling fit configs/scaling/tiny.toml       # minima, power laws, CIs, forecast, PNGs
    herd scaling paper                               # the paper's constants and their known discrepancy

fit.py and paper.py are pure numpy/scipy; sweep.py trains through herd.train; downstream.py scores
through herd.eval.
"""

from herd.scaling.fit import (
    FitError,
    IsoFLOPFit,
    PowerLaw,
    ScalingFit,
    fit_flops_to_nll,
    fit_isoflop,
    fit_nll_to_accuracy,
    fit_power_law,
    fit_scaling,
)

__all__ = [
    "FitError",
    "IsoFLOPFit",
    "PowerLaw",
    "ScalingFit",
    "fit_flops_to_nll",
    "fit_isoflop",
    "fit_nll_to_accuracy",
    "fit_power_law",
    "fit_scaling",
]
