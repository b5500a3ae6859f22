"""The results table: atomic, append-only, one copy per run id, safe under parallel writers."""

import multiprocessing as mp

from studylib import results


def test_run_id_is_stable_and_order_free():
    assert results.run_id({"a": 1, "b": [1, 2]}) == results.run_id({"b": [1, 2], "a": 1})
    assert results.run_id({"a": 1}) != results.run_id({"a": 2})


def test_record_skips_a_recorded_run(tmp_path):
    table = results.ResultsTable(tmp_path / "r.jsonl")
    assert table.record("r1", [{"benchmark": "GQA", "value": 1.0}])
    assert not table.record("r1", [{"benchmark": "GQA", "value": 2.0}])
    assert table.record("r2", [{"benchmark": "GQA", "value": 3.0}, {"benchmark": "SQA"}])
    rows = table.rows()
    assert [r["run_id"] for r in rows] == ["r1", "r2", "r2"] and rows[0]["value"] == 1.0
    assert {"git_sha", "timestamp"} <= set(rows[0])


def _writer(path, k):
    results.ResultsTable(path).record(f"run{k}", [{"k": k, "i": i} for i in range(20)])


def test_parallel_writers_lose_nothing(tmp_path):
    path = tmp_path / "r.jsonl"
    procs = [mp.get_context("fork").Process(target=_writer, args=(path, k)) for k in range(6)]
    for p in procs:
        p.start()
    for p in procs:
        p.join()
    rows = results.ResultsTable(path).rows()
    assert len(rows) == 6 * 20 and len({r["run_id"] for r in rows}) == 6


def test_atomic_write_leaves_no_temp_files(tmp_path):
    results.atomic_write_text(tmp_path / "x.txt", "hello")
    assert [p.name for p in tmp_path.iterdir()] == ["x.txt"]


def test_an_empty_table_is_a_frame_with_the_columns_every_row_has(tmp_path):
    # Chapter 05 on a fresh clone (exercise 05a before any other chapter ran) selected
    # `rows[rows.study.isin(...)]` from a frame without columns and failed.
    frame = results.ResultsTable(tmp_path / "missing.jsonl").frame()
    assert frame.empty and {"run_id", "study", "arch", "metric", "value"} <= set(frame.columns)
    assert frame[frame.study.isin(["01_pruning_comparison"])].empty
