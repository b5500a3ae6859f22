"""Writes never lose data: refusals before any work, --overwrite only on studylib's own
directories, atomic replacement that survives kill -9, and tables that keep their mode."""

import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from studylib import cli, outputs
from studylib.errors import StudyError


def _studylib(*args: str) -> list[str]:
    return [sys.executable, "-m", "studylib.cli", "--threads", "1", *args]


def _one_line_refusal(capsys, argv) -> str:
    assert cli.main(argv) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("studylib: "), err
    return err[0]


def _marked(path: Path) -> Path:
    """A directory as studylib leaves it: its content plus the marker."""
    path.mkdir(parents=True)
    (path / "weights").write_text("old")
    (path / outputs.MARKER).write_text("{}")
    return path


# --- refusals before any work ---------------------------------------------------------------


@pytest.mark.parametrize("out", ["", "  ", ".", "..", "a\0b", "/proc/studylib-out",
                                 "afile/sub", "afile"])
def test_check_out_dir_refuses_odd_and_unwritable_paths(out, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "afile").write_text("x")
    with pytest.raises(StudyError):
        outputs.check_out_dir(out, overwrite=True)


def test_overwrite_replaces_only_directories_studylib_wrote(tmp_path):
    foreign = tmp_path / "foreign"
    foreign.mkdir()
    (foreign / "thesis.tex").write_text("years of work")
    with pytest.raises(StudyError, match="not written by studylib"):
        outputs.check_out_dir(foreign, overwrite=True)
    with pytest.raises(StudyError, match="--overwrite"):
        outputs.check_out_dir(_marked(tmp_path / "ours"), overwrite=False)
    assert outputs.check_out_dir(tmp_path / "ours", overwrite=True) == tmp_path / "ours"
    (tmp_path / "empty").mkdir()
    assert outputs.check_out_dir(tmp_path / "empty") == tmp_path / "empty"


@pytest.mark.parametrize("argv", [
    ["export-lmms", ".", "--overwrite"],
    ["export-lmms", "{foreign}", "--overwrite"],
    ["prune", "--model", "{model}", "--method", "layer", "--ratio", "0.3", "--out", "",
     "--overwrite"],
    ["recover", "--student", "{model}", "--teacher", "{model}", "--recipe", "sft",
     "--out", "{foreign}", "--overwrite"],
    ["recover", "--student", "{model}", "--teacher", "{model}", "--recipe", "sft",
     "--out", "{tmp}/new", "--cache-dir", "{tmp}/afile/cache"],
    ["teacher", "--arch", "toy-llava", "--out", "{tmp}/afile/t"],
    ["data", "--out", "{foreign}"],
    ["data", "--out", "{tmp}/d", "--images", "1000001"],
    ["eval", "--model", "{model}", "--out", "{tmp}"],
    ["eval", "--model", "{model}", "--out", "/proc/results.jsonl"],
    ["quantize", "--model", "{model}", "--out", "{tmp}/afile/q.json"],
    ["import-lmms", "{tmp}/afile", "--model", "m", "--table", "{tmp}"],
])
def test_bad_outputs_are_refused_in_one_line_before_any_work(argv, tmp_path, capsys,
                                                             monkeypatch):
    """Each of these used to delete data or print a traceback (some after minutes of work)."""
    monkeypatch.chdir(tmp_path)
    foreign = tmp_path / "foreign"
    foreign.mkdir()
    (foreign / "notes.txt").write_text("keep me")
    (tmp_path / "afile").write_text("x")
    model = tmp_path / "no-model-needed"  # refused before the model would be opened
    argv = [a.format(tmp=tmp_path, foreign=foreign, model=model) for a in argv]
    before = sorted(p.relative_to(tmp_path) for p in tmp_path.rglob("*"))
    _one_line_refusal(capsys, argv)
    assert sorted(p.relative_to(tmp_path) for p in tmp_path.rglob("*")) == before
    assert (foreign / "notes.txt").read_text() == "keep me"


# --- atomic replacement ---------------------------------------------------------------------


@pytest.mark.parametrize("exchange", [True, False], ids=["renameat2", "rename-aside"])
def test_atomic_dir_replaces_whole_or_not_at_all(exchange, tmp_path, monkeypatch):
    if not exchange:
        monkeypatch.setattr(outputs, "_renameat2", None)
    out = _marked(tmp_path / "ckpt")
    with pytest.raises(RuntimeError), outputs.atomic_dir(out) as tmp:
        (tmp / "weights").write_text("half")
        raise RuntimeError("killed mid-write")
    assert (out / "weights").read_text() == "old"
    with outputs.atomic_dir(out, "prune") as tmp:
        (tmp / "weights").write_text("new")
    assert (out / "weights").read_text() == "new" and outputs.is_ours(out)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ckpt"]  # no hidden leftovers


def test_library_writers_cannot_replace_a_foreign_directory(tmp_path):
    foreign = tmp_path / "data"
    foreign.mkdir()
    (foreign / "keep.txt").write_text("keep me")
    with pytest.raises(StudyError, match="not written by studylib"), \
            outputs.atomic_dir(foreign) as tmp:
        (tmp / "weights").write_text("new")
    assert [p.name for p in foreign.iterdir()] == ["keep.txt"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["data"]


def test_leftovers_of_killed_runs_are_cleaned_or_restored(tmp_path):
    dead = subprocess.Popen(["true"])
    dead.wait()
    out = tmp_path / "ckpt"
    # a complete replacement stranded between the fallback's two renames: `out` is missing
    stranded = _marked(tmp_path / f".ckpt.studylib-{dead.pid}-abc")
    partial = tmp_path / f".ckpt.studylib-{dead.pid}-def"  # a kill mid-write: no marker
    partial.mkdir()
    live = tmp_path / f".ckpt.studylib-{os.getpid()}-ghi"  # a run still going: left alone
    live.mkdir()
    with outputs.atomic_dir(out) as tmp:
        assert (out / "weights").read_text() == "old"  # restored before the new write
        (tmp / "weights").write_text("new")
    assert not stranded.exists() and not partial.exists() and live.exists()
    assert (out / "weights").read_text() == "new"


_REPLACER = """
import sys
from studylib import outputs
out, size = sys.argv[1], int(sys.argv[2])
for i in range(10**6):
    with outputs.atomic_dir(out) as tmp:
        for part in range(4):
            (tmp / f"part{part}").write_bytes(bytes([i % 256]) * size)
"""


def test_kill_9_during_replacement_leaves_the_old_or_the_new_output_whole(tmp_path):
    """A process replaces a 4-file directory in a loop; SIGKILL at random moments never
    leaves it partial (all four files, of one generation) or missing."""
    out = tmp_path / "ckpt"
    rng = random.Random(0)
    for _ in range(5):
        proc = subprocess.Popen([sys.executable, "-c", _REPLACER, str(out), str(2**20)])
        time.sleep(rng.uniform(1.0, 2.0))  # import (~0.3 s), then many replacements
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        parts = [(out / f"part{k}").read_bytes() for k in range(4)]
        assert len({p[:1] for p in parts}) == 1 and all(len(p) == 2**20 for p in parts)
        assert outputs.is_ours(out)


@pytest.mark.slow
def test_kill_9_during_prune_overwrite_leaves_a_loadable_checkpoint(micro_checkpoint,
                                                                    tmp_path):
    """The data-loss report: `prune --overwrite` killed at random moments left neither the
    old nor the new checkpoint. Five kills in the second half of the run's measured duration
    (the first is mostly imports), each followed by a load of whatever is at --out; then a
    complete run cleans the killed runs' hidden leftovers."""
    from studylib import models

    out = tmp_path / "pruned"
    argv = _studylib("prune", "--model", str(micro_checkpoint), "--method", "width",
                     "--ratio", "0.3", "--calib-samples", "2", "--out", str(out), "--overwrite")
    start = time.perf_counter()
    subprocess.run(argv, check=True, capture_output=True)
    duration = time.perf_counter() - start
    rng = random.Random(1)
    for _ in range(5):
        proc = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        time.sleep(rng.uniform(0.5, 1.0) * duration)
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        models.load(out)  # old or new, whole
        assert outputs.is_ours(out) and (out / "pruning_report.json").is_file()
    subprocess.run(argv, check=True, capture_output=True)
    assert [p.name for p in tmp_path.iterdir()] == ["pruned"]


def test_tables_keep_their_file_mode(tmp_path):
    table = tmp_path / "results.jsonl"
    table.write_text("")
    table.chmod(0o640)
    from studylib.results import ResultsTable

    ResultsTable(table).record("r1", [{"value": 1.0}])
    assert table.stat().st_mode & 0o777 == 0o640
    outputs.atomic_write_text(tmp_path / "new.txt", "x")
    umask = os.umask(0)
    os.umask(umask)
    assert (tmp_path / "new.txt").stat().st_mode & 0o777 == 0o666 & ~umask


def test_tables_hold_strict_json(tmp_path):
    """NaN is not JSON: a NaN score is written as null, so every JSON reader can load it."""
    import json

    from studylib.results import ResultsTable

    table = ResultsTable(tmp_path / "r.jsonl")
    table.record("r1", [{"value": float("nan"), "ci_low": float("inf"), "n": 3}])
    row = json.loads(table.path.read_text(), parse_constant=lambda c: pytest.fail(c))
    assert row["value"] is None and row["ci_low"] is None and row["n"] == 3
