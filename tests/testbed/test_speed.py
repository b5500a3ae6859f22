"""What a teacher's retrain is expected to cost on this machine's kind."""

import pytest

from studylib import machine
from studylib.testbed import speed

SUMMARY = {"recipe": {"dtype": "bfloat16"}, "wall_time_s": 3600.0,
           "machine": {"kind": "AVX512-bf16"},
           "stage_wall_time_s": {"align": 100.0, "binding": 100.0, "lookup": 100.0,
                                 "instruct": 3000.0}}


@pytest.mark.parametrize("here, full", [("AVX512-bf16", "60 min"), ("AVX2", "5.7 h")])
def test_the_recorded_time_is_scaled_by_the_dtype_cost_here(monkeypatch, here, full):
    monkeypatch.setattr(machine, "kind", lambda: here)
    text = speed.expected_time(SUMMARY)
    assert text.startswith(f"~{full} in full") and "estimated" not in text


def test_an_unmeasured_kind_borrows_a_measured_one_and_says_so(monkeypatch):
    monkeypatch.setattr(machine, "kind", lambda: "DEFAULT")
    assert speed.dtype_cost("DEFAULT", "bfloat16") == (speed.DTYPE_COST["AVX2"]["bfloat16"],
                                                       False)
    assert "not measured: estimated" in speed.expected_time(SUMMARY)


def test_float32_costs_the_same_everywhere():
    assert {c["float32"] for c in speed.DTYPE_COST.values()} == {1.0}
