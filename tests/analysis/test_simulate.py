"""The verdict rule's error rates on simulated claims (`analysis.simulate`): the study's
rule keeps its promises where plain Welch-Satterthwaite does not."""

from __future__ import annotations

import pytest

from studylib.analysis import simulate

FAMILIES = 300  # the book's table uses 1,000 (docs/rule_error_rates.py)


def test_a_shift_makes_the_asked_true_difference():
    setup = simulate.Setup()
    shift = simulate.shift_for(5.0, setup)
    assert shift > 0
    assert simulate.true_pct(setup.student + shift, setup) - simulate.true_pct(
        setup.student, setup) == pytest.approx(5.0, abs=1e-6)


def test_the_rule_covers_and_controls_the_family_wise_error():
    rates = simulate.error_rates(simulate.Setup(), families=FAMILIES).set_index("quantity").value
    null_cov, effect_cov, fwer = rates.iloc[0], rates.iloc[1], rates.iloc[2]
    assert 0.93 <= null_cov <= 0.99 and 0.93 <= effect_cov <= 0.99
    assert fwer <= 0.05 + 0.03  # 5% promised, +2.4 Monte Carlo standard errors


def test_plain_welch_satterthwaite_breaks_the_promise():
    """The simulation can fail a rule: without the seed-variance bound, a seed spread
    small by chance buys degrees of freedom, and Holm's 5% is exceeded."""
    rates = simulate.error_rates(simulate.Setup(), families=FAMILIES, bound=False, pool="none")
    assert rates.set_index("quantity").value.iloc[2] > 0.10


def test_chapter_05s_table_has_every_setting_and_the_two_rules_in_percent():
    from studylib.chapters import best_practices

    table = best_practices.rule_checks(10)
    assert list(table.setting.unique()) == list(simulate.SETTINGS)
    assert set(table.rule) == {"this study's", "before pairing"}
    assert table["coverage, null (%)"].between(0, 100).all()
    assert (table.filter(like="(%)") > 1).any().any()  # percent, not fractions


def test_pooling_brings_the_evaluation_heavy_coverage_into_the_band():
    """Each claim's own two seed df give t quantiles near t(2): with a quarter of the
    variance from the (well estimated) evaluation, that over-covers (98%). The family's
    pooled seed variance lends the df that bring it into the 93-97% band."""
    setup = simulate.SETTINGS["evaluation-heavy"]
    pooled = simulate.error_rates(setup, families=FAMILIES).set_index("quantity").value
    alone = simulate.error_rates(setup, families=FAMILIES, pool="none").set_index(
        "quantity").value
    assert 0.93 <= pooled.iloc[0] <= 0.97 and 0.93 <= pooled.iloc[1] <= 0.97
    assert pooled.iloc[2] <= 0.05 + 0.03
    assert alone.iloc[0] > 0.975 and alone.iloc[1] > 0.975
    assert pooled.iloc[3] > 5 * alone.iloc[3]  # power: ~20% against ~2%


def test_the_pooled_rule_holds_when_claims_differ_in_seed_noise():
    """Where pooling is not ideal (seed sd x0.5-x2 across a family), the cap on the prior
    df and the pooled mean keep Holm's promise; limma's uncapped form breaks it."""
    setup = simulate.SETTINGS["seed sd x0.5-x2 across a family"]
    capped = simulate.error_rates(setup, families=FAMILIES).set_index("quantity").value
    limma = simulate.error_rates(setup, families=FAMILIES, pool="limma").set_index(
        "quantity").value
    assert 0.93 <= capped.iloc[0] <= 0.97 and capped.iloc[2] <= 0.05 + 0.01
    assert limma.iloc[2] > capped.iloc[2] + 0.02
