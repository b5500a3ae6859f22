"""The chapter scaffold: params from defaults + overrides, and a recorded run is read back,
never computed again."""

import pytest

from studylib.errors import StudyError
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
