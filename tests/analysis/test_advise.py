"""studylib.analysis.advise: the recommendation follows the table it is given (not the paper), stays
within the budget, says how far the measured setting is and when the evidence is thin, and
`studylib advise` answers bad input with one line and exit 2."""

import json

import pandas as pd
import pytest

from studylib import cli
from studylib.analysis import advise, evidence
from studylib.errors import StudyError
from studylib.evaluation import metrics

TEACHER = 50.0  # AVG of the unpruned model: AVG-% = 2 * AVG


def eval_rows(avg, *, method="none", ratio=0.0, recipe="none", data_fraction=None, seed=0,
              arch="toy-llava", half_ci=0.5):
    """Six benchmark rows of one evaluated model whose paper AVG is `avg` (as in
    tests/analysis/test_findings.py), all in one run with the teacher."""
    return [{"study": "02_sft_recovery", "run_id": f"run-{arch}", "key": "k", "model": arch,
             "arch": arch, "timestamp": "2025-01-01T00:00:00", "method": method,
             "ratio": ratio, "recipe": recipe, "data_fraction": data_fraction, "seed": seed,
             "limit": 300, "benchmark": b, "metric": "score", "value": avg * s,
             "ci_low": (avg - half_ci) * s, "ci_high": (avg + half_ci) * s, "n": 300}
            for b, s in metrics.PAPER_SCALE.items() if b in metrics.PAPER_KEYS]


def table(points, seeds=(0, 1, 2), arch="toy-llava", spread=0.2):
    """A results table: the teacher, and per (method, ratio, recipe, data_fraction) one
    evaluation per seed around the given AVG-%."""
    rows = [r for s in seeds for r in eval_rows(TEACHER, seed=s, arch=arch)]
    for (method, ratio, recipe, frac), pct in points.items():
        for k, s in enumerate(seeds):
            avg = (pct + spread * (k - 1)) * TEACHER / 100
            rows += eval_rows(avg, method=method, ratio=ratio, recipe=recipe,
                              data_fraction=frac, seed=s, arch=arch)
    return pd.DataFrame(rows)


def crossing(low_winner="layer", high_winner="width"):
    """Recovered with SFT+L2 on 20% of the data: `low_winner` leads by 6 points at 15% and
    30%, `high_winner` by 6 points at 45% and 60%."""
    pts = {}
    for ratio, base in ((0.15, 96.0), (0.3, 92.0), (0.45, 84.0), (0.6, 76.0)):
        winner = low_winner if ratio <= 0.3 else high_winner
        for m in ("layer", "width"):
            pts[(m, ratio, "sft+l2", 0.2)] = base if m == winner else base - 6
    return pts


def test_recommendation_follows_the_table_and_flips_with_the_ratio():
    df = table(crossing())
    low, high = (advise.advise(df, r).iloc[0] for r in (0.3, 0.6))
    assert (low.method, low.recipe, high.method) == ("layer", "sft+l2", "width")
    assert low.AVG_pct == pytest.approx(92.0) and high.AVG_pct == pytest.approx(76.0)
    assert low.ci_low < 92.0 < low.ci_high and low.seeds == 3
    assert low.runner_up == "width + sft+l2, 20% data" and low.agrees_with_paper
    assert not low.thin and low.why_thin == ""  # 3 seeds, exact ratio, lead of 6 +- ~1
    # a table where the paper is wrong: the answer follows the table, and says it differs
    swapped = advise.advise(table(crossing("width", "layer")), 0.3).iloc[0]
    assert swapped.method == "width" and not swapped.agrees_with_paper


def test_budget_bounds_what_trains():
    pts = {("layer", 0.3, "none", None): 70.0, ("width", 0.3, "none", None): 80.0,
           ("layer", 0.3, "sft-mm", 0.2): 85.0, ("layer", 0.3, "sft+l2", 0.2): 95.0}
    df = table(pts)
    none, proj, full = (advise.advise(df, 0.3, budget=b).iloc[0]
                        for b in ("none", "projector", "full"))
    assert (none.method, none.recipe, none.trains) == ("width", "none", "none")
    assert pd.isna(none.measured_fraction) and none.paper == "width + none (finding 1)"
    assert (proj.recipe, proj.trains) == ("sft-mm", "projector")
    assert (full.recipe, full.trains) == ("sft+l2", "full")
    assert advise.training("sft+rkl+l2") == "full" and advise.training("my-mm") == "projector"


def test_nothing_within_the_budget_is_an_answer_flagged_thin():
    adv = advise.advise(table(crossing()), 0.3, budget="none").iloc[0]
    assert adv.method == "" and adv.thin
    assert adv.why_thin.startswith("nothing measured within budget 'none'")
    assert "no answer" in advise.format_advice(advise.advise(table(crossing()), 0.3, budget="none"))


def test_closest_ratio_and_data_fraction_and_their_distance():
    pts = {("layer", r, "sft+l2", f): 90.0 - 10 * r + 5 * f
           for r in (0.15, 0.3) for f in (0.05, 0.2, 1.0)}
    pts.update({("width", r, "sft+l2", f): v - 4 for (_, r, _, f), v in list(pts.items())})
    adv = advise.advise(table(pts), 0.2, data_fraction=0.1).iloc[0]
    assert adv.measured_ratio == pytest.approx(0.15) and adv.ratio_distance == pytest.approx(0.05)
    assert adv.measured_fraction == pytest.approx(0.05)  # 0.05 is closer to 0.1 than 0.2
    assert adv.fraction_distance == pytest.approx(0.05) and not adv.thin
    free = advise.advise(table(pts), 0.3).iloc[0]  # no fraction asked: the best one measured
    assert free.measured_fraction == pytest.approx(1.0) and pd.isna(free.fraction_distance)
    # halfway: the higher ratio (a lower bound) and the smaller fraction (no more data)
    mid = advise.advise(table(pts), 0.225, data_fraction=0.125).iloc[0]
    assert (mid.measured_ratio, mid.measured_fraction) == pytest.approx((0.3, 0.05))
    scarce = advise.advise(table(pts), 0.3, data_fraction=0.01).iloc[0]
    assert scarce.thin and "data fraction 5% is far from the asked 1%" in scarce.why_thin


def test_thin_evidence_one_seed_far_ratio_and_unresolved_lead():
    one = advise.advise(table(crossing(), seeds=(0,)), 0.3).iloc[0]
    assert one.method == "layer" and one.thin and "only 1 seed" in one.why_thin
    far = advise.advise(table({k: v for k, v in crossing().items() if k[1] == 0.3}), 0.6)
    far = far.iloc[0]
    assert far.measured_ratio == pytest.approx(0.3) and far.ratio_distance == pytest.approx(0.3)
    assert far.thin and "closest measured ratio 0.3 is 0.30 from the asked 0.6" in far.why_thin
    close = {("layer", 0.3, "sft+l2", 0.2): 90.0, ("width", 0.3, "sft+l2", 0.2): 89.5}
    tie = advise.advise(table(close, spread=1.0), 0.3).iloc[0]
    assert tie.thin and "includes 0" in tie.why_thin and tie.lead_ci_low < 0 < tie.lead_ci_high
    alone = advise.advise(table({("layer", 0.3, "sft+l2", 0.2): 90.0}), 0.3).iloc[0]
    assert alone.thin and "nothing else within budget" in alone.why_thin


def test_random_baselines_and_other_architectures_are_not_candidates():
    pts = {**crossing(), ("width-random", 0.3, "sft+l2", 0.2): 99.0}
    df = pd.concat([table(pts), table(crossing("width", "layer"), arch="toy-bunny")])
    adv = advise.advise(df, 0.3).set_index("arch")
    assert adv.loc["toy-llava", "method"] == "layer" and adv.loc["toy-bunny", "method"] == "width"
    assert list(advise.advise(df, 0.3, arch="toy-bunny").arch) == ["toy-bunny"]


@pytest.mark.parametrize("kwargs, message", [
    ({"ratio": 0}, "ratio must be in (0, 1)"),
    ({"ratio": 1.5}, "ratio must be in (0, 1)"),
    ({"ratio": "abc"}, "ratio must be a number"),
    ({"ratio": 0.3, "data_fraction": 0}, "data fraction must be in (0, 1]"),
    ({"ratio": 0.3, "budget": "cheap"}, "unknown budget 'cheap'"),
    ({"ratio": 0.3, "arch": "toy-nope"}, "no evaluations of architecture 'toy-nope'"),
])
def test_bad_queries_raise_one_clear_error(kwargs, message):
    with pytest.raises(StudyError, match=message.replace("(", r"\(").replace(")", r"\)")
                       .replace("[", r"\[").replace("]", r"\]")):
        advise.advise(table(crossing()), **kwargs)


def test_empty_or_useless_tables_raise():
    with pytest.raises(StudyError, match="results table is empty"):
        advise.advise(pd.DataFrame(), 0.3)
    with pytest.raises(StudyError, match="no evaluated pruned models"):
        advise.advise(table({}), 0.3)  # the teacher only


def test_the_book_grid_degrades_to_an_empty_table():
    ev = evidence.evaluations(table(crossing()))
    grid = advise.advice_table(ev)
    assert len(grid) == len(advise.GRID_RATIOS) * len(advise.BUDGETS)
    assert list(grid[grid.budget == "full"].method) == ["layer", "layer", "width", "width"]
    view = advise.decision_table(grid)
    assert view.evidence[view.budget == "none"].str.startswith("thin: nothing").all()
    assert advise.advice_table(evidence.evaluations(pd.DataFrame())).empty


def write_table(path, df):
    path.write_text("".join(json.dumps(r) + "\n" for r in df.to_dict("records")))
    return str(path)


def test_cli_prints_an_answer_per_architecture(tmp_path, capsys):
    path = write_table(tmp_path / "results.jsonl", table(crossing()))
    assert cli.main(["advise", "--ratio", "0.6", "--data-fraction", "0.2", "--table", path]) == 0
    out = capsys.readouterr().out
    assert out.startswith("toy-llava: ratio 0.6, 20% of the data, budget full")
    assert "use:       widthwise pruning" in out and "evidence:  ok (3 seeds" in out


@pytest.mark.parametrize("argv, message", [
    (["--ratio", "0.3", "--table", "{missing}"], "results table not found"),
    (["--ratio", "0.3", "--table", "{empty}"], "the results table is empty"),
    (["--ratio", "0.3", "--table", "{garbage}"], "is not a JSON Lines results table"),
    (["--ratio", "1.5", "--table", "{good}"], "argument --ratio: ratio must be in (0, 1)"),
    (["--ratio", "0.3", "--budget", "lots", "--table", "{good}"], "argument --budget"),
])
def test_cli_bad_input_is_one_line_and_exit_2(tmp_path, capsys, argv, message):
    paths = {"missing": str(tmp_path / "nope.jsonl"),
             "empty": write_table(tmp_path / "empty.jsonl", pd.DataFrame()),
             "garbage": str(tmp_path / "garbage.jsonl"),
             "good": write_table(tmp_path / "good.jsonl", table(crossing()))}
    (tmp_path / "garbage.jsonl").write_text("not json\n")
    argv = [a.format(**paths) for a in argv]
    try:
        code = cli.main(["advise", *argv])
    except SystemExit as exc:  # argparse errors exit from parse_args
        code = exc.code
    err = capsys.readouterr().err
    assert code == 2 and err.count("\n") == 1 and err.startswith("studylib: ")
    assert message in err
