"""Bad input, command by command: one `studylib: ...` line on stderr, exit code 2, nothing
written, and no progress bar or partial output before the message."""

import json
import shutil
from pathlib import Path

import pytest
from clirun import run

from studylib import cli, models

REPO = Path(__file__).resolve().parents[2]
TEACHER = REPO / "teachers" / "toy-bunny"
LMMS_OK = {"results": {"gqa": {"exact_match,none": 0.6}}}


def assert_refused(code, out, err, needle, prefix="studylib: "):
    """Exit 2, stderr one line (a progress bar's carriage returns count as lines)."""
    assert code == 2, err[-500:]
    assert err.startswith(prefix) and err.count("\n") == 1 and "\r" not in err, err[-500:]
    assert needle in err, err
    assert out == ""


def listing(root: Path) -> dict[str, bytes | None]:
    return {str(p.relative_to(root)): p.read_bytes() if p.is_file() else None
            for p in sorted(root.rglob("*"))}


@pytest.mark.parametrize("argv, needle", [
    (["eval", "--model", TEACHER, "--out", "{hello}"], "hello.jsonl is not a JSON Lines "
     "results table (line 2: Expecting value)"),
    (["advise", "--ratio", "0.3", "--table", "{hello}"], "(line 2: Expecting value)"),
    (["import-lmms", "{lmms}", "--model", "m", "--table", "{hello}"], "(line 2: Expecting value)"),
    (["advise", "--ratio", "0.3", "--table", "{array}"], "(line 1: a list, not an object)"),
    (["advise", "--ratio", "0.3", "--table", "{dir}"], "is a directory, not a JSON Lines file"),
    (["import-lmms", "{lmms}", "--model", "m", "--table", "{dir}"], "is a directory"),
    (["eval", "--model", TEACHER, "--out", "{dir}"], "is a directory"),
])
def test_results_table_that_is_not_json_lines(tmp_path, capsys, argv, needle):
    paths = {"hello": tmp_path / "hello.jsonl", "array": tmp_path / "array.jsonl",
             "dir": tmp_path / "dir.jsonl", "lmms": tmp_path / "lmms.json"}
    paths["hello"].write_text('{"run_id": "a"}\nhello\n')
    paths["array"].write_text("[1, 2]\n")
    paths["dir"].mkdir()
    paths["lmms"].write_text(json.dumps(LMMS_OK))
    before = listing(tmp_path)
    argv = [str(a).format(**paths) for a in argv]
    assert_refused(*run(argv, capsys), needle)
    assert listing(tmp_path) == before


@pytest.fixture(scope="module")
def checkpoints(tmp_path_factory):
    """A width-pruned toy-bunny with layers of two widths (non-uniform), and a plain copy."""
    root = tmp_path_factory.mktemp("ckpts")
    assert cli.main(["prune", "--model", str(TEACHER), "--method", "width", "--ratio", "0.2",
                     "--layer-range", "2:6", "--calib-samples", "2", "--importance", "magnitude",
                     "--out", str(root / "ranged")]) == 0
    assert json.loads((root / "ranged" / "pruning_report.json").read_text())["uniform"] is False
    shutil.copytree(TEACHER, root / "plain")
    return root


@pytest.mark.parametrize("base, damage, needle", [
    ("ranged", {"pruning_report.json": "{not json"}, "is not a pruning report (JSONDecodeError"),
    ("ranged", {"pruning_report.json": '{"uniform": false}'},
     "is not a pruning report (KeyError: 'config_after')"),
    ("plain", {"pruning_report.json": '{"method": "width"}'},
     "is not a pruning report (KeyError: 'uniform')"),
    ("ranged", {"model.safetensors": 1000}, "cannot load checkpoint"),
    ("plain", {"model.safetensors": 1000}, "cannot load checkpoint"),
])
def test_corrupt_checkpoint(checkpoints, tmp_path, capsys, base, damage, needle):
    ckpt = tmp_path / base
    shutil.copytree(checkpoints / base, ckpt)
    for name, what in damage.items():
        if isinstance(what, int):  # truncate
            (ckpt / name).write_bytes((ckpt / name).read_bytes()[:what])
        else:
            (ckpt / name).write_text(what)
    out = tmp_path / "r.jsonl"
    assert_refused(*run(["eval", "--model", ckpt, "--out", out, "--limit", "1"], capsys), needle)
    assert not out.exists()


@pytest.mark.parametrize("recipe, extra, needle", [
    ("alpha: .nan\n", [], "alpha must be a finite number >= 0, got nan"),
    ("alpha: .inf\n", [], "alpha must be a finite number >= 0, got inf"),
    ("alpha: -1\n", [], "alpha must be a finite number >= 0, got -1.0"),
    ("epochs: .inf\n", [], "epochs must be a finite number > 0, got inf"),
    ("base: sft\n", ["--epochs", "inf"], "argument --epochs: epochs must be a finite number > 0"),
    ("base: sft\n", ["--epochs", "nan"], "argument --epochs: epochs must be a finite number > 0"),
])
def test_recipe_and_epochs_must_be_finite(tmp_path, capsys, recipe, extra, needle):
    (tmp_path / "my.yaml").write_text(recipe)
    out = tmp_path / "rec"
    argv = ["recover", "--student", TEACHER, "--teacher", TEACHER, "--recipe",
            tmp_path / "my.yaml", "--out", out, *extra]
    assert_refused(*run(argv, capsys), needle)
    assert not out.exists()


@pytest.mark.parametrize("results, extra, needle", [
    (LMMS_OK, ["--method", "width", "--ratio", "1.5"], "ratio must be in (0, 1), got 1.5"),
    (LMMS_OK, ["--method", "width", "--ratio", "nan"], "ratio must be in (0, 1), got nan"),
    (LMMS_OK, ["--data-fraction", "2"], "data fraction must be in (0, 1], got 2.0"),
    (LMMS_OK, ["--method", "width", "--ratio", "0.3", "--recipe", "sft+l3"],
     "unknown recipe 'sft+l3'"),
    ('{"results": {"gqa": {"exact_match,none": NaN}}}', [],
     "results.gqa.exact_match,none is nan, not a score"),
    ("hello", [], "is not JSON: Expecting value"),
    ('{"results": [1, 2]}', [], "'results' must map each task to a mapping"),
    ('{"results": {"gqa": 0.5}}', [], "'results' must map each task to a mapping"),
    ({**LMMS_OK, "n-samples": [1]}, [], "'n-samples' must map each task to a mapping"),
])
def test_import_lmms_refuses_before_writing(tmp_path, capsys, results, extra, needle):
    path = tmp_path / "x_results.json"
    path.write_text(results if isinstance(results, str) else json.dumps(results))
    table = tmp_path / "t.jsonl"
    argv = ["import-lmms", path, "--model", "m", "--table", table, *extra]
    assert_refused(*run(argv, capsys), needle)
    assert not table.exists()


GOOD = """notebook: notebooks/00_testbed.ipynb
defaults: {limit: 12}
runs:
  - {key: a, model: toy-llava}
"""


@pytest.mark.parametrize("text, extra, needle, code", [
    (GOOD.replace("{limit: 12}", "[1, 2]"), [], "defaults must be a mapping, got [1, 2]", 2),
    (GOOD + "profiles:\n  smoke: {defaults: {limit: -3}}\n", [],
     "runs[0] (a) in profile smoke: limit must be >= 0, got -3", 2),
    (GOOD + "profiles:\n  smoke: [1]\n", [], "profiles.smoke must be a mapping", 2),
    (GOOD.replace("{limit: 12}", "{limit: 12, limit: 5}"), [],
     "invalid YAML: duplicate key 'limit' (line 2)", 2),
    (GOOD + "defaults: {limit: 5}\n", [], "duplicate key 'defaults' (line 5)", 2),
    (GOOD, ["--set", "ratios=[0.5]"], "--set ratios is used by no run", 0),
])
def test_params_file_and_set(tmp_path, capsys, text, extra, needle, code):
    path = tmp_path / "study.yaml"
    path.write_text(text)
    table = tmp_path / "results.jsonl"
    argv = ["study", path, "--check", "--book", REPO / "book", "--results", table, *extra]
    got, out, err = run(argv, capsys)
    if code == 2:
        assert_refused(got, out, err, needle)
    else:  # a knob no run uses: one warning line, then the plan as usual
        assert got == 0 and err.startswith("studylib: warning: ") and err.count("\n") == 1
        assert needle in err and "toy-llava__a" in out
    assert sorted(p.name for p in tmp_path.iterdir()) == ["study.yaml"]


@pytest.mark.parametrize("argv", [
    ["eval", "--model", TEACHER, "--out", "{out}", "--benchmarks", "GQA,GQA"],
    ["export-lmms", "{out}", "--benchmarks", "POPE,GQA,POPE"],
])
def test_duplicate_benchmarks(tmp_path, capsys, argv):
    out = tmp_path / "out"
    argv = [str(a).format(out=out) for a in argv]
    assert_refused(*run(argv, capsys), "is listed twice")
    assert not out.exists()


@pytest.mark.parametrize("model", ["teachers/toy-lava", "toy-lava", "./teachers/toy-lava",
                                   "~/no-such-checkpoint", "/no/such/checkpoint"])
def test_mistyped_local_path_fails_at_once(tmp_path, capsys, monkeypatch, model):
    """Not a hub id, so no hub retries (a minute): `teachers` exists here."""
    monkeypatch.chdir(REPO)
    out = tmp_path / "r.jsonl"
    assert_refused(*run(["eval", "--model", model, "--out", out], capsys),
                   f"studylib: no checkpoint at {model}\n")
    assert not out.exists()
    assert not models.is_local("llava-hf/llava-1.5-7b-hf")  # hub ids still pass through


@pytest.mark.parametrize("case", ["table", "subset", "condition"])
def test_input_is_checked_before_progress_bars_and_output(tmp_path, capsys, case):
    """Each once printed a loading / generation bar or a table of scores before its error."""
    hello, subset = tmp_path / "hello.jsonl", tmp_path / "subset.json"
    hello.write_text("hello\n")
    subset.write_text("{}")
    (tmp_path / "x_results.json").write_text(json.dumps(LMMS_OK))
    argv, needle = {
        "table": (["eval", "--model", TEACHER, "--out", hello, "--limit", "1"],
                  "is not a JSON Lines results table"),
        "subset": (["recover", "--student", TEACHER, "--teacher", TEACHER, "--recipe", "sft",
                    "--subset", subset, "--out", tmp_path / "rec"],
                   "is not a subset file (KeyError: 'indices')"),
        "condition": (["import-lmms", tmp_path / "x_results.json", "--model", "m", "--ratio",
                       "0.3", "--table", tmp_path / "t.jsonl"], "--method none"),
    }[case]
    before = listing(tmp_path)
    assert_refused(*run(argv, capsys), needle)
    assert listing(tmp_path) == before


@pytest.mark.parametrize("setup, extra, needle", [
    (lambda book: None, [], "not a book directory"),
    (lambda book: (book / "_config.yml").write_text("title: t\n"), [], "run `make book` first"),
    (lambda book: (book / "_config.yml").write_text("title: t\n"),
     ["--out", "{book}"], "is a directory, not a file"),
])
def test_pdf_refuses_what_it_cannot_print(tmp_path, capsys, setup, extra, needle):
    book = tmp_path / "book"
    book.mkdir()
    setup(book)
    before = listing(tmp_path)
    argv = ["pdf", "--book", book, *[a.format(book=book) for a in extra]]
    assert_refused(*run(argv, capsys), needle)
    assert listing(tmp_path) == before
