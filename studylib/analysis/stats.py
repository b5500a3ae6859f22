"""The study's one 95% confidence-interval rule for AVG-% (every table and claim uses it).

A retained-performance number has two sources of noise we can estimate:

- **seeds**: a replicate seed changes the pruning calibration sample, the recovery data and
  the training order, so the mean AVG-% over n seeds has the standard error
  se_seeds = sd / sqrt(n), with n - 1 degrees of freedom. With one seed there is no spread
  to estimate: se_seeds = 0 (and a claim is then not tested, `studylib.analysis.findings`).
- **evaluation**: the fixed benchmark subset is a sample of items; the per-benchmark
  percentile-bootstrap CIs give a standard error se_eval of AVG-% (normal: infinite df).

The two are independent: se = sqrt(se_seeds^2 + se_eval^2), and the 95% CI is
mean +- t(0.975, df) * se (`RULE`, the sentence the book prints). The degrees of freedom are
Welch-Satterthwaite's, (u + se_eval^2)^2 / (u^2 / (n - 1)), with the seed variance u taken
at its upper 97.5% confidence bound, se_seeds^2 (n - 1) / chi2(0.025, n - 1) (infinite
without seed spread). Plain Welch-Satterthwaite (u = se_seeds^2) let a seed spread that is
small by chance, as two degrees of freedom often give, buy many degrees of freedom: on
simulated claims like the book's (`analysis.simulate`) its family-wise error reached
15-26% against the promised 5%; with the bound it stayed at 1.1-2.8%, with 96-99% coverage
(`docs/rule-error-rates.json`). The p-value of a
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
    "degrees of freedom (u + se_eval^2)^2 / (u^2 / (n - 1)), with the seed variance u at its "
    "upper 97.5% confidence bound se_seeds^2 (n - 1) / chi2(0.025, n - 1), so that a seed "
    "spread small by chance does not buy degrees of freedom (infinite without seed spread)."
)
SEED_BOUND = 0.975  # the seed variance's upper confidence bound that sets the df


def t975(dof: float) -> float:
    """The two-sided 95% Student t quantile, t(0.975, dof); NaN below one degree of freedom."""
    if not dof >= 1:
        return math.nan
    return float(stats.t.ppf(0.975, dof))


def se_from_ci(ci_low, ci_high):
    """The standard error behind a 95% interval [ci_low, ci_high] (arrays welcome)."""
    return (ci_high - ci_low) / (2 * Z)


def standard_error(se_seeds: float, dof: float, se_eval: float = 0.0,
                   bound: bool = True) -> tuple[float, float]:
    """(se, df) of the rule: the two noise sources in quadrature, Welch-Satterthwaite df
    with the seed variance at its upper confidence bound (module doc; `bound=False`: plain
    Welch-Satterthwaite, kept for the simulation's comparison). Infinite df when the seed
    part is 0 or unknown."""
    seeds = se_seeds if dof >= 1 and np.isfinite(se_seeds) else 0.0
    ev = float(np.nan_to_num(se_eval))
    se = math.sqrt(seeds ** 2 + ev ** 2)
    if seeds <= 0:
        return se, math.inf
    u = seeds ** 2 * (dof / float(stats.chi2.ppf(1 - SEED_BOUND, dof)) if bound else 1.0)
    return se, (u + ev ** 2) ** 2 / (u ** 2 / dof)


def combine(se_seeds: float, dof: float, se_eval: float = 0.0, bound: bool = True) -> float:
    """The 95% half-width t(0.975, df) * se of the rule, for callers whose seed part is not a
    plain mean over n seeds (an unpaired difference of two means)."""
    se, df = standard_error(se_seeds, dof, se_eval, bound)
    return 0.0 if se == 0 else (Z if math.isinf(df) else t975(df)) * se


def p_value(d: float, se_seeds: float, dof: float, se_eval: float = 0.0,
            bound: bool = True) -> float:
    """Two-sided p of the t test of d = 0 with the rule's se and df (NaN when se is 0)."""
    se, df = standard_error(se_seeds, dof, se_eval, bound)
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
