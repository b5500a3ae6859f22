"""A random guesser's scores, and the near-chance warning every chapter's teacher goes through."""

import warnings

import pytest

from studylib.evaluation import chance

# A guesser's headline scores (about what `chance_scores` measures on the suite).
GUESSER = {"GQA": 25.0, "SQA": 25.0, "POPE": 50.0, "MME-P": 750.0, "MME-C": 300.0, "MMMU": 25.0}
GOOD = {"GQA": 60.0, "SQA": 70.0, "POPE": 85.0, "MME-P": 1400.0, "MME-C": 500.0, "MMMU": 45.0}
# Today's failure modes: accuracies just above chance, POPE F1 ~0 and MME-P 500 (a teacher
# that always answers "no" scores *below* the guesser), MME-C a few points above chance.
NEAR = {"GQA": 30.0, "SQA": 26.7, "POPE": 1.3, "MME-P": 500.0, "MME-C": 320.0, "MMMU": 27.0}


def test_a_near_chance_teacher_warns_once_per_benchmark():
    with pytest.warns(chance.NearChanceWarning) as caught:
        found = chance.warn_near_chance(NEAR, GUESSER, model="toy-x")
    assert set(found) == set(NEAR)
    assert len(caught) == len(NEAR) and all("toy-x" in str(w.message) for w in caught)
    assert issubclass(chance.NearChanceWarning, UserWarning)


def test_a_good_teacher_does_not_warn():
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # any warning fails the test
        assert chance.warn_near_chance(GOOD, GUESSER) == {}


@pytest.mark.parametrize(("benchmark", "just_below", "just_above"), [
    ("GQA", 37.4, 37.6),      # 1.5 x 25
    ("MMMU", 37.4, 37.6),
    ("POPE", 54.9, 55.1),     # 50 + 5
    ("MME-P", 849.0, 851.0),  # 750 + 100
    ("MME-C", 339.0, 341.0),  # 300 + 40
])
def test_the_threshold_sits_where_the_constants_say(benchmark, just_below, just_above):
    bar = chance.near_chance_threshold(benchmark, GUESSER[benchmark])
    assert just_below < bar < just_above
    assert benchmark in chance.near_chance({benchmark: just_below}, GUESSER)
    assert benchmark not in chance.near_chance({benchmark: just_above}, GUESSER)


def test_below_chance_counts_as_near_chance():
    # one-sided on purpose: POPE F1 0 is far from 50, and says as little about a teacher
    assert set(chance.near_chance({"POPE": 0.0, "GQA": 2.0}, GUESSER)) == {"POPE", "GQA"}


def test_missing_or_unknown_chance_is_skipped():
    assert chance.near_chance({"GQA": 1.0, "AVG": 1.0}, {"SQA": 25.0}) == {}


def test_chance_defaults_to_a_guesser_on_the_same_items():
    zeros = {b: 0.0 for b in GUESSER}
    with pytest.warns(chance.NearChanceWarning):
        found = chance.warn_near_chance(zeros, limit=8, seed=0)
    assert set(found) == set(GUESSER)


def test_chance_scores_sit_where_a_coin_flip_does():
    head = chance.headline(chance.chance_scores(limit=60, seed=0, draws=5))
    assert set(head) == set(GUESSER)
    assert 15 < head["SQA"] < 35 and 35 < head["POPE"] < 65 and 550 < head["MME-P"] < 950


def test_the_admonition_gives_each_benchmarks_value_chance_and_meaning():
    found = chance.near_chance({"GQA": 30.0, "POPE": 52.0, "SQA": 80.0},
                               {"GQA": 25.0, "POPE": 50.0, "SQA": 25.0})
    text = chance.admonition("toy-x", found, "So AVG-% says little here.")
    assert text.startswith("```{admonition} toy-x is near chance on GQA, POPE\n"
                           ":class: warning\n")
    assert "- GQA 30.0 is near or below chance 25.0" in text
    assert "- POPE 52.0 is near or below chance 50.0" in text and "SQA" not in text
    assert text.rstrip().endswith("So AVG-% says little here.\n```")
