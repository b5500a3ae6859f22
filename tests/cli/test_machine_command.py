"""`studylib machine`: the kind, the teachers' recording machine, and bad input refused."""

import json
from pathlib import Path

import pytest

from studylib import cli, machine
from tests.cli.test_bad_inputs import assert_refused, run

TEACHER = Path(__file__).resolve().parents[2] / "teachers" / "toy-llava"


def test_it_names_the_kind_and_how_the_teacher_is_checked_here(capsys):
    code, out, _ = run(["machine", "--teachers", TEACHER], capsys)
    assert code == 0
    assert f"kind:   {machine.kind()}" in out
    summary = json.loads((TEACHER / "training_summary.json").read_text())
    same = machine.is_recording_machine(summary["machine"])
    assert ("sha256, bit for bit" in out) is same and ("within tolerance" in out) is not same
    assert "retrain here: ~" in out and f"in {summary['recipe']['dtype']}" in out


def test_a_teacher_without_a_recorded_machine_is_refused_before_anything_prints(tmp_path,
                                                                               capsys):
    summary = json.loads((TEACHER / "training_summary.json").read_text())
    del summary["machine"]
    (tmp_path / "training_summary.json").write_text(json.dumps(summary))
    assert_refused(*run(["machine", "--teachers", tmp_path], capsys), "records no machine")
    assert_refused(*run(["machine", "--teachers", tmp_path / "nothing"], capsys),
                   "no training_summary.json")


@pytest.mark.slow
def test_bench_times_both_dtypes(capsys):
    assert cli.main(["--threads", "1", "machine", "--bench", "--rounds", "1"]) == 0
    out = capsys.readouterr().out
    assert "float32   median" in out and "bfloat16  median" in out
    assert "bfloat16 / float32 = " in out
