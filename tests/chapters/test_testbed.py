"""Chapter 00's validity checks on synthetic runs (a good teacher and failing ones), and its
tables ignoring the layer-pruned model of the check."""

import pandas as pd
import pytest

from studylib.chapters import testbed
from studylib.evaluation import chance, metrics
from studylib.study import chapter, grid
from studylib.testbed import shapes

CHANCE = {"GQA": 25.0, "SQA": 25.0, "POPE": 50.0, "MME-P": 750.0, "MME-C": 300.0, "MMMU": 25.0}
TEACHER = {"GQA": 60.0, "SQA": 70.0, "POPE": 85.0, "MME-P": 1400.0, "MME-C": 500.0, "MMMU": 45.0}
PRUNED = {"GQA": 30.0, "SQA": 30.0, "POPE": 55.0, "MME-P": 800.0, "MME-C": 320.0, "MMMU": 26.0}
HALF = {b: 0.05 * v for b, v in TEACHER.items()}  # CI half-widths


def _rows(model, scores, method="none", half=None, **extra):
    half = half or {}
    rows = [{"model": model, "benchmark": b, "metric": "score", "value": v,
             "ci_low": v - half.get(b, 0.0), "ci_high": v + half.get(b, 0.0), "n": 100,
             "method": method, **extra} for b, v in scores.items()]
    return rows


def make_run(teacher=TEACHER, pruned=PRUNED, half=HALF, pct=None, model="toy-x", shuffled=None):
    """Chapter 00 rows: the teacher (with CIs), the guesser, the 60% layer-pruned model and,
    when given, the teacher's scores on shuffled images."""
    rows = _rows(model, teacher, half=half, ratio=0.0)
    if shuffled is not None:
        rows += _rows(model, shuffled, method=grid.IMAGE_SHUFFLE, ratio=0.0)
    rows.append({"model": model, "benchmark": "AVG", "metric": "paper", "method": "none",
                 "value": metrics.average(teacher), "ratio": 0.0})
    rows += _rows("chance", CHANCE, ratio=0.0)
    if pruned is not None:
        rows += _rows(model, pruned, method="layer", ratio=0.6)
        pct = metrics.average_pct(pruned, teacher) if pct is None else pct
        rows.append({"model": model, "benchmark": "AVG", "metric": "avg_pct", "method": "layer",
                     "value": pct, "ratio": 0.6})
    return pd.DataFrame(rows)


def checks(table, check):
    return table[table.check.str.contains(check, regex=False)].set_index("benchmark")


def test_a_good_teacher_passes_every_check():
    table = testbed.validity_table(make_run())
    assert list(table.columns) == testbed.VALIDITY_COLUMNS
    assert table.passed.all(), table[~table.passed]
    # 6 CI rows, the AVG-% row, 6 moved-towards-chance rows, the guesser row
    assert len(table) == 14 and set(table.model) == {"toy-x"}
    assert checks(table, "layer-60: AVG-%").value["AVG"] == pytest.approx(
        metrics.average_pct(PRUNED, TEACHER))
    assert testbed.validity_summary(table) == "toy-x: 14/14 checks pass"


def test_a_ci_that_reaches_chance_fails():
    half = {**HALF, "GQA": 36.0, "MME-C": 200.0}  # GQA 60 - 36 = 24 < 25; MME-C 300 = chance
    ci = checks(testbed.validity_table(make_run(half=half)), "CI lower bound")
    assert not ci.passed["GQA"] and not ci.passed["MME-C"]
    assert ci.passed.drop(["GQA", "MME-C"]).all()
    assert ci.reference["GQA"] == 25.0 and ci.ci_low["GQA"] == 24.0


@pytest.mark.parametrize(("pct", "passed"), [(104.0, False), (70.1, False), (69.9, True)])
def test_a_pruned_model_that_keeps_70_pct_fails_the_layer_check(pct, passed):
    row = checks(testbed.validity_table(make_run(pct=pct)), "AVG-% below 70").loc["AVG"]
    assert row.value == pct and bool(row.passed) is passed


def test_a_benchmark_the_pruned_model_moves_away_from_chance_fails():
    # the teacher sits below chance on MME-P (always "no"), pruning leaves it there; POPE
    # jumps past the teacher, away from chance; SQA does not move
    teacher = {**TEACHER, "MME-P": 500.0}
    pruned = {**PRUNED, "MME-P": 500.0, "POPE": 90.0, "SQA": 70.0}
    moved = checks(testbed.validity_table(make_run(teacher, pruned)), "moved towards chance")
    assert set(moved.index[~moved.passed]) == {"MME-P", "POPE", "SQA"}
    assert moved.value["POPE"] == 40.0 and moved.reference["POPE"] == 35.0
    # a below-chance teacher pruned up towards chance counts as moving towards it
    moved = checks(testbed.validity_table(make_run(teacher, {**PRUNED, "MME-P": 700.0})),
                   "moved towards chance")
    assert moved.passed["MME-P"]


@pytest.mark.parametrize(("gap", "passed"), [(4.9, False), (5.1, True), (-3.0, False)])
def test_the_teacher_avg_must_clear_the_guessers_by_the_margin(gap, passed):
    # move GQA so the teacher's AVG sits `gap` points above the guesser's (GQA counts 1/6)
    base = metrics.average(TEACHER) - metrics.average(CHANCE)
    teacher = {**TEACHER, "GQA": TEACHER["GQA"] + 6 * (gap - base)}
    row = checks(testbed.validity_table(make_run(teacher)), "clearly above").loc["AVG"]
    assert row.value == pytest.approx(gap) and bool(row.passed) is passed
    assert row.reference == testbed.CLEAR_MARGIN and row.ci_low < row.value < row.ci_high


def test_a_run_without_the_pruned_model_fails_rather_than_passes():
    table = testbed.validity_table(make_run(pruned=None))
    assert not checks(table, "layer pruning run").passed["AVG"]


def test_tables_ignore_the_pruned_model():
    run = make_run()
    run["n"] = 100
    wide = testbed.scores_table(run, "toy-x").set_index("benchmark")
    assert wide.loc["GQA", "ours (toy-x)"] == TEACHER["GQA"]  # not the mean with the pruned 30
    assert wide.loc["AVG", "chance (random guess)"] == pytest.approx(metrics.average(CHANCE))
    assert f"AVG {metrics.average(TEACHER):.1f}" in testbed.takeaway(run, "toy-x")


def test_the_scores_table_puts_the_papers_unpruned_model_beside_ours():
    from studylib.analysis.paper import paper_unpruned

    wide = testbed.scores_table(make_run(), "toy-x", "toy-llava", "LLaVA-v1.5-7B")
    assert len(wide.columns) <= 7
    paper = wide.set_index("benchmark")["paper (LLaVA-7B, Table 6)"]
    assert paper["MME-P"] == paper_unpruned("LLaVA-v1.5-7B")["MME-P"]
    assert paper["AVG"] == pytest.approx(62.28, abs=0.01)  # Table 6's printed AVG
    assert "paper" not in " ".join(testbed.scores_table(make_run(), "toy-x").columns)


def test_the_shown_validity_table_is_narrow_and_keeps_every_check():
    table = testbed.validity_table(make_run(half={**HALF, "GQA": 36.0}))
    shown = testbed.validity_display(table)
    assert len(shown) == len(table) and len(shown.columns) <= 7
    assert shown.passed.tolist().count("NO") == 1
    assert shown["95% CI"].iloc[0] == "[24.0, 96.0]"


def test_the_image_shuffle_check_flags_a_benchmark_answered_without_its_image():
    """Shuffled images that bring every score back to chance pass; an MMMU that keeps 15 of
    its 20 points over chance fails, and the chapter warns about it."""
    table = testbed.validity_table(make_run(shuffled=CHANCE))
    shuffle = checks(table, "image shuffle")
    assert set(shuffle.index) == set(shapes.BENCHMARKS) and shuffle.passed.all()
    run = make_run(shuffled={**CHANCE, "MMMU": 40.0})
    shuffle = checks(testbed.validity_table(run), "image shuffle")
    assert shuffle.value["MMMU"] == pytest.approx(75.0) and not shuffle.passed["MMMU"]
    assert shuffle.passed.drop("MMMU").all()
    with pytest.warns(chance.ImageBlindWarning, match="MMMU 45.0 keeps 75%"):
        found = chapter.warn_if_image_blind(run, "toy-x")
    assert list(found) == ["MMMU"]
    assert chapter.warn_if_image_blind(make_run(), "toy-x") == {}  # no control: no rows
    assert not checks(testbed.validity_table(make_run()), "image shuffle").size


def test_the_run_evaluates_the_teacher_its_layer_pruned_copy_and_the_guesser():
    from studylib.study.params import TestbedParams
    from studylib.testbed import toy

    model, processor = toy.build("toy-llava", "micro", seed=0)
    P = TestbedParams(limit=4, chance_draws=2, threads=1, option_lookup_items=8)
    run = pd.DataFrame(testbed.compute(P, model, processor))
    run["method"] = run.method.fillna("none")
    pruned = run[run.method == "layer"]
    assert set(pruned.ratio) == {P.layer_check_ratio} and "avg_pct" in set(pruned.metric)
    assert set(run[run.method == "none"].model) == {P.model, "chance"}
    shuffled = run[run.method == grid.IMAGE_SHUFFLE]
    assert set(shuffled.model) == {P.model} and set(shapes.BENCHMARKS) <= set(shuffled.benchmark)
    lookup = run[run.benchmark == testbed.OPTION_LOOKUP]
    assert lookup.n.tolist() == [P.option_lookup_items] and 0 <= lookup.value.iloc[0] <= 100
    table = testbed.validity_table(run, P.model)
    kinds = {c.split(":")[0].split(" (")[0] for c in table.check}
    assert {"CI lower bound above chance", "layer-60", "AVG clearly above a guesser's"} <= kinds
    assert len(table) >= 14
    assert not checks(table, "clearly above").passed.any()  # an untrained model is no teacher


@pytest.mark.parametrize("ratio", [0.0, 1.0, -0.2])
def test_the_layer_check_ratio_is_a_pruning_ratio(ratio):
    from studylib.errors import StudyError
    from studylib.study.params import TestbedParams

    with pytest.raises(StudyError, match="layer_check_ratio must be in"):
        TestbedParams(layer_check_ratio=ratio)


def test_the_notebook_shows_the_validity_table():
    import json
    from pathlib import Path

    notebook = Path(__file__).resolve().parents[2] / "notebooks" / "00_testbed.ipynb"
    cells = json.loads(notebook.read_text())["cells"]
    code = ["".join(c["source"]) for c in cells if c["cell_type"] == "code"]
    assert code[0].startswith("overrides = {}")
    assert any("testbed.validity_table(run, P.model)" in c for c in code)
