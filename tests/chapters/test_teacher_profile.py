"""Chapter 00's profile of a teacher: both formulations, the shuffle control, and each
benchmark as a multiple of its guesser beside the paper's models."""

import matplotlib.pyplot as plt
import pandas as pd
import pytest

from studylib.analysis import paper
from studylib.chapters import teacher_profile, testbed
from studylib.study import grid

CHANCE = {"GQA": 25.0, "SQA": 25.0, "POPE": 50.0, "MME-P": 750.0, "MME-C": 300.0, "MMMU": 25.0}
TEACHER = {"GQA": 60.0, "SQA": 24.0, "POPE": 85.0, "MME-P": 600.0, "MME-C": 500.0, "MMMU": 45.0}
SHUFFLED = {"GQA": 30.0, "SQA": 25.0, "POPE": 50.0, "MME-P": 700.0, "MME-C": 300.0, "MMMU": 40.0}


def _rows(model, scores, method="none", metric="score"):
    return [{"model": model, "benchmark": b, "metric": metric, "value": v, "ci_low": v - 2,
             "ci_high": v + 2, "n": 100, "method": method, "ratio": 0.0}
            for b, v in scores.items()]


def make_run():
    rows = (_rows("toy-x", TEACHER) + _rows("chance", CHANCE)
            + _rows("toy-x", SHUFFLED, method=grid.IMAGE_SHUFFLE)
            + _rows("toy-x", {"SQA": 22.0, "MMMU": 23.0}, metric="letter")
            + _rows("toy-x", {"SQA": 24.0, "MMMU": 45.0}, metric="cloze"))
    rows.append({"model": "toy-x", "benchmark": testbed.OPTION_LOOKUP, "metric": "accuracy",
                 "value": 31.0, "n": 200, "method": "none", "ratio": 0.0})
    return pd.DataFrame(rows)


def test_the_formulation_table_shows_both_ways_and_the_probe():
    table = teacher_profile.formulation_table(make_run(), "toy-x").set_index("benchmark")
    letter, cloze = (teacher_profile.FORMULATION_NAMES[f] for f in ("letter", "cloze"))
    assert table.loc["MMMU", letter] == 23.0 and table.loc["MMMU", cloze] == 45.0
    assert table.loc["MMMU", "cloze 95% CI"] == "[43.0, 47.0]"
    assert (table.loc[["SQA", "MMMU"], "headline"] == "cloze").all()
    probe = table.loc[f"{testbed.OPTION_LOOKUP} (text only)"]
    assert probe[letter] == 31.0 and probe.chance == 25.0 and pd.isna(probe[cloze])


def test_the_shuffle_table_flags_what_survives_without_the_image():
    table = teacher_profile.shuffle_table(make_run(), "toy-x").set_index("benchmark")
    assert table.loc["GQA", "edge kept (%)"] == pytest.approx(100 * 5 / 35)
    assert table.loc["MMMU", "edge kept (%)"] == pytest.approx(75.0)
    flags = table["answerable without the image"]
    assert flags["MMMU"] == "YES" and flags["GQA"] == "no" and flags["POPE"] == "no"
    assert flags["SQA"] == flags["MME-P"] == "– (no edge)"  # at or below the guesser


def test_the_profile_divides_by_each_side_s_own_guesser():
    prof = teacher_profile.profile(make_run(), "toy-x", "toy-llava")
    ours = prof[prof.model == "ours: toy-llava"].set_index("benchmark").multiple
    assert ours["MME-P"] == pytest.approx(600 / 750) and ours["GQA"] == pytest.approx(60 / 25)
    guessers = paper.benchmark_guessers()
    assert "GQA" not in guessers and guessers["SQA"] > 25  # ScienceQA has 2-5 options
    llava = prof[prof.model == "paper: LLaVA-7B"].set_index("benchmark").multiple
    assert llava["SQA"] == pytest.approx(paper.paper_unpruned("LLaVA-v1.5-7B")["SQA"]
                                         / guessers["SQA"])
    assert {m for m in prof.model if m.startswith("paper")} == {
        f"paper: {paper.SHORT_PAPER_NAME[m]}" for m in paper.PAPER_MODELS}
    fig = teacher_profile.fig_profile(make_run(), "toy-x", "toy-llava")
    plt.close(fig)
    text = teacher_profile.takeaway(make_run(), "toy-x")
    assert "MMMU: letter 23.0, cloze 45.0" in text and "Below the guesser: SQA, MME-P" in text
