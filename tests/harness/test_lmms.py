"""lmms-eval export, results import and the cross-check's contract, in the core environment.

The run of lmms-eval itself (plugin + exported tasks) is `make lmms-check`: it needs the
separate lmms-eval environment (tests_lmms/ and `studylib lmms-check`).
"""

import json
import random
import stat
import sys

import numpy as np
import pandas as pd
import pytest
import yaml

from studylib import cli
from studylib.analysis.paper import paper_table
from studylib.errors import StudyError
from studylib.evaluation import choice, evaluate, metrics
from studylib.harness import lmms, tasks
from studylib.results import ResultsTable
from studylib.testbed import shapes, suite


class _TaskLoader(yaml.SafeLoader):
    """Reads lmms-eval task YAMLs: `!function utils.x` becomes the string 'utils.x'."""


_TaskLoader.add_constructor("!function", lambda loader, node: loader.construct_scalar(node))


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    return lmms.export_tasks(tmp_path_factory.mktemp("lmms") / "tasks", limit=30, seed=3)


def test_export_holds_the_items_studylib_eval_scores(exported):
    manifest = json.loads((exported / "manifest.json").read_text())
    assert manifest["tasks"] == [tasks.TASKS[b] for b in shapes.BENCHMARKS]
    for bench in shapes.BENCHMARKS:
        items = evaluate.select(suite.benchmark(bench), 30, seed=3)
        docs = [json.loads(line) for line in
                (exported / f"{tasks.TASKS[bench]}.jsonl").read_text().splitlines()]
        assert [d["id"] for d in docs] == [it.id for it in items]
        assert manifest["items"][bench] == len(items)
        cloze = bench in evaluate.MULTIPLE_CHOICE
        for doc, it in list(zip(docs, items, strict=True))[:5]:
            if cloze:  # the question without its lettered options; the options as choices
                assert tasks.doc_to_text(doc, {}) == choice.cloze_question(it)
                assert "Options:" not in doc["prompt"]
                assert doc["options"] == list(it.options) and len(doc["options"]) == 4
            else:
                assert tasks.doc_to_text(doc, {}) == it.prompt
            (image,) = tasks.doc_to_visual(doc, exported)
            assert np.array_equal(np.asarray(image), np.asarray(it.image))  # PNG is lossless
        config = yaml.load((exported / f"{tasks.TASKS[bench]}.yaml").read_text(),
                           Loader=_TaskLoader)
        assert config["dataset_kwargs"]["data_files"]["test"] == str(
            exported / f"{tasks.TASKS[bench]}.jsonl")
        if cloze:  # each continuation is exactly the option text: no delimiter
            assert config["output_type"] == "multiple_choice"
            assert config["doc_to_choice"] == "options" and config["target_delimiter"] == ""
            assert config["process_results"] == "utils.process_choice_results"
            assert "generation_kwargs" not in config
        else:
            assert config["output_type"] == "generate_until"
            assert config["generation_kwargs"]["max_new_tokens"] == evaluate.MAX_NEW_TOKENS[bench]
            assert config["process_results"] == "utils.process_results"
        names = [m["metric"] for m in config["metric_list"]]
        assert names == {"POPE": ["score", "accuracy"], "SQA": ["score", "cloze"],
                         "MMMU": ["score", "cloze"]}.get(bench, ["score"])
    group = yaml.safe_load((exported / "shapesworld.yaml").read_text())
    assert group["task"] == manifest["tasks"]


def _doc(it):
    return {"benchmark": it.benchmark, "id": it.id, "subset": it.subset, "group": it.group,
            "answer": it.answer, "options": list(it.options)}


def _aggregate(results):
    """What lmms-eval does with process_results' records: each metric's aggregation."""
    records: dict[str, list] = {}
    for result in results:
        for metric, record in result.items():
            records.setdefault(metric, []).append(record)
    return {m: (tasks.aggregate_accuracy if m == "accuracy" else tasks.aggregate_score)(r)
            for m, r in records.items()}


@pytest.mark.parametrize("bench", shapes.BENCHMARKS)
def test_task_metrics_equal_studylib_scores(bench):
    """process_results + aggregation (what lmms-eval runs) == evaluate.score, on noisy answers
    (generation) or on random log-likelihoods (multiple choice, scored by the likeliest)."""
    items = evaluate.select(suite.benchmark(bench), 80, seed=0)
    rng = random.Random(bench)
    if bench in evaluate.MULTIPLE_CHOICE:
        lls = [[(-rng.uniform(0, 20), rng.random() < 0.5) for _ in it.options] for it in items]
        preds = [shapes.LETTERS[max(range(4), key=lambda k, ll=ll: ll[k][0])] for ll in lls]
        got = _aggregate(tasks.process_choice_results(_doc(it), ll)
                         for it, ll in zip(items, lls, strict=True))
    else:
        pool = ["yes", "no", "maybe", "A", "b.", "(C)", "red", "two", ""]
        pool += [it.answer for it in items]
        preds = [it.answer if rng.random() < 0.5 else rng.choice(pool) for it in items]
        got = _aggregate(tasks.process_results(_doc(it), [f" {p} "])
                         for it, p in zip(items, preds, strict=True))
    _, ours = evaluate.score(bench, items, preds, n_boot=0)
    ours = ours.set_index("metric")["value"]
    assert set(got) == set(tasks.task_metrics(bench))
    for metric, value in got.items():  # the formulation's row is the score in it
        assert value == pytest.approx(ours["score" if metric == "cloze" else metric])


def test_choice_results_pick_the_likeliest_option():
    """Log-likelihoods, higher is likelier: the argmax's letter (lmms-eval's built-in
    multiple-choice scoring takes the argmin, for its models' losses)."""
    (it,) = evaluate.select(suite.benchmark("SQA"), 1, seed=0)[:1]
    doc = _doc(it)
    for best in range(4):
        lls = [(-5.0, False)] * 4
        lls[best] = (-0.5, True)
        out = tasks.process_choice_results(doc, lls)
        assert out["score"]["prediction"] == shapes.LETTERS[best]
        assert out["score"] is out["cloze"]
        as_text = tasks.process_choice_results(doc, [str(ll) for ll in lls])  # lmms-eval 0.7.3
        assert as_text["score"]["prediction"] == shapes.LETTERS[best]
    assert tasks.process_choice_results(doc, [(-1.0, False)] * 4)["score"]["prediction"] == "A"


def test_the_comparison_is_of_the_headline_formulation():
    """The check compares the cloze letters and scores for SQA/MMMU (lmms-eval asks no
    letters), and a score lmms-eval lacks is NaN, which fails."""
    items = pd.DataFrame({"benchmark": ["SQA"] * 3 + ["GQA"] * 2,
                          "id": ["s0", "s1", "s2", "g0", "g1"],
                          "prediction": ["A", "B", "C", "red", "two"],
                          "generated": ["D", "D", "D", "red", "two"]})
    scores = pd.DataFrame({"benchmark": ["SQA", "SQA", "SQA", "GQA"],
                           "metric": ["score", "letter", "cloze", "score"],
                           "value": [40.0, 25.0, 40.0, 50.0], "n": [3, 3, 3, 2]})
    report = evaluate.EvalReport(items, scores, wall_time=0.0, seed=0)
    theirs = {("SQA", "score"): 40.0, ("SQA", "cloze"): 40.2, ("GQA", "score"): 50.0}
    answers = {"s0": "A", "s1": "B", "s2": "D", "g0": "red", "g1": "two"}
    table = lmms.compare(report, theirs, answers)
    assert list(zip(table.benchmark, table.metric, strict=True)) == [
        ("SQA", "score"), ("SQA", "cloze"), ("GQA", "score")]
    assert table["diff"].tolist() == pytest.approx([0.0, 0.2, 0.0])
    assert table["answers_differ"].tolist() == [1, 1, 0]  # s2: cloze C, lmms-eval D
    assert lmms.check_passes(table)
    del theirs["SQA", "cloze"]
    assert not lmms.check_passes(lmms.compare(report, theirs, answers))


def _paper_llava_results():
    """An lmms-eval results file for the real benchmarks, with the paper's LLaVA-1.5-7B row."""
    return {"results": {
        "mmmu_val": {"alias": "mmmu_val", "mmmu_acc,none": 0.351},
        "gqa": {"alias": "gqa", "exact_match,none": 0.6198, "exact_match_stderr,none": 0.004},
        "scienceqa_img": {"alias": "scienceqa_img", "exact_match,none": 0.6867},
        "mme": {"alias": "mme", "mme_cognition_score,none": 363.21,
                "mme_perception_score,none": 1511.33},
        "pope": {"alias": "pope", "pope_f1_score,none": 0.8699, "pope_accuracy,none": 0.88},
    }, "n-samples": {"gqa": {"original": 12578, "effective": 12578}}}


def test_import_maps_real_benchmarks_and_computes_the_papers_avg():
    rows = lmms.import_results(_paper_llava_results(), model="llava-1.5-7b")
    got = {(r["benchmark"], r["metric"]): r["value"] for r in rows}
    assert got[("GQA", "score")] == pytest.approx(61.98)
    assert got[("MME-P", "score")] == pytest.approx(1511.33)
    assert got[("POPE", "accuracy")] == pytest.approx(88.0)
    paper = paper_table("table6_pruning_only").iloc[0]
    assert paper["ratio"] == 0 and "LLaVA" in paper["model"]
    assert got[("AVG", "paper")] == pytest.approx(paper["AVG"], abs=0.01)
    assert next(r["n"] for r in rows if r["benchmark"] == "GQA") == 12578


def test_import_without_all_six_has_no_avg_and_unknown_tasks_are_an_error():
    data = _paper_llava_results()
    del data["results"]["pope"]
    rows = lmms.import_results(data, model="m")
    assert "AVG" not in {r["benchmark"] for r in rows}
    with pytest.raises(StudyError, match="none of the known tasks"):
        lmms.import_results({"results": {"textvqa": {"exact_match,none": 0.5}}}, model="m")


def test_import_cli_records_rows_once(tmp_path, capsys):
    out = tmp_path / "run" / "20260101_results.json"
    out.parent.mkdir()
    out.write_text(json.dumps(_paper_llava_results()))
    table = tmp_path / "results.jsonl"
    argv = ["import-lmms", str(out.parent), "--model", "llava-width30", "--table", str(table)]
    assert cli.main(argv) == 0
    rows = ResultsTable(table).rows()
    assert len(rows) == 8 and {r["study"] for r in rows} == {"lmms-eval"}
    assert cli.main(argv) == 0 and len(ResultsTable(table).rows()) == 8
    assert "already recorded" in capsys.readouterr().out


def test_imported_rows_join_the_findings_as_conditions(tmp_path):
    """An unpruned and a pruned import of one arch give AVG-% like the chapters' rows do."""
    from studylib.analysis import evidence

    teacher, student = tmp_path / "t.json", tmp_path / "s.json"
    teacher.write_text(json.dumps(_paper_llava_results()))
    pruned = _paper_llava_results()
    pruned["results"]["gqa"]["exact_match,none"] = 0.55
    student.write_text(json.dumps(pruned))
    table = tmp_path / "results.jsonl"
    assert cli.main(["import-lmms", str(teacher), "--model", "llava", "--arch", "llava-7b",
                     "--table", str(table)]) == 0
    assert cli.main(["import-lmms", str(student), "--model", "llava-w30", "--arch", "llava-7b",
                     "--method", "width", "--ratio", "0.3", "--recipe", "sft+l2",
                     "--data-fraction", "1", "--table", str(table)]) == 0
    ev = evidence.evaluations(ResultsTable(table).frame()).set_index("method")
    assert ev.loc["none", "AVG_pct"] == pytest.approx(100.0)
    assert ev.loc["width", "AVG_pct"] == pytest.approx(
        100 * (62.28 - (61.98 - 55.0) / 6) / 62.28, abs=0.02)


@pytest.mark.parametrize("argv, message", [
    (["export-lmms", "{tmp}/x", "--benchmarks", "VQA"], "unknown benchmark 'VQA'"),
    (["export-lmms", "{tmp}/x", "--limit", "0"], "positive integer"),
    (["import-lmms", "{tmp}/missing.json", "--model", "m"], "not found"),
    (["import-lmms", "{tmp}/bad.json", "--model", "m"], "not an lmms-eval results file"),
])
def test_bad_input_is_one_line_and_exit_2(tmp_path, argv, message, capsys):
    (tmp_path / "bad.json").write_text('{"config": {}}')
    argv = [a.replace("{tmp}", str(tmp_path)) for a in argv]
    with pytest.raises(SystemExit) as exc:
        sys.exit(cli.main(argv))
    assert exc.value.code == 2
    err = capsys.readouterr().err.strip()
    assert message in err and len(err.splitlines()) == 1
    assert not (tmp_path / "x").exists()


def test_export_refuses_a_non_empty_directory_and_leaves_nothing_on_failure(tmp_path,
                                                                            monkeypatch):
    target = tmp_path / "tasks"
    target.mkdir()
    (target / "keep.txt").write_text("mine")
    with pytest.raises(StudyError, match="not empty"):
        lmms.export_tasks(target, limit=5)
    assert [p.name for p in target.iterdir()] == ["keep.txt"]

    def boom(*args, **kwargs):
        raise RuntimeError("disk full")

    monkeypatch.setattr(lmms, "_task_yaml", boom)
    with pytest.raises(RuntimeError):
        lmms.export_tasks(tmp_path / "new", limit=5)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["tasks"]  # no temp dir left


def test_an_lmms_eval_run_without_results_is_an_error(tmp_path, exported):
    """lmms-eval 0.7.3 logs errors and exits 0; no results file must still fail the check."""
    fake = tmp_path / "python"
    fake.write_text("#!/bin/sh\necho 'ERROR | Error during evaluation: boom'\nexit 0\n")
    fake.chmod(fake.stat().st_mode | stat.S_IEXEC)
    with pytest.raises(StudyError, match="boom"):
        lmms.run_lmms_eval("teachers/toy-llava", exported, tmp_path / "out", python=fake)


def test_check_passes_only_within_tolerance():
    table = pd.DataFrame({"diff": [0.0, -0.5, 0.3]})
    assert lmms.check_passes(table)
    assert not lmms.check_passes(table.assign(diff=[0.0, 0.51, 0.0]))
    assert not lmms.check_passes(table.assign(diff=[0.0, float("nan"), 0.0]))  # missing score


def test_lmms_python_missing_is_a_clear_error(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("STUDYLIB_LMMS_PYTHON", str(tmp_path / "nope"))
    with pytest.raises(StudyError, match="make lmms-env"):
        lmms.lmms_python()


def test_core_environment_stays_free_of_lmms_eval_and_torchvision():
    import importlib.util

    assert importlib.util.find_spec("lmms_eval") is None
    assert importlib.util.find_spec("torchvision") is None
    assert metrics.PAPER_KEYS  # the core package imports without them
