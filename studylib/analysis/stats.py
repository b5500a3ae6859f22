"""The study's one 95% confidence-interval rule for AVG-% (every table and claim uses it).

A retained-performance number has two sources of noise we can estimate:

- **seeds**: the training seed changes the pruning calibration sample, the recovery data and
  the training order, so the mean AVG-% over n seeds has the Student-t half-width
  S = t(0.975, n - 1) * sd / sqrt(n). With one seed there is no spread to estimate: S = 0.
- **evaluation**: the fixed benchmark subset is a sample of items; the per-benchmark
  percentile-bootstrap CIs give a standard error se_eval of AVG-%, and the half-width is
  E = Z * se_eval (a normal interval, the bootstrap's own level).

The two are independent and add in quadrature: half-width = sqrt(S^2 + E^2) (`RULE`, the
sentence the book prints). A missing se_eval (a row without a bootstrap CI) counts as zero
evaluation noise. The t quantile comes from scipy, exactly, for every df: the hand-typed
tables it replaces disagreed for df 11-30.
"""

from __future__ import annotations

import math

import numpy as np
from scipy import stats

Z = 1.96  # the normal 97.5% quantile: bootstrap CI <-> standard error, and E = Z * se_eval
RULE = (
    "The 95% CI half-width of an AVG-% (or of a difference of two) is sqrt(S^2 + E^2): "
    "S = t(0.975, n-1) * sd / sqrt(n) over the n training seeds (S = 0 with one seed), and "
    "E = 1.96 * se_eval, the evaluation noise of the fixed benchmark subset (its standard "
    "error from the per-benchmark bootstrap CIs, combined as for AVG)."
)


def t975(dof: float) -> float:
    """The two-sided 95% Student t quantile, t(0.975, dof); NaN below one degree of freedom."""
    if not dof >= 1:
        return math.nan
    return float(stats.t.ppf(0.975, dof))


def se_from_ci(ci_low, ci_high):
    """The standard error behind a 95% interval [ci_low, ci_high] (arrays welcome)."""
    return (ci_high - ci_low) / (2 * Z)


def combine(se_seeds: float, dof: float, se_eval: float = 0.0) -> float:
    """sqrt(S^2 + E^2) with S = t975(dof) * se_seeds (0 without a degree of freedom or a
    finite se_seeds) and E = Z * se_eval (0 when se_eval is missing): the rule, for callers
    whose seed part is not a plain mean over n seeds (an unpaired difference of two means)."""
    seed_part = t975(dof) * se_seeds if dof >= 1 and np.isfinite(se_seeds) else 0.0
    return math.sqrt(seed_part ** 2 + (Z * np.nan_to_num(se_eval)) ** 2)


def halfwidth(sd: float, n: int, se_eval: float = 0.0) -> float:
    """95% CI half-width of a mean over n seeds with sample sd, plus the evaluation noise."""
    se_seeds = sd / math.sqrt(n) if n >= 2 else math.nan
    return combine(se_seeds, n - 1, se_eval)
