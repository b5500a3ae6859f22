"""Every params file validates; bad keys and values fail with one clear line."""

import ast
import json
import subprocess
import sys
from pathlib import Path

import pytest

from studylib.errors import StudyError
from studylib.study import params, params_file

REPO = Path(__file__).resolve().parents[2]
PARAM_FILES = sorted((REPO / "params").rglob("*.yaml"))
NOTEBOOKS = sorted((REPO / "notebooks").glob("*.ipynb"))


def write(tmp_path, text: str) -> Path:
    path = tmp_path / "study.yaml"
    path.write_text(text)
    return path


GOOD = """notebook: notebooks/00_testbed.ipynb
defaults: {limit: 12}
runs:
  - {key: a, model: toy-llava}
"""


def test_there_are_params_files():
    assert any(p.name == "00_testbed.yaml" for p in PARAM_FILES)


@pytest.mark.parametrize("path", PARAM_FILES, ids=lambda p: str(p.relative_to(REPO)))
def test_params_file_validates_in_every_profile(path):
    runs = params_file.validate_file(path)
    assert runs
    assert all(isinstance(r, params.StudyParams) for r in runs)
    assert all(len(r.run_id()) == 16 for r in runs)


def test_runs_merge_defaults_and_profiles(tmp_path):
    path = write(tmp_path, GOOD + "profiles:\n  smoke:\n    defaults: {limit: 3}\n")
    (run,) = params_file.load_study(path).runs
    assert (run.key, run.model, run.limit, run.seed) == ("a", "toy-llava", 12, 0)
    (smoke,) = params_file.load_study(path, profile="smoke").runs
    assert smoke.limit == 3
    (over,) = params_file.load_study(path, overrides={"model": "toy-bunny", "limit": 5}).runs
    assert (over.model, over.limit) == ("toy-bunny", 5)


@pytest.mark.parametrize("text, needle", [
    (GOOD.replace("limit: 12", "limits: 12"), "unknown key 'limits'"),
    (GOOD.replace("model: toy-llava", "model: toy-llava, ratio: 0.3"), "unknown key 'ratio'"),
    (GOOD + "extra: 1\n", "unknown top-level key 'extra'"),
    (GOOD.replace("limit: 12", "limit: twelve"), "limit: expected an integer"),
    (GOOD.replace("limit: 12", "limit: -1"), "limit must be >= 0"),
    (GOOD + "profiles:\n  fast: {}\n", "unknown profile 'fast'"),
    (GOOD + "profiles:\n  smoke: {defaults: {}, runz: []}\n", "unknown key 'runz'"),
    (GOOD.replace("notebook: notebooks/00_testbed", "notebook: notebooks/99_nope"),
     "not a known study"),
    (GOOD + "  - {key: a, model: toy-llava, seed: 1}\n", "same notebook toy-llava__a"),
])
def test_bad_params_fail_with_one_line(tmp_path, text, needle):
    path = write(tmp_path, text)
    with pytest.raises(StudyError) as err:
        params_file.validate_file(path)
    message = str(err.value)
    assert needle in message
    assert "\n" not in message
    assert str(path) in message or "profile" in message


def test_unknown_key_via_cli_is_one_line_exit_2(tmp_path):
    path = write(tmp_path, GOOD.replace("limit: 12", "limt: 12"))
    proc = subprocess.run([sys.executable, "-m", "studylib.cli", "study", str(path), "--check"],
                          capture_output=True, text=True, cwd=REPO)
    assert proc.returncode == 2
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and "unknown key 'limt'" in lines[0] and lines[0].startswith("studylib:")


def test_set_values_are_yaml_parsed():
    sets = params_file.parse_sets(["model=toy-bunny", "ratios=[0.5]", "limit=20", "device=cuda"])
    assert sets == {"model": "toy-bunny", "ratios": [0.5], "limit": 20, "device": "cuda"}
    with pytest.raises(StudyError, match="expects key=value"):
        params_file.parse_sets(["model"])


def test_list_knobs_accept_yaml_lists_and_scalars():
    p = params_file.validate("01_pruning_comparison", {"ratios": [0.5], "methods": "width"})
    assert p.ratios == (0.5,) and p.methods == ("width",)
    with pytest.raises(StudyError, match=r"ratios: ratio must be in \(0, 1\), got 1.5"):
        params_file.validate("01_pruning_comparison", {"ratios": [1.5]})
    with pytest.raises(StudyError, match="unknown pruning method 'depth'"):
        params_file.validate("01_pruning_comparison", {"methods": ["depth"]})
    p = params_file.validate("01_pruning_comparison", {"methods": ["depth+width@0.25"]})
    assert p.methods == ("depth+width@0.25",)
    with pytest.raises(StudyError, match=r"methods: depth_share must be in \[0, 1\]"):
        params_file.validate("01_pruning_comparison", {"methods": ["depth+width@3"]})


def test_set_applies_to_studies_that_have_the_knob(tmp_path):
    from studylib.study.runner import plan

    jobs = plan([write(tmp_path, GOOD)], "default", {"model": "toy-bunny", "ratios": [0.5]},
                tmp_path / "book", None, 2)
    assert [(j.params.model, j.threads) for j in jobs] == [("toy-bunny", 1)]
    assert jobs[0].out == tmp_path / "book" / "runs" / "00_testbed" / "toy-bunny__a.ipynb"


def test_only_selects_runs_by_their_own_key_before_set(tmp_path):
    """Two entries of one model would write the same notebook under one --set key; --only
    picks one first (chapter 03's exercises: --only ratio30 --set key=exercise)."""
    from studylib.study.runner import plan

    two = GOOD + "  - {key: b, model: toy-llava, limit: 13}\n"
    book = tmp_path / "book"
    with pytest.raises(StudyError, match="two runs write the same notebook"):
        plan([write(tmp_path, two)], "default", {"key": "exercise"}, book, None, 1)
    jobs = plan([write(tmp_path, two)], "default", {"key": "exercise"}, book, None, 1,
                only=["b"])
    assert [(j.params.key, j.params.limit) for j in jobs] == [("exercise", 13)]
    with pytest.raises(StudyError, match="--only c: no run"):
        plan([write(tmp_path, two)], "default", {}, book, None, 1, only=["c"])


def test_unknown_set_key_is_an_error(tmp_path):
    from studylib.study.runner import plan

    with pytest.raises(StudyError, match="unknown key 'modle'"):
        plan([write(tmp_path, GOOD)], "default", {"modle": "x"}, tmp_path / "book", None, 1)


def test_run_id_ignores_how_a_run_executes_not_what_it_computes(tmp_path):
    base = params_file.validate("00_testbed", {"checkpoint": str(tmp_path)})
    same = params_file.validate("00_testbed", {"checkpoint": str(tmp_path), "threads": 1,
                                          "results": "x.jsonl", "key": "other"})
    other = params_file.validate("00_testbed", {"checkpoint": str(tmp_path), "limit": 13})
    assert base.run_id() == same.run_id() != other.run_id()


@pytest.mark.parametrize("nb", NOTEBOOKS, ids=lambda p: p.name)
def test_notebook_parameters_cell_is_overrides_only(nb):
    """The template's `parameters` cell holds only `overrides` (a literal, commented), the
    next cell opens the chapter with them, outputs are stripped, and the defaults the
    notebook then runs are the study's dataclass defaults, valid as they are."""
    data = json.loads(nb.read_text())
    code = [c for c in data["cells"] if c["cell_type"] == "code"]
    assert "parameters" in code[0]["metadata"].get("tags", [])
    source = "".join(code[0]["source"])
    (node,) = ast.parse(source).body
    assert isinstance(node, ast.Assign) and node.targets[0].id == "overrides"
    assert ast.literal_eval(node.value) == {}
    assert all("#" in line for line in source.splitlines() if line.strip())
    assert f'open_chapter("{nb.stem}", overrides)' in "".join(code[1]["source"])
    assert all(not c.get("outputs") and c.get("execution_count") is None for c in code)
    p = params_file.from_notebook(nb.stem, {})
    assert p == params.STUDIES[nb.stem]() and params_file.non_defaults(p) == {}


def test_overrides_round_trip_what_the_runner_injects():
    p = params_file.validate("04_data_efficiency", {"fractions": [0.5], "limit": 7, "seeds": 1})
    sent = params_file.non_defaults(p)
    assert sent == {"fractions": [0.5], "limit": 7, "seeds": [1]}
    assert params_file.from_notebook("04_data_efficiency", sent) == p


@pytest.mark.parametrize("study", sorted(params.STUDIES))
def test_defaults_are_smoke_sized(study):
    """A notebook run as it stands (`overrides = {}`) is a quick test: few items per
    benchmark, a few recovery steps; the book's sizes come from the default profile."""
    p = params.STUDIES[study]()
    assert 0 < p.limit <= 20
    if hasattr(p, "max_steps"):
        assert 0 < p.max_steps <= 5
    for knob in ("ratios", "students"):
        assert len(getattr(p, knob, ())) <= 1


def test_the_book_profile_is_larger_than_the_defaults():
    for path in sorted(REPO.glob("params/[0-9][0-9]_*.yaml")):
        book = params_file.load_study(path, "default").runs[0]
        if book.STUDY in ("05_best_practices", "08_resources"):  # evaluate no benchmark
            continue
        assert book.limit == 0 or book.limit > params.STUDIES[book.STUDY]().limit, path.name


def test_pruning_importances_accept_both_taylor_forms():
    p = params_file.validate("01_pruning_comparison",
                             {"importances": ["default", "taylor", "taylor-mean"]})
    assert p.importances == ("default", "taylor", "taylor-mean")
    with pytest.raises(StudyError, match="unknown importance 'taylor-sum'"):
        params_file.validate("01_pruning_comparison", {"importances": ["default", "taylor-sum"]})


JUDGED = ("01_pruning_comparison", "02_sft_recovery", "03_kd_ablation", "04_data_efficiency",
          "06_generalization")  # the chapters whose rows the verdict table judges


def test_the_book_runs_three_seeds_with_settings_that_share_cells():
    runs = [p for s in JUDGED for p in params_file.load_study(REPO / "params" / f"{s}.yaml",
                                                              "default").runs]
    assert all(tuple(p.seeds) == (0, 1, 2) for p in runs)
    # the same evaluation items and calibration everywhere, so a cell is computed once
    assert {(p.limit, p.seed, p.calib_n, p.batch_size) for p in runs} == {(200, 0, 10, 64)}
    recovery = {p.STUDY: p for p in runs if hasattr(p, "recipes")}
    share = {recovery[s].data_fraction for s in ("02_sft_recovery", "03_kd_ablation")}
    assert len(share) == 1 and share <= set(recovery["04_data_efficiency"].fractions)
    assert {p.max_steps for p in recovery.values()} == {0}


def test_the_full_profile_starts_from_the_default_one():
    path = REPO / "params" / "03_kd_ablation.yaml"
    full, default = (params_file.load_study(path, prof).runs[0] for prof in ("full", "default"))
    assert full.seeds == default.seeds and full.recipes == default.recipes
    assert full.limit == 0 and len(full.ratios) == 4 and full.methods == ("layer", "width")
