"""The chapter scaffold: params from defaults + overrides, and a recorded run is read back,
never computed again."""

import warnings

import pytest

from studylib.errors import StudyError
from studylib.evaluation.chance import NearChanceWarning
from studylib.study.chapter import open_chapter
from studylib.study.params import TestbedParams


def test_rows_are_computed_once_then_reused(tmp_path):
    overrides = {"results": str(tmp_path / "results.jsonl"), "checkpoint": str(tmp_path),
                 "limit": 5}
    calls = []

    def compute(P, extra):
        calls.append((P.limit, extra))
        return [{"model": P.model, "benchmark": "GQA", "metric": "score", "value": 1.0},
                {"model": "chance", "benchmark": "GQA", "metric": "score", "value": 0.5,
                 "method": "random"}]

    ch = open_chapter("00_testbed", overrides)
    assert ch.params.limit == 5 and ch.params.chance_draws == TestbedParams().chance_draws and not ch.recorded
    first = ch.rows(compute, "x")
    assert calls == [(5, "x")] and len(first) == 2
    # the run's shared columns fill in what a row does not say; a row's own keys win
    assert set(first.method) == {"none", "random"} and (first.run_id == ch.run_id).all()
    assert {"wall_s", "study", "torch"} <= set(first.columns)

    again = open_chapter("00_testbed", overrides)
    assert again.recorded and again.run_id == ch.run_id
    second = again.rows(compute, "x")
    assert calls == [(5, "x")]  # not recomputed
    assert second.value.tolist() == first.value.tolist()

    other = open_chapter("00_testbed", {**overrides, "limit": 6})
    assert not other.recorded and other.run_id != ch.run_id


def test_bad_overrides_stop_the_chapter():
    with pytest.raises(StudyError, match="unknown key 'ratio'"):
        open_chapter("01_pruning_comparison", {"ratio": 0.3})


def _run(teacher_gqa, pruned_gqa=1.0):
    """A run's rows: teacher, a pruned student (near chance, as pruned models may be) and
    the guesser, on GQA and POPE."""
    import pandas as pd

    rows = [{"model": "toy-x", "method": "none", "recipe": "none", "benchmark": "GQA",
             "metric": "score", "value": teacher_gqa},
            {"model": "toy-x", "method": "none", "recipe": "none", "benchmark": "POPE",
             "metric": "score", "value": 85.0},
            {"model": "toy-x", "method": "none", "recipe": "none", "benchmark": "POPE",
             "metric": "accuracy", "value": 1.0},  # not the headline metric
            {"model": "toy-x", "method": "layer", "recipe": "none", "benchmark": "POPE",
             "metric": "score", "value": 1.0},
            {"model": "toy-x", "method": "none", "recipe": "sft", "benchmark": "GQA",
             "metric": "score", "value": pruned_gqa}]
    rows += [{"model": "chance", "method": "none", "recipe": "none", "benchmark": b,
              "metric": "score", "value": v} for b, v in (("GQA", 25.0), ("POPE", 50.0))]
    return pd.DataFrame(rows)


def test_only_the_teachers_own_scores_are_checked_against_the_runs_chance():
    from studylib.study.chapter import teacher_scores, warn_if_near_chance

    assert teacher_scores(_run(60.0), "toy-x") == {"GQA": 60.0, "POPE": 85.0}
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert warn_if_near_chance(_run(60.0), "toy-x") == {}
    with pytest.warns(NearChanceWarning, match="toy-x: GQA 30.0 is near or below chance 25.0"):
        assert set(warn_if_near_chance(_run(30.0), "toy-x")) == {"GQA"}
    assert warn_if_near_chance(_run(30.0).iloc[:0], "toy-x") == {}  # no teacher, no warning


def test_every_chapter_warns_about_a_near_chance_teacher(tmp_path):
    overrides = {"results": str(tmp_path / "results.jsonl"), "checkpoint": str(tmp_path)}

    def compute(P):
        return [{"model": P.model, "benchmark": "SQA", "metric": "score", "value": 26.0}]

    for _ in range(2):  # computed, then read back: both warn
        with pytest.warns(NearChanceWarning, match="SQA 26.0"):
            open_chapter("01_pruning_comparison", overrides).rows(compute)


def test_the_warning_names_the_line_that_asked_for_the_rows(tmp_path):
    overrides = {"results": str(tmp_path / "results.jsonl"), "checkpoint": str(tmp_path)}
    ch = open_chapter("01_pruning_comparison", overrides)
    with pytest.warns(NearChanceWarning) as caught:
        ch.rows(lambda P: [{"model": P.model, "benchmark": "SQA", "metric": "score",
                            "value": 26.0}])
    assert caught[0].filename == __file__


def test_the_warning_is_also_shown_as_an_admonition_for_the_page(tmp_path, monkeypatch):
    """One check, two outputs: the NearChanceWarning for the terminal and a `{warning}` the
    book hoists to the top of the page (`pages.VALIDITY` marks it), naming value, chance
    level and what it means for this chapter."""
    import IPython.display

    from studylib.study.chapter import NEAR_CHANCE_MEANS
    from studylib.study.pages import VALIDITY

    shown = []
    monkeypatch.setattr(IPython.display, "display",
                        lambda data, raw=False, metadata=None: shown.append((data, metadata)))
    overrides = {"results": str(tmp_path / "results.jsonl"), "checkpoint": str(tmp_path)}
    ch = open_chapter("01_pruning_comparison", overrides)
    with pytest.warns(NearChanceWarning, match="SQA 26.0"):
        ch.rows(lambda P: [{"model": P.model, "benchmark": "SQA", "metric": "score",
                            "value": 26.0}])
    [(data, metadata)] = shown
    text = data["text/markdown"]
    assert metadata == {VALIDITY: [ch.params.model]}
    assert text.startswith(f"```{{admonition}} {ch.params.model} is near chance on SQA\n"
                           ":class: warning\n")
    assert "SQA 26.0 is near or below chance" in text
    assert NEAR_CHANCE_MEANS["01_pruning_comparison"] in text
    shown.clear()
    with warnings.catch_warnings():  # a teacher well above chance: neither output
        warnings.simplefilter("error")
        open_chapter("02_sft_recovery", overrides).rows(
            lambda P: [{"model": P.model, "benchmark": "SQA", "metric": "score",
                        "value": 90.0}])
    assert shown == []


def test_every_chapter_says_what_a_teacher_near_chance_means_for_it():
    from studylib.study.chapter import NEAR_CHANCE_MEANS
    from studylib.study.params import STUDIES

    assert set(NEAR_CHANCE_MEANS) == {"default", *STUDIES}
