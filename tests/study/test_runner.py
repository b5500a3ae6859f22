"""`studylib study`: runs execute into book/runs, failures are isolated and reported,
recorded runs are skipped, and a kill at any moment leaves nothing half-done."""

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from studylib.chapters import testbed
from studylib.results import ResultsTable

REPO = Path(__file__).resolve().parents[2]
NOTEBOOK = REPO / "notebooks" / "00_testbed.ipynb"

pytestmark = pytest.mark.slow


def study_file(path: Path, runs: list[dict], **defaults) -> Path:
    import yaml

    path.write_text(yaml.safe_dump({"notebook": str(NOTEBOOK),
                                    "defaults": {"limit": 6, "chance_draws": 2, **defaults},
                                    "runs": runs}))
    return path


def study(*args: str, **kw) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "studylib.cli", "study", *args],
                          capture_output=True, text=True, cwd=REPO, **kw)


def test_failed_run_is_reported_others_complete_and_rerun_skips(scratch_book, tmp_path, micro_checkpoint):
    book, table = scratch_book(tmp_path), tmp_path / "results.jsonl"
    good = study_file(tmp_path / "good.yaml", [{"key": "good", "model": "micro"}],
                      checkpoint=str(micro_checkpoint))
    broken = tmp_path / "broken-checkpoint"  # it looks like one (the runner's check passes)
    broken.mkdir()  # but its weights do not load: the run fails in its kernel
    (broken / "config.json").write_text((micro_checkpoint / "config.json").read_text())
    (broken / "model.safetensors").write_bytes(b"not safetensors")
    bad = study_file(tmp_path / "bad.yaml", [{"key": "bad", "model": "micro"}],
                     checkpoint=str(broken))
    common = ["--book", str(book), "--results", str(table), "--no-build"]
    proc = study(str(good), str(bad), *common, "--workers", "2", timeout=240)
    assert proc.returncode == 1, proc.stdout + proc.stderr
    runs = book / "runs" / "00_testbed"
    assert "[ok    ] 00_testbed/micro__good" in proc.stdout
    failed = runs / "micro__bad.failed.ipynb"
    assert "run 00_testbed/micro__bad failed: " in proc.stderr
    assert "cannot load checkpoint" in proc.stderr and str(failed) in proc.stderr
    assert failed.is_file() and (runs / "micro__bad.log").is_file()
    assert not (runs / "micro__bad.ipynb").exists()
    executed = runs / "micro__good.ipynb"
    assert executed.is_file()
    assert not list(runs.glob(".*.tmp.ipynb"))
    # two workers: each kernel got one torch thread, injected as a parameter
    injected = [c for c in json.loads(executed.read_text())["cells"]
                if "injected-parameters" in c["metadata"].get("tags", [])]
    values: dict = {}
    exec("".join(injected[0]["source"]), {}, values)
    assert values["overrides"]["threads"] == 1
    rows = ResultsTable(table).frame()
    assert set(rows.key) == {"good"} and rows.run_id.nunique() == 1
    assert set(rows[rows.model == "micro"].benchmark) == {"GQA", "SQA", "POPE", "MME-P",
                                                          "MME-C", "MMMU", "AVG",
                                                          testbed.OPTION_LOOKUP}
    assert (rows.model == "chance").any() and rows.wall_s.gt(0).all()
    # rerun: the recorded run is skipped, nothing is executed again
    mtime = executed.stat().st_mtime
    again = study(str(good), *common, timeout=120)
    assert again.returncode == 0, again.stderr
    assert "1 already recorded, 0 to execute" in again.stdout
    assert executed.stat().st_mtime == mtime
    assert len(ResultsTable(table).frame()) == len(rows)


@pytest.mark.parametrize("check", [True, False])
def test_missing_checkpoint_refuses_the_study_before_any_run(scratch_book, tmp_path, check):
    """`--check` too: a run whose checkpoint is missing (or holds no weights) is one line."""
    book, table = scratch_book(tmp_path), tmp_path / "results.jsonl"
    empty = tmp_path / "empty"
    empty.mkdir()
    (empty / "config.json").write_text("{}")
    for where, message in ((tmp_path / "nowhere", "no checkpoint at"),
                           (empty, "not a checkpoint (no weights")):
        spec = study_file(tmp_path / "missing.yaml", [{"key": "m", "model": "micro"}],
                          checkpoint=str(where))
        proc = study(str(spec), "--book", str(book), "--results", str(table), "--no-build",
                     *(["--check"] if check else []), timeout=120)
        assert proc.returncode == 2, proc.stderr
        assert f"run 00_testbed/micro__m: {message}" in proc.stderr
        assert proc.stderr.count("\n") == 1 and not (book / "runs" / "00_testbed").exists()


def test_kill_at_any_moment_then_rerun_completes(scratch_book, tmp_path, micro_checkpoint):
    book, table = scratch_book(tmp_path), tmp_path / "results.jsonl"
    spec = study_file(tmp_path / "kill.yaml", [{"key": "kill", "model": "micro"}],
                      checkpoint=str(micro_checkpoint))
    args = [sys.executable, "-m", "studylib.cli", "study", str(spec), "--book", str(book),
            "--results", str(table), "--no-build"]
    proc = subprocess.Popen(args, cwd=REPO, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL, start_new_session=True)
    runs = book / "runs" / "00_testbed"
    deadline = time.time() + 60
    while time.time() < deadline and not list(runs.glob(".micro__kill.*.tmp.ipynb")):
        time.sleep(0.2)
    assert list(runs.glob(".micro__kill.*.tmp.ipynb")), "papermill never started"
    time.sleep(2)  # mid-run: the kernel is executing
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    assert not (runs / "micro__kill.ipynb").exists()  # no half-executed chapter
    assert ResultsTable(table).frame().empty  # no partial rows
    done = study(str(spec), "--book", str(book), "--results", str(table), "--no-build",
                 timeout=240)
    assert done.returncode == 0, done.stdout + done.stderr
    assert (runs / "micro__kill.ipynb").is_file()
    assert not list(runs.glob(".*.tmp.ipynb"))  # the killed run's temp file is gone
    assert ResultsTable(table).frame().run_id.nunique() == 1
