"""The study's one 95% confidence-interval rule for AVG-% (every table and claim uses it).

A retained-performance number has two sources of noise we can estimate:

- **seeds**: a replicate seed changes the pruning calibration sample, the recovery data and
  the training order, so the mean AVG-% over n seeds has the standard error
  se_seeds = sd / sqrt(n), with n - 1 degrees of freedom. With one seed there is no spread
  to estimate: se_seeds = 0 (and a claim is then not tested, `studylib.analysis.findings`).
- **evaluation**: the fixed benchmark subset is a sample of items; the per-benchmark
  percentile-bootstrap CIs give a standard error se_eval of AVG-% (normal: infinite df).

The two are independent: se = sqrt(se_seeds^2 + se_eval^2), with the Welch-Satterthwaite
degrees of freedom df = se^4 / (se_seeds^4 / (n - 1)) (infinite without seed spread), and the
95% CI is mean +- t(0.975, df) * se (`RULE`, the sentence the book prints). The p-value of a
difference is the two-sided t test with the same se and df (`p_value`); the claims of one
finding are corrected together by Holm's step-down method (`holm`). A missing se_eval (a row
without a bootstrap CI) counts as zero evaluation noise. Quantiles come from scipy, exactly.
"""

from __future__ import annotations

import math

import numpy as np
from scipy import stats

Z = 1.96  # the normal 97.5% quantile: bootstrap CI <-> standard error
RULE = (
    "The 95% CI of an AVG-% (or of a difference of two) is mean +- t(0.975, df) * se, with "
    "se = sqrt(se_seeds^2 + se_eval^2): se_seeds = sd / sqrt(n) over the n seeds (0 with one "
    "seed), se_eval the evaluation noise of the fixed benchmark subset (from the "
    "per-benchmark bootstrap CIs, combined as for AVG), and df the Welch-Satterthwaite "
    "degrees of freedom se^4 / (se_seeds^4 / (n - 1)) (infinite without seed spread)."
)


def t975(dof: float) -> float:
    """The two-sided 95% Student t quantile, t(0.975, dof); NaN below one degree of freedom."""
    if not dof >= 1:
        return math.nan
    return float(stats.t.ppf(0.975, dof))


def se_from_ci(ci_low, ci_high):
    """The standard error behind a 95% interval [ci_low, ci_high] (arrays welcome)."""
    return (ci_high - ci_low) / (2 * Z)


def standard_error(se_seeds: float, dof: float, se_eval: float = 0.0) -> tuple[float, float]:
    """(se, df) of the rule: the two noise sources in quadrature, Welch-Satterthwaite df
    (infinite when the seed part is 0 or unknown)."""
    seeds = se_seeds if dof >= 1 and np.isfinite(se_seeds) else 0.0
    ev = float(np.nan_to_num(se_eval))
    se = math.sqrt(seeds ** 2 + ev ** 2)
    df = se ** 4 / (seeds ** 4 / dof) if seeds > 0 else math.inf
    return se, df


def combine(se_seeds: float, dof: float, se_eval: float = 0.0) -> float:
    """The 95% half-width t(0.975, df) * se of the rule, for callers whose seed part is not a
    plain mean over n seeds (an unpaired difference of two means)."""
    se, df = standard_error(se_seeds, dof, se_eval)
    return 0.0 if se == 0 else (Z if math.isinf(df) else t975(df)) * se


def p_value(d: float, se_seeds: float, dof: float, se_eval: float = 0.0) -> float:
    """Two-sided p of the t test of d = 0 with the rule's se and df (NaN when se is 0)."""
    se, df = standard_error(se_seeds, dof, se_eval)
    if se == 0 or not np.isfinite(d):
        return math.nan
    return float(2 * stats.t.sf(abs(d) / se, df))


def holm(p: list[float]) -> list[float]:
    """Holm's step-down adjusted p-values (family-wise error rate), NaN kept as NaN."""
    idx = [i for i, v in enumerate(p) if np.isfinite(v)]
    m = len(idx)
    out = [math.nan] * len(p)
    running = 0.0
    for rank, i in enumerate(sorted(idx, key=lambda j: p[j])):
        running = max(running, min(1.0, (m - rank) * p[i]))
        out[i] = running
    return out


def halfwidth(sd: float, n: int, se_eval: float = 0.0) -> float:
    """95% CI half-width of a mean over n seeds with sample sd, plus the evaluation noise."""
    se_seeds = sd / math.sqrt(n) if n >= 2 else math.nan
    return combine(se_seeds, n - 1, se_eval)
