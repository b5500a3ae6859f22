"""studylib.analysis.stats: the one 95% CI rule (scipy's t, seeds plus evaluation noise)."""

import math

import pytest

from studylib.analysis import stats


@pytest.mark.parametrize("dof, t", [(1, 12.706), (2, 4.303), (10, 2.228), (11, 2.201),
                                    (20, 2.086), (30, 2.042), (60, 2.000)])
def test_t975_agrees_with_the_printed_t_table(dof, t):
    assert stats.t975(dof) == pytest.approx(t, abs=5e-4)


def test_t975_has_no_quantile_without_a_degree_of_freedom():
    assert math.isnan(stats.t975(0)) and math.isnan(stats.t975(math.nan))


def test_one_seed_is_evaluation_noise_only():
    assert stats.halfwidth(math.nan, 1, se_eval=2.0) == pytest.approx(1.96 * 2.0)
    assert stats.halfwidth(5.0, 1, se_eval=2.0) == pytest.approx(1.96 * 2.0)  # sd ignored
    assert stats.halfwidth(math.nan, 1) == 0.0
    assert stats.halfwidth(math.nan, 1, se_eval=math.nan) == 0.0  # no bootstrap CI: no noise


def test_seed_part_is_the_t_interval_and_shrinks_with_more_seeds():
    assert stats.halfwidth(2.0, 3) == pytest.approx(4.303 * 2.0 / math.sqrt(3), rel=1e-3)
    widths = [stats.halfwidth(2.0, n) for n in (2, 3, 5, 10, 30)]
    assert widths == sorted(widths, reverse=True) and widths[-1] < widths[0] / 10


def test_the_two_noise_sources_add_in_quadrature_with_bounded_welch_df():
    se_s, se_e = 2.0 / math.sqrt(4), 1.5
    se, df = stats.standard_error(se_s, 3, se_e)
    assert se == pytest.approx(math.hypot(se_s, se_e))
    u = se_s ** 2 * 3 / 0.21579528  # chi2(0.025, 3): the seed variance's upper bound
    assert df == pytest.approx((u + se_e ** 2) ** 2 / (u ** 2 / 3), rel=1e-6)
    plain = stats.standard_error(se_s, 3, se_e, bound=False)[1]
    assert plain == pytest.approx(se ** 4 / (se_s ** 4 / 3))
    assert 3 < df < plain  # more df than seeds alone, fewer than plain Welch-Satterthwaite
    assert stats.standard_error(se_s, 3, 0.0)[1] == pytest.approx(3)  # no eval: t(n - 1)
    assert stats.halfwidth(2.0, 4, se_eval=1.5) == pytest.approx(stats.t975(df) * se)
    # between plain Welch-Satterthwaite's interval and t(n - 1) on the whole se
    plain_half = stats.combine(se_s, 3, se_e, bound=False)
    assert plain_half < stats.halfwidth(2.0, 4, 1.5) < stats.t975(3) * se


def test_p_value_matches_scipy_and_holm_steps_down():
    from scipy import stats as sps

    p = stats.p_value(3.0, 1.0, 2)
    assert p == pytest.approx(sps.ttest_1samp([2.0, 3.0, 4.0], 0).pvalue, rel=1e-6) or \
        p == pytest.approx(2 * sps.t.sf(3.0, 2))
    assert math.isnan(stats.p_value(1.0, math.nan, 0))  # nothing to test
    adj = stats.holm([0.01, 0.04, 0.03, math.nan])
    assert adj[:3] == pytest.approx([0.03, 0.06, 0.06]) and math.isnan(adj[3])


def test_se_from_ci_inverts_the_normal_interval():
    assert stats.se_from_ci(48.04, 51.96) == pytest.approx(1.0)


def test_seed_prior_is_smyths_method_of_moments():
    from scipy import special

    # equal spreads, or spreads no further apart than two df explain: one common variance
    s0, d0 = stats.seed_prior([1.0, 4.0], [2, 2])
    assert math.isinf(d0) and s0 == pytest.approx(math.exp(math.log(2.0) - special.digamma(1)))
    # spreads far apart: few prior df, from trigamma(d0 / 2) = the excess spread of log var
    var = [0.01, 1.0, 100.0]
    s0, d0 = stats.seed_prior(var, [2, 2, 2])
    e = [math.log(v) - special.digamma(1) for v in var]
    excess = (2 * math.log(100.0) ** 2) / 2 - special.polygamma(1, 1)
    assert special.polygamma(1, d0 / 2) == pytest.approx(excess, rel=1e-6)
    assert s0 == pytest.approx(math.exp(sum(e) / 3 + special.digamma(d0 / 2) - math.log(d0 / 2)))
    assert 0 < d0 < 1
    s0, d0 = stats.seed_prior([1.0, math.nan, 0.0], [2, 2, 2])  # one usable claim: no prior
    assert math.isnan(s0) and d0 == 0


def test_pooled_seed_variance_by_hand():
    # one common variance (d0 infinite) is capped at POOL_DF = 8: s0^2 the df-weighted mean
    var, dof = stats.pooled_seed_variance([1.0, 4.0], [2, 2])
    assert stats.POOL_DF == 8.0
    assert list(var) == pytest.approx([(8 * 2.5 + 2 * 1) / 10, (8 * 2.5 + 2 * 4) / 10])
    assert list(dof) == [4, 4]  # 2 + 8, but at most the family's 4
    # limma's form: Smyth's s0^2, uncapped
    var, dof = stats.pooled_seed_variance([1.0, 4.0], [2, 2], limit=math.inf, limma=True)
    assert list(var) == pytest.approx([stats.seed_prior([1.0, 4.0], [2, 2])[0]] * 2)
    # a claim without seed spread borrows the family's; one without seeds keeps NaN
    var, dof = stats.pooled_seed_variance([0.0, 1.0, 4.0, math.nan], [2, 2, 2, 0])
    assert var[0] == pytest.approx(8 * 2.5 / 10) and math.isnan(var[3]) and dof[3] == 0
    # fewer than two claims with a spread: nothing to pool, the claim's own
    var, dof = stats.pooled_seed_variance([3.0], [2])
    assert list(var) == [3.0] and list(dof) == [2]


def test_family_without_pooling_is_the_one_claim_rule_and_pooling_lends_df():
    d, se_s, n, se_e = [3.0, -1.0, 0.5], [1.0, 2.0, 0.5], [3, 3, 3], [0.5, 0.0, 1.0]
    alone = stats.family(d, se_s, n, se_e, pool="none")
    for j in range(3):
        se, df = stats.standard_error(se_s[j], 2, se_e[j])
        assert alone["se"][j] == pytest.approx(se) and alone["df"][j] == pytest.approx(df)
        assert alone["p"][j] == pytest.approx(stats.p_value(d[j], se_s[j], 2, se_e[j]))
        assert alone["half"][j] == pytest.approx(stats.combine(se_s[j], 2, se_e[j]))
    pooled = stats.family(d, se_s, n, se_e)
    var, dof = stats.pooled_seed_variance([3 * s ** 2 for s in se_s], [2, 2, 2])
    assert list(pooled["se_seeds"]) == pytest.approx(list((var / 3) ** 0.5))
    u = var[1] / 3  # claim 1 has no evaluation noise: t on the pooled df
    assert pooled["df"][1] == pytest.approx(dof[1]) and dof[1] == 6
    assert pooled["p"][1] == pytest.approx(2 * stats.stats.t.sf(1.0 / math.sqrt(u), 6))
    assert (pooled["df"] > alone["df"]).all()
