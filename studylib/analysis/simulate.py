"""The verdict rule's error rates, measured on simulated claims whose truth is known.

A claim of the study compares two conditions' AVG-% over a few paired seeds, every model
scored on the same items, and a finding's claims are corrected together by Holm's method
(`findings.RULE`). Does the rule keep its promises on data like ours? `error_rates`
simulates families of such claims and reports:

- the 95% CI's coverage of the true difference, for null claims and for claims whose true
  difference is `delta` AVG-% points;
- the family-wise error under the null: the share of all-null families in which Holm
  declares any claim;
- the power to detect `delta`: the share of non-null claims supported, in families where
  half the claims are null.

The generative model (`Setup`) is an item-response one, with its parameters estimated from
the book's cells (README, "The evidence"): item i has a difficulty b_i ~ N(0, item_sd^2),
shared by every model, which makes models' item outcomes correlated as they are in the
cells; a model answers it right with probability sigmoid(theta - b_i); a seed shifts a
model's theta by N(0, seed_sd^2), correlated `seed_corr` between the two sides of a claim
(same calibration sample and data); and a condition (a method, ratio and recipe) has item
effects of its own, N(0, interaction_sd^2) per item, shared by all its seeds (what
pruning one way breaks, it breaks whatever the seed). Each family draws its items once,
as the book does.

The rule is applied as the study applies it: se_seeds from the per-seed differences,
se_eval paired by item and counted once (`paired.shared_variance`, here from the
delta-method covariance of the per-seed item-wise differences of AVG-%, which is what the
paired bootstrap of `analysis.paired` estimates), the family's seed variances pooled,
Welch-Satterthwaite degrees of freedom and a t interval (`stats.family`), then Holm.
`rule="whole"` adds the whole paired variance instead, `bound=False` takes plain
Welch-Satterthwaite df, `pool="none"` judges each claim on its own seeds and `pool="limma"`
pools as limma does, uncapped: the forms the simulation showed over-covering (the whole
variance; each claim alone, where evaluation noise is a fair share), letting the family-wise
error reach 15-26% (plain df), or 8-9% where the claims' seed noise differs (limma's).
`variance_check` says why a rule over-covers: whether its se or its df are off.
"""

from __future__ import annotations

import dataclasses
import math

import numpy as np
import pandas as pd
from scipy import optimize

from studylib.analysis import stats

ALPHA = 0.05


@dataclasses.dataclass(frozen=True)
class Setup:
    """One simulated study: items, seeds and the model's variance components."""

    items: int = 1207  # items per model (six benchmarks at 200, as the default book)
    seeds: int = 3
    item_sd: float = 2.3  # logit sd of item difficulty
    seed_sd: float = 0.13  # logit sd of a seed's effect on one model
    seed_corr: float = 0.9  # correlation of the two sides' seed effects
    interaction_sd: float = 0.3  # logit sd of a condition's own item effects (all its seeds)
    student: float = -0.3  # logit ability of the compared students
    teacher: float = 0.0  # the teacher's (AVG-% is against it)
    claims: int = 10  # claims per family (one Holm correction)
    seed_spread: float = 1.0  # claim j's seed_sd is seed_sd * seed_spread ** U(-1, 1)


def _expected_correct(theta: float, sd: float, nodes: int = 96) -> float:
    """E sigmoid(theta - u), u ~ N(0, sd^2) (Gauss-Hermite)."""
    x, w = np.polynomial.hermite_e.hermegauss(nodes)
    return float(np.sum(w / (1 + np.exp(-(theta - sd * x)))) / math.sqrt(2 * math.pi))


def true_pct(theta: float, setup: Setup) -> float:
    """A student's population AVG-% (over items, seeds and its condition's own item effects)
    at ability `theta`."""
    student = _expected_correct(theta, math.sqrt(setup.item_sd ** 2 + setup.seed_sd ** 2
                                                 + setup.interaction_sd ** 2))
    return 100 * student / _expected_correct(setup.teacher, setup.item_sd)


def shift_for(points: float, setup: Setup) -> float:
    """The logit shift of one side that makes the true difference `points` AVG-% points."""
    base = true_pct(setup.student, setup)
    if points == 0:
        return 0.0
    return optimize.brentq(lambda s: true_pct(setup.student + s, setup) - base - points, -5, 5)


RULES = ("shared", "whole", "unpaired", "seeds only")


def simulate_family(setup: Setup, shifts: np.ndarray, rng: np.random.Generator,
                    rule: str = "shared", bound: bool = True,
                    pool: str = "capped") -> pd.DataFrame:
    """One family of claims (side A shifted by `shifts[j]` logits over side B), judged by
    the rule: se_eval is the shared part of the paired evaluation variance ("shared", the
    study's), all of it ("whole"), the two models' own noises added ("unpaired", the rule
    before issue 27) or none ("seeds only"); the claims' seed variances are pooled as
    `pool` says (`stats.family`), and the df bound the seed variance unless `bound` is
    False."""
    n, k, m = setup.items, setup.seeds, len(shifts)
    b = rng.normal(0, setup.item_sd, n)
    y_t = rng.random(n) < 1 / (1 + np.exp(-(setup.teacher - b)))
    y_bar_t = y_t.mean()
    cov = setup.seed_sd ** 2 * np.array([[1, setup.seed_corr], [setup.seed_corr, 1]])
    z = rng.multivariate_normal([0, 0], cov, size=(m, k))  # (claims, seeds, side)
    if setup.seed_spread != 1:  # claims whose seeds vary more or less than others'
        z *= setup.seed_spread ** rng.uniform(-1, 1, (m, 1, 1))
    theta = setup.student + z + np.stack([shifts[:, None], np.zeros((m, 1))], -1)
    own = rng.normal(0, setup.interaction_sd, (m, 1, 2, n))  # each condition's item effects
    y = rng.random((m, k, 2, n)) < 1 / (1 + np.exp(-(theta[..., None] - b + own)))
    y_bar = y.mean(-1)
    pct = 100 * y_bar / y_bar_t  # (claims, seeds, side)
    diffs = pct[..., 0] - pct[..., 1]
    d = diffs.mean(1)
    se_seeds = diffs.std(1, ddof=1) / math.sqrt(k)
    # each item's influence on each model's AVG-% (the teacher is resampled with it)
    influence = 100 * (y / y_bar_t - y_bar[..., None] * y_t / y_bar_t ** 2)
    per_item = influence[:, :, 0] - influence[:, :, 1]  # (claims, seeds, items)
    if rule == "seeds only":
        se_eval = np.zeros(m)
    elif rule == "unpaired":  # each model's own bootstrap se, the two sides added
        own_se = influence.std(-1, ddof=1).mean(1) / math.sqrt(n)  # (claims, side)
        se_eval = np.hypot(own_se[:, 0], own_se[:, 1])
    elif rule == "whole":
        se_eval = per_item.mean(1).std(-1, ddof=1) / math.sqrt(n)
    else:  # the covariance of two seeds' item-mean differences, over pairs of seeds
        centred = per_item - per_item.mean(-1, keepdims=True)
        cov = np.einsum("csi,cti->cst", centred, centred) / (n - 1) / n
        off = (cov.sum((1, 2)) - np.trace(cov, axis1=1, axis2=2)) / (k * (k - 1))
        se_eval = np.sqrt(np.clip(off, 0, None))
    judged = stats.family(d, se_seeds, np.full(m, k), se_eval, pool=pool, bound=bound)
    out = pd.DataFrame({"d": d, "lo": d - judged["half"], "hi": d + judged["half"],
                        "p": judged["p"], "se_seeds": se_seeds, "se_eval": se_eval,
                        "df": judged["df"]})
    out["p_holm"] = stats.holm(list(out.p))
    return out


def error_rates(setup: Setup = Setup(), families: int = 1000, delta: float = 5.0,
                seed: int = 0, rule: str = "shared", bound: bool = True,
                pool: str = "capped") -> pd.DataFrame:
    """Coverage (null and `delta`), family-wise error and power of the rule (module doc)."""
    rng = np.random.default_rng(seed)
    shift = shift_for(delta, setup)
    null = pd.concat([simulate_family(setup, np.zeros(setup.claims), rng, rule, bound, pool)
                      .assign(family=f) for f in range(families)])
    half = setup.claims // 2
    mixed_shifts = np.r_[np.zeros(setup.claims - half), np.full(half, shift)]
    mixed = pd.concat([simulate_family(setup, mixed_shifts, rng, rule, bound, pool)
                       .assign(family=f, true=np.r_[np.zeros(setup.claims - half),
                                                    np.full(half, delta)])
                       for f in range(families)])
    effect = mixed[mixed.true > 0]
    null_fw = null.groupby("family").p_holm.min() < ALPHA

    def covered(frame: pd.DataFrame, truth) -> float:
        return float(((frame.lo <= truth) & (truth <= frame.hi)).mean())

    rows = [("95% CI coverage, null claims", covered(null, 0.0), "93-97%"),
            (f"95% CI coverage, true difference {delta:g} points", covered(effect, delta),
             "93-97%"),
            ("family-wise error under the null (Holm)", float(null_fw.mean()), "<= 5%"),
            (f"power to detect {delta:g} points (Holm, {setup.claims}-claim families, half null)",
             float(((effect.p_holm < ALPHA) & (effect.d > 0)).mean()), ""),
            ("median se from seeds (points)", float(null.se_seeds.median()), ""),
            ("median se from evaluation (points)", float(null.se_eval.median()), "")]
    return pd.DataFrame(rows, columns=["quantity", "value", "target"])


def variance_check(setup: Setup = Setup(), families: int = 1000, seed: int = 1) -> dict:
    """Is the rule's se right on average? Over all-null families: the mean squared d (its
    variance, the truth being 0), the mean se_seeds^2 (unbiased for the seed part: the
    per-seed differences are independent given the items) and the mean se_eval^2, beside
    the evaluation part the first two imply, and the Welch-Satterthwaite df those true
    parts give (`oracle_df`)."""
    rng = np.random.default_rng(seed)
    null = pd.concat([simulate_family(setup, np.zeros(setup.claims), rng)
                      for _ in range(families)])
    var_d, seeds = float((null.d ** 2).mean()), float((null.se_seeds ** 2).mean())
    evals = float((null.se_eval ** 2).mean())
    return {"var_d": var_d, "mean_se_seeds2": seeds, "mean_se_eval2": evals,
            "implied_eval": var_d - seeds, "mean_se2_over_var_d": (seeds + evals) / var_d,
            "oracle_df": var_d ** 2 / (seeds ** 2 / (setup.seeds - 1)),
            "median_df_claim_alone": float(np.median(
                stats.family(null.d, null.se_seeds, np.full(len(null), setup.seeds),
                             null.se_eval, pool="none")["df"]))}


# What chapter 05 and docs/rule_error_rates.py simulate. The settings run from claims whose
# noise is the seeds' to claims whose noise is the evaluation's (the book's findings span that
# range: README, "The evidence"), and one where a family's claims differ in their seed noise,
# where pooling their seed variances is not ideal. The rules are the study's and the forms it
# replaced, each as (`rule`, `bound`, `pool`) of `error_rates`.
SETTINGS = {
    "default": Setup(),
    "seeds paired closely (finding 4)": Setup(seed_sd=0.13, seed_corr=0.97, interaction_sd=0.5),
    "seeds paired loosely (finding 5)": Setup(seed_sd=0.2, seed_corr=0.5, interaction_sd=0.5),
    "evaluation-heavy": Setup(seed_sd=0.05, seed_corr=0.9, interaction_sd=0.8),
    "seed sd x0.5-x2 across a family": Setup(seed_sd=0.2, seed_corr=0.5, interaction_sd=0.5,
                                             seed_spread=2.0),
}
RULE_FORMS = {
    "the study's rule (paired, shared, pooled seed variance, bounded df)":
        ("shared", True, "capped"),
    "paired, shared, limma's pooled seed variance (uncapped), bounded df":
        ("shared", True, "limma"),
    "paired, shared, each claim's own seed variance, bounded df (before pooling)":
        ("shared", True, "none"),
    "paired, shared, plain Welch-Satterthwaite": ("shared", False, "none"),
    "paired, whole, plain Welch-Satterthwaite": ("whole", False, "none"),
    "unpaired, plain Welch-Satterthwaite (before issue 27)": ("unpaired", False, "none"),
}


def rule_table(families: int = 1000, settings: dict[str, Setup] | None = None,
               rules: dict[str, tuple[str, bool, str]] | None = None) -> pd.DataFrame:
    """`error_rates` for every setting and rule: one row each, the quantities as columns,
    and the seconds each took (`wall_s`)."""
    import time

    rows = []
    for setting, setup in (settings or SETTINGS).items():
        for rule, (form, bound, pool) in (rules or RULE_FORMS).items():
            start = time.perf_counter()
            rates = error_rates(setup, families=families, rule=form, bound=bound, pool=pool)
            rows.append({"setting": setting, "rule": rule,
                         **dict(zip(rates.quantity, rates.value, strict=True)),
                         "wall_s": time.perf_counter() - start})
    return pd.DataFrame(rows)
