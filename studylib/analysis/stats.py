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
Welch-Satterthwaite's, (u + se_eval^2)^2 / (u^2 / f), with the seed variance u on f df taken
at its upper 97.5% confidence bound, u f / chi2(0.025, f) (infinite without seed spread).

The claims of one finding are judged together (`family`): their seed variances (one seed's
variance, n se_seeds^2, on n - 1 df) are **pooled**, each moderated towards the family's
df-weighted mean s0^2 as (d0 s0^2 + (n - 1) var) / (d0 + n - 1), on f = n - 1 + d0 df, the
empirical-Bayes form of limma (Smyth 2004). d0, the prior's df, is Smyth's moment estimate:
infinite when the claims' variances differ no more than their few df explain, small when
they differ more; it is capped at `POOL_DF` and f at the family's total df. A claim alone
(the per-condition CIs of `evidence.summary`, a family of one) keeps d0 = 0, f = n - 1.

Why, measured on simulated claims like the book's (`analysis.simulate`,
`docs/rule-error-rates.json`, `docs/evidence-power.md`). With three seeds a claim's own
variance has two df. Plain Welch-Satterthwaite (u unbounded, no pooling) let a spread small by
chance buy many df: family-wise error 15-26% against Holm's 5%. The bound alone fixed that but
over-covered (up to 98.5%) wherever evaluation noise is a fair share: se was right on average,
the df were too few. Pooling lends the df; the bound stays for what pooling leaves. Limma's
uncapped form (Smyth's log-scale s0^2) broke the 5% when the claims' seed sd differed x0.5-x2;
the cap and the mean keep it. The p-value of a
difference is the two-sided t test with the same se and df (`p_value`); the claims of one
finding are corrected together by Holm's step-down method (`holm`). A missing se_eval (a row
without a bootstrap CI) counts as zero evaluation noise. Quantiles come from scipy, exactly.
"""

from __future__ import annotations

import math

import numpy as np
from scipy import special, stats

Z = 1.96  # the normal 97.5% quantile: bootstrap CI <-> standard error
SEED_BOUND = 0.975  # the seed variance's upper confidence bound that sets the df
POOL_DF = 8.0  # the most degrees of freedom a family's pooled seed variance lends a claim
RULE = (
    "The 95% CI of an AVG-% (or of a difference of two) is mean +- t(0.975, df) * se, with "
    "se = sqrt(se_seeds^2 + se_eval^2): se_seeds = sd / sqrt(n) over the n seeds (0 with one "
    "seed), se_eval the evaluation noise of the fixed benchmark subset (from the "
    "per-benchmark bootstrap CIs, combined as for AVG), and df the Welch-Satterthwaite "
    "degrees of freedom (u + se_eval^2)^2 / (u^2 / (n - 1)), with the seed variance u at its "
    "upper 97.5% confidence bound se_seeds^2 (n - 1) / chi2(0.025, n - 1), so that a seed "
    "spread small by chance does not buy degrees of freedom (infinite without seed spread). "
    "The claims of one finding pool their seed variances first: each claim's is moderated "
    "towards the finding's df-weighted mean as (d0 s0^2 + (n - 1) sd^2) / (d0 + n - 1), with "
    f"d0 Smyth's (2004) moment estimate of the prior degrees of freedom, at most {POOL_DF:g}, "
    "and n - 1 + d0 degrees of freedom (at most the finding's total) in place of n - 1."
)


def t975(dof: float) -> float:
    """The two-sided 95% Student t quantile, t(0.975, dof); NaN below one degree of freedom."""
    if not dof >= 1:
        return math.nan
    return float(stats.t.ppf(0.975, dof))


def se_from_ci(ci_low, ci_high):
    """The standard error behind a 95% interval [ci_low, ci_high] (arrays welcome)."""
    return (ci_high - ci_low) / (2 * Z)


def _welch_df(u: np.ndarray, ev2: np.ndarray, dof: np.ndarray, bound: bool) -> np.ndarray:
    """Welch-Satterthwaite df of u + ev2 (u the seed part, on `dof` df), u taken at its upper
    SEED_BOUND confidence bound when `bound` (module doc); infinite where u is 0."""
    u, ev2, dof = np.broadcast_arrays(*(np.asarray(x, float) for x in (u, ev2, dof)))
    with np.errstate(divide="ignore", invalid="ignore"):
        lift = dof / stats.chi2.ppf(1 - SEED_BOUND, dof) if bound else np.ones_like(dof)
        ub = u * np.where(np.isinf(dof), 1.0, lift)
        return np.where(u > 0, (ub + ev2) ** 2 / (ub ** 2 / dof), np.inf)


def standard_error(se_seeds: float, dof: float, se_eval: float = 0.0,
                   bound: bool = True) -> tuple[float, float]:
    """(se, df) of the rule: the two noise sources in quadrature, Welch-Satterthwaite df
    with the seed variance at its upper confidence bound (module doc; `bound=False`: plain
    Welch-Satterthwaite, kept for the simulation's comparison). Infinite df when the seed
    part is 0 or unknown. `dof` is the seed part's: n - 1, or more once pooled (`family`)."""
    seeds = se_seeds if dof >= 1 and np.isfinite(se_seeds) else 0.0
    ev = float(np.nan_to_num(se_eval))
    se = math.sqrt(seeds ** 2 + ev ** 2)
    if seeds <= 0:
        return se, math.inf
    return se, float(_welch_df(seeds ** 2, ev ** 2, dof, bound))


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


def _trigamma_inverse(x: float) -> float:
    """y with trigamma(y) = x > 0, by Newton's method on 1 / trigamma (limma's
    `trigammaInverse`, Smyth 2004)."""
    if x > 1e7:
        return 1 / math.sqrt(x)
    if x < 1e-6:
        return 1 / x
    y = 0.5 + 1 / x
    for _ in range(50):
        tri = float(special.polygamma(1, y))
        step = tri * (1 - tri / x) / float(special.polygamma(2, y))
        y += step
        if -step / y < 1e-8:
            break
    return y


def seed_prior(var: np.ndarray, dof: np.ndarray) -> tuple[float, float]:
    """(s0^2, d0): the prior of a family's seed variances, each `var[j]` on `dof[j]` df, by
    Smyth's (2004) method of moments on log var (limma's `fitFDist`). d0 is how many degrees
    of freedom the family's common variance is worth to each claim: infinite when the
    claims' variances differ no more than sampling on `dof` df explains, small when they
    differ much more. Claims without a positive seed variance are left out of the fit;
    fewer than two left: no prior (NaN, 0)."""
    var, dof = np.asarray(var, float), np.asarray(dof, float)
    ok = np.isfinite(var) & (var > 0) & (dof >= 1)
    if ok.sum() < 2:
        return math.nan, 0.0
    var, dof = var[ok], dof[ok]
    e = np.log(var) - special.digamma(dof / 2) + np.log(dof / 2)  # unbiased for log sigma^2
    excess = float(e.var(ddof=1) - np.mean(special.polygamma(1, dof / 2)))
    if excess <= 0:  # no spread beyond sampling: one common variance
        return float(np.exp(e.mean())), math.inf
    d0 = 2 * _trigamma_inverse(excess)
    return float(np.exp(e.mean() + special.digamma(d0 / 2) - np.log(d0 / 2))), d0


def pooled_seed_variance(var: np.ndarray, dof: np.ndarray, limit: float = POOL_DF,
                         limma: bool = False) -> tuple[np.ndarray, np.ndarray]:
    """(var_mod, dof_mod) per claim: each claim's seed variance moderated towards the
    family's, (d0 s0^2 + dof var) / (d0 + dof), on dof + d0 degrees of freedom (at most the
    family's total). d0 is Smyth's estimate (`seed_prior`) capped at `limit`, and s0^2 the
    family's pooled variance, their df-weighted mean: the mean, not Smyth's log-scale
    estimate, because the claims that vary most pull it up, and they are the ones that would
    be declared by chance if pooling understated their variance (the simulation's family of
    unequal seed spreads, `analysis.simulate`). `limma=True`, `limit=inf`: limma's
    `squeezeVar`, kept for the comparison. Claims without a seed variance keep theirs (NaN)."""
    var, dof = np.asarray(var, float), np.asarray(dof, float)
    s0, d0 = seed_prior(var, dof)
    d0 = min(d0, limit)
    usable = np.isfinite(var) & (dof >= 1)
    fit = usable & (var > 0)
    if d0 == 0 or not fit.any():
        return var, dof
    total = float(dof[fit].sum())
    if not limma:
        s0 = float(np.sum(dof[fit] * var[fit]) / total)
    if math.isinf(d0):
        mod = np.full_like(var, s0)
    else:
        mod = (d0 * s0 + dof * np.nan_to_num(var)) / (d0 + dof)
    return (np.where(usable, mod, var),
            np.where(usable, np.minimum(dof + d0, total), dof))


def family(d, se_seeds, seeds, se_eval, pool: str = "capped",
           bound: bool = True) -> dict[str, np.ndarray]:
    """The rule on the claims of one family (one Holm correction): per claim its se, df,
    95% half-width and two-sided p, from d, se_seeds on seeds - 1 df and se_eval (`RULE`).
    The claims' seed variances are moderated together first (`pooled_seed_variance`;
    `pool="limma"`: limma's uncapped form; "none": each claim alone, the rule before).
    Holm is the caller's: `holm(list(out["p"]))`."""
    d, se_s, n = (np.asarray(x, float) for x in (d, se_seeds, seeds))
    ev2 = np.nan_to_num(np.asarray(se_eval, float)) ** 2
    dof = np.where(n >= 2, n - 1, 0.0)
    var = np.where((dof >= 1) & np.isfinite(se_s), se_s ** 2 * n, np.nan)  # one seed's
    if pool != "none":
        limma = pool == "limma"
        var, dof = pooled_seed_variance(var, dof, math.inf if limma else POOL_DF, limma)
    u = np.nan_to_num(var / np.where(n >= 1, n, 1))
    se = np.sqrt(u + ev2)
    df = _welch_df(u, ev2, np.where(dof >= 1, dof, 1.0), bound)
    q = np.where(np.isinf(df), Z, stats.t.ppf(0.975, np.where(df >= 1, df, np.nan)))
    with np.errstate(divide="ignore", invalid="ignore"):
        p = np.where(se > 0, 2 * stats.t.sf(np.abs(d) / se, df), np.nan)
    return {"se": se, "df": df, "half": np.where(se > 0, q * se, 0.0), "p": p,
            "se_seeds": np.sqrt(u)}


def halfwidth(sd: float, n: int, se_eval: float = 0.0) -> float:
    """95% CI half-width of a mean over n seeds with sample sd, plus the evaluation noise."""
    se_seeds = sd / math.sqrt(n) if n >= 2 else math.nan
    return combine(se_seeds, n - 1, se_eval)
