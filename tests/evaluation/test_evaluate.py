"""`studylib eval` end to end on a tiny random model, and its bad-input contract."""

import json
import subprocess
import sys

import pytest

from studylib import cli, models
from studylib.evaluation import evaluate
from studylib.results import ResultsTable
from studylib.testbed import shapes, suite


def test_eval_cli_end_to_end_writes_tidy_rows(micro_checkpoint, tmp_path, capsys):
    out = tmp_path / "results.jsonl"
    code = cli.main(["eval", "--model", str(micro_checkpoint), "--out", str(out),
                     "--limit", "24", "--seed", "1"])
    assert code == 0
    printed = capsys.readouterr().out
    assert "AVG" in printed and "MME-P" in printed
    rows = ResultsTable(out).rows()
    benches = {(r["benchmark"], r["metric"]) for r in rows}
    assert benches == ({(b, "score") for b in shapes.BENCHMARKS} | {("POPE", "accuracy"),
                                                                      ("AVG", "paper")}
                       | {(b, f) for b in evaluate.MULTIPLE_CHOICE for f in evaluate.FORMULATIONS})
    for r in rows:
        assert {"value", "n", "ci_low", "ci_high", "model", "seed", "git_sha", "timestamp",
                "run_id"} <= set(r)
        assert r["seed"] == 1
    # the same run again is skipped, not duplicated
    assert cli.main(["eval", "--model", str(micro_checkpoint), "--out", str(out),
                     "--limit", "24", "--seed", "1"]) == 0
    assert len(ResultsTable(out).rows()) == len(rows)
    assert "already recorded" in capsys.readouterr().out


def test_limit_is_a_stratified_seeded_subset():
    items = suite.benchmark("MME-P")
    a = evaluate.select(items, 40, seed=0)
    assert a == evaluate.select(items, 40, seed=0) != evaluate.select(items, 40, seed=1)
    assert {it.subset for it in a} == set(shapes.MME_P_SUBTASKS)  # every subtask present
    groups = {}
    for it in a:
        groups.setdefault(it.group, []).append(it.answer)
    assert all(sorted(g) == ["no", "yes"] for g in groups.values())  # pairs kept whole


def test_generation_is_batch_invariant(micro_checkpoint):
    model, processor = models.load(micro_checkpoint)
    items = suite.benchmark("GQA")[:10]
    one = evaluate.generate_answers(model, processor, items, batch_size=1, progress=False)
    many = evaluate.generate_answers(model, processor, items, batch_size=10, progress=False)
    assert one == many


@pytest.mark.parametrize("args,message", [
    (["--benchmarks", "VQAv2"], "unknown benchmark 'VQAv2'"),
    (["--limit", "0"], "positive integer"),
    (["--limit", "ten"], "positive integer"),
    (["--seed", "-3"], "seed must be >= 0"),
])
def test_eval_bad_arguments_one_line_exit_2(micro_checkpoint, tmp_path, args, message):
    out = tmp_path / "r.jsonl"
    proc = subprocess.run([sys.executable, "-m", "studylib.cli", "eval", "--model",
                           str(micro_checkpoint), "--out", str(out), *args],
                          capture_output=True, text=True)
    assert proc.returncode == 2
    assert proc.stderr.strip().count("\n") == 0 and message in proc.stderr
    assert not out.exists()


def test_eval_missing_or_corrupt_model(tmp_path, micro_checkpoint, capsys):
    out = tmp_path / "r.jsonl"
    assert cli.main(["eval", "--model", str(tmp_path / "nope"), "--out", str(out)]) == 2
    assert "no checkpoint at" in capsys.readouterr().err
    broken = tmp_path / "broken"
    broken.mkdir()
    for f in micro_checkpoint.iterdir():
        (broken / f.name).write_bytes(f.read_bytes())
    (broken / "model.safetensors").write_bytes(b"not a safetensors file")
    assert cli.main(["eval", "--model", str(broken), "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("studylib: cannot load checkpoint") and err.count("\n") == 1
    assert not out.exists()
    (broken / "config.json").write_text(json.dumps({"model_type": "no-such-arch"}))
    assert cli.main(["eval", "--model", str(broken), "--out", str(out)]) == 2
    assert not out.exists()
