"""Metrics against hand-computed values, and the paper's AVG against its own tables."""

import numpy as np
import pandas as pd
import pytest

from studylib.analysis.paper import paper_table
from studylib.evaluation import metrics


def _rows_with_scores():
    for name in ("table3_best_practice", "table6_pruning_only", "table10_11_internvl"):
        df = paper_table(name)
        for row in df.to_dict("records"):
            yield name, row


@pytest.mark.parametrize("table,row", list(_rows_with_scores()))
def test_average_reproduces_every_printed_avg(table, row):
    assert metrics.average(row) == pytest.approx(row["AVG"], abs=0.01 + 1e-9)


def test_average_pct_reproduces_printed_avg_pct_except_known_bunny_rows():
    df = paper_table("table6_pruning_only")
    mismatched = []
    for model, group in df.groupby("model"):
        base = group[group.method == "none"].iloc[0].to_dict()
        for row in group.to_dict("records"):
            if abs(metrics.average_pct(row, base) - row["AVG_pct"]) > 0.01 + 1e-9:
                mismatched.append((model, row["method"], row["ratio"]))
    # study.md: the paper's own inconsistency, the four Bunny widthwise rows of Table 6
    assert sorted(mismatched) == [("Bunny-v1.0-3B", "width", r) for r in (0.15, 0.3, 0.45, 0.6)]


def test_pct_of_teacher_is_average_pct_on_precomputed_avgs():
    t6 = paper_table("table6_pruning_only")
    llava = t6[t6.model == "LLaVA-v1.5-7B"]
    base = llava[llava.method == "none"].iloc[0].to_dict()
    rows = llava.to_dict("records")
    by_row = [metrics.average_pct(r, base) for r in rows]
    avgs = pd.Series([metrics.average(r) for r in rows])
    from_avg = metrics.pct_of_teacher(avgs, metrics.average(base))
    assert isinstance(from_avg, pd.Series) and from_avg.tolist() == pytest.approx(by_row)
    assert by_row[0] == 100.0 and min(by_row) < 50  # LLaVA width 60% collapses
    assert metrics.pct_of_teacher(45.0, 50.0) == 90.0
    assert np.isnan(metrics.pct_of_teacher(45.0, np.nan))


def test_average_needs_all_six():
    with pytest.raises(KeyError, match="MMMU"):
        metrics.average({"GQA": 1, "SQA": 1, "MME-C": 1, "MME-P": 1, "POPE": 1})


def test_average_hand_computed():
    scores = {"MMMU": 30, "GQA": 60, "SQA": 70, "MME-C": 400, "MME-P": 1600, "POPE": 80}
    assert metrics.average(scores) == pytest.approx((30 + 60 + 70 + 50 + 80 + 80) / 6)


@pytest.mark.parametrize("text,parsed", [("yes", "yes"), ("No.", "no"), ("yes it is", "yes"),
                                         ("maybe", "other"), ("", "other"), ("yesno", "other")])
def test_parse_yes_no(text, parsed):
    assert metrics.parse_yes_no(text) == parsed


@pytest.mark.parametrize("text,parsed", [("B", "B"), ("b.", "B"), ("(c)", "C"), ("D) red", "D"),
                                         ("the answer is B", "other"), ("E", "other"), ("", "other")])
def test_parse_letter(text, parsed):
    assert metrics.parse_letter(text) == parsed


def test_short_answer_normalisation():
    assert metrics.is_correct("GQA", " Top  Left. ", "top left")
    assert not metrics.is_correct("GQA", "top", "top left")


def test_pope_f1_hand_computed():
    # tp=2, fp=1, fn=1 -> precision 2/3, recall 2/3, F1 2/3; "maybe" counts as a "no"
    preds = ["yes", "yes", "yes", "no", "maybe", "no"]
    gold = ["yes", "yes", "no", "yes", "no", "no"]
    assert metrics.pope_f1(preds, gold) == pytest.approx(200 / 3)


def test_mme_score_hand_computed():
    # subtask a: image 1 both right, image 2 one right -> acc 75, acc+ 50 -> 125
    # subtask b: image 3 both wrong -> 0
    correct = [True, True, True, False, False, False]
    subtasks = ["a", "a", "a", "a", "b", "b"]
    groups = ["1", "1", "2", "2", "3", "3"]
    assert metrics.mme_score(correct, subtasks, groups) == pytest.approx(125.0)
    items = [{"id": str(i), "prediction": "yes" if c else "no", "answer": "yes",
              "subset": s, "group": g} for i, (c, s, g) in enumerate(zip(correct, subtasks, groups, strict=True))]
    assert metrics.headline("MME-P", items) == pytest.approx(125.0)


def test_bootstrap_ci_brackets_value_and_shrinks_with_n():
    def items(n):
        return [{"id": str(i), "prediction": "a" if i % 2 else "b", "answer": "a"}
                for i in range(n)]
    v, lo, hi = metrics.score_with_ci("GQA", items(100), seed=0)
    assert lo < v == 50.0 < hi
    _, lo2, hi2 = metrics.score_with_ci("GQA", items(1000), seed=0)
    assert hi2 - lo2 < (hi - lo) / 2
    assert metrics.score_with_ci("GQA", items(100), seed=0) == (v, lo, hi)  # seeded
