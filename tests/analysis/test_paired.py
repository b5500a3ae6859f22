"""Paired evaluation noise (`analysis.paired`): the models of a claim resampled on the
same items. Synthetic predictors on the real benchmark items (60 per benchmark)."""

from __future__ import annotations

import gzip
import json
import random

import numpy as np
import pandas as pd
import pytest

from studylib.analysis import evidence, paired
from studylib.evaluation import metrics
from studylib.evaluation.evaluate import score, select
from studylib.testbed import shapes, suite

LIMIT = 60


def predictor(skill: float, seed: int) -> pd.DataFrame:
    """Items of all six benchmarks answered right with probability `skill`, else guessed
    (yes/no, a letter, or another answer of the family)."""
    rng = random.Random(seed)
    tables = []
    for name in metrics.PAPER_KEYS:
        items = select(suite.benchmark(name), LIMIT, 0)
        answers = sorted({it.answer for it in items})
        preds = []
        for it in items:
            if rng.random() < skill:
                preds.append(it.answer)
            elif name in ("POPE", "MME-P", "MME-C"):
                preds.append(rng.choice(["yes", "no"]))
            elif name in ("SQA", "MMMU"):
                preds.append(rng.choice(list(shapes.LETTERS)))
            else:
                preds.append(rng.choice(answers))
        table, _ = score(name, items, preds, n_boot=0)
        tables.append(table)
    return pd.concat(tables, ignore_index=True)


def perturbed(items: pd.DataFrame, share: float, seed: int) -> pd.DataFrame:
    """A copy whose prediction flips to the answer (or away from it) on `share` of items."""
    rng = np.random.default_rng(seed)
    out = items.copy()
    flip = rng.random(len(out)) < share
    for i in np.flatnonzero(flip):
        b, answer = out.at[i, "benchmark"], out.at[i, "answer"]
        yes_no = b in ("POPE", "MME-P", "MME-C")
        wrong = ({"yes": "no", "no": "yes"}[answer] if yes_no else "zzz")
        out.at[i, "prediction"] = answer if out.at[i, "prediction"] != answer else wrong
    return out


@pytest.fixture(scope="module")
def models():
    oracle = predictor(1.0, 0)  # constant on every draw: the teachers add no noise
    return {"oracle": paired.ItemCounts(oracle), "a": paired.ItemCounts(predictor(0.6, 1)),
            "b": paired.ItemCounts(predictor(0.6, 2)),
            "a'": paired.ItemCounts(perturbed(predictor(0.6, 1), 0.05, 3)),
            "teacher": paired.ItemCounts(predictor(0.8, 4))}


def test_the_point_estimate_is_the_headline_avg_pct(models):
    a, t = predictor(0.6, 1), predictor(0.8, 4)
    head = {b: metrics.headline(b, a[a.benchmark == b].to_dict("records")) for b in
            metrics.PAPER_KEYS}
    ref = {b: metrics.headline(b, t[t.benchmark == b].to_dict("records")) for b in
           metrics.PAPER_KEYS}
    d = paired.paired_difference([(models["a"], models["teacher"])], n_boot=5)
    assert d.shape == (6, 1)
    assert d[0, 0] == pytest.approx(metrics.average_pct(head, ref), rel=1e-9)


def test_identical_prediction_sets_have_no_evaluation_noise(models):
    pair = (models["a"], models["teacher"])
    d = paired.paired_difference([pair], [pair], n_boot=200)
    assert np.abs(d).max() == 0.0  # unpaired, this would be ~sqrt(2) x each model's se


def test_independent_predictors_pair_to_the_unpaired_noise(models):
    """With an oracle teacher (no teacher noise), two independent random predictors share
    no item effects: the paired se is the unpaired sqrt(se_a^2 + se_b^2)."""
    a, b, o = models["a"], models["b"], models["oracle"]
    d = paired.paired_difference([(a, o)], [(b, o)], n_boot=2000, seed=1)
    se_a = np.std(paired.paired_difference([(a, o)], n_boot=2000, seed=2)[1:], ddof=1)
    se_b = np.std(paired.paired_difference([(b, o)], n_boot=2000, seed=3)[1:], ddof=1)
    assert np.std(d[1:], ddof=1) / np.hypot(se_a, se_b) == pytest.approx(1.0, abs=0.12)
    # one seed: the shared variance is the whole variance
    assert paired.shared_variance(d[1:]) == pytest.approx(np.var(d[1:], ddof=1))


def test_a_near_copy_has_a_small_paired_noise(models):
    a, a2, o = models["a"], models["a'"], models["oracle"]
    paired_se = np.std(paired.paired_difference([(a, o)], [(a2, o)], n_boot=1000)[1:], ddof=1)
    alone = np.std(paired.paired_difference([(a, o)], n_boot=1000)[1:], ddof=1)
    assert paired_se < 0.5 * np.sqrt(2) * alone


def test_shared_variance_is_the_part_every_seed_shares():
    """Per-seed differences = a shared item effect S + each seed's own R: the rule adds
    var(S) only, since the seed spread already holds var(R) / k."""
    rng = np.random.default_rng(0)
    shared, own = rng.normal(0, 2.0, (20000, 1)), rng.normal(0, 3.0, (20000, 3))
    assert paired.shared_variance(shared + own) == pytest.approx(4.0, rel=0.05)
    assert paired.shared_variance(own) == pytest.approx(0.0, abs=0.15)


def test_models_scored_on_other_items_are_refused(models):
    other = predictor(0.6, 5)
    other = paired.ItemCounts(other[other.id != other.id.iloc[0]])
    with pytest.raises(ValueError, match="not scored on the same items"):
        paired.paired_difference([(models["a"], models["teacher"])], [(other, models["teacher"])])


def _cells(tmp_path, named: dict[str, pd.DataFrame]) -> paired.PairedNoise:
    for key, items in named.items():
        with gzip.open(tmp_path / f"{key}.json.gz", "wt") as f:
            json.dump({"report": {"items": items.to_dict("list")}}, f)
    return paired.PairedNoise(tmp_path, n_boot=300)


def test_compare_pairs_the_noise_when_every_row_names_its_cell(tmp_path):
    """Through `evidence.compare`: a claim between two seeds of identical predictions has
    se_eval 0 when paired, and the unpaired rule's sqrt(2) x se otherwise."""
    items = {"a0": predictor(0.6, 1), "a1": predictor(0.6, 2), "t": predictor(0.8, 4)}
    noise = _cells(tmp_path, items)
    rows = pd.DataFrame({"seed": [0, 1], "AVG_pct": [70.0, 72.0], "se_pct": [3.0, 3.0],
                         "cell": ["a0", "a1"], "teacher_cell": ["t", "t"]})
    same = evidence.compare(rows, rows.copy(), noise=noise)
    assert same["paired"] and same["se_eval"] == 0.0
    unpaired = evidence.compare(rows, rows.copy())
    assert not unpaired["paired"] and unpaired["se_eval"] == pytest.approx(3.0 * np.sqrt(2))
    missing = rows.assign(cell=["a0", None])
    assert not evidence.compare(missing, rows, noise=noise)["paired"]
    alone = evidence.compare(rows, threshold=95.0, noise=noise)
    assert alone["paired"] and 0 < alone["se_eval"] < 10
    other_seeds = rows.assign(seed=[2, 3])  # no seed in common: nothing to pair
    assert not evidence.compare(rows, other_seeds, noise=noise)["paired"]
