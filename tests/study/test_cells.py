"""Grid cells: computed once by content, shared across grids, invalidated by code changes."""

import ast

import pandas as pd
import pytest

from studylib.study import cells, grid
from studylib.testbed import toy
from tests.study.test_grid import _fake_evaluate


def _rows(teacher, processor, cache, seeds, recipes=("sft",), ratios=(0.3,)):
    plan = grid.Grid(grid.product(["width"], ratios), recipes=list(recipes), fractions=[0.01],
                     seeds=list(seeds), calib_n=2, max_steps=1)
    return pd.DataFrame(grid.run_grid(teacher, processor, plan, model="micro", eval_limit=2,
                                      log=None, cache=cache))


@pytest.fixture
def micro(monkeypatch):
    monkeypatch.setattr(grid.evaluate, "evaluate", _fake_evaluate)
    return toy.build("toy-llava", "micro", seed=0)


def _avg_pct(df):
    return df[df.metric == "avg_pct"].set_index(["seed", "recipe"]).value.sort_index()


def test_a_new_seed_computes_only_that_seed(micro, tmp_path):
    teacher, processor = micro
    cache = cells.CellCache(tmp_path / "cells")
    one = _rows(teacher, processor, cache, [0])
    assert (cache.hits, cache.computed) == (0, 3)  # teacher, pruned, recovered
    again = cells.CellCache(tmp_path / "cells")
    two = _rows(teacher, processor, again, [0, 1])
    assert (again.hits, again.computed) == (3, 2)  # seed 1: pruned + recovered
    # the cells read back give the same rows as the computed ones
    assert _avg_pct(two).loc[0].equals(_avg_pct(one).loc[0])
    shared = two[two.seed == 0].set_index(["benchmark", "metric", "recipe"])
    assert shared.n_params.equals(one.set_index(["benchmark", "metric", "recipe"]).n_params)


def test_a_cell_is_shared_by_another_grid_and_changed_code_recomputes(micro, tmp_path,
                                                                      monkeypatch):
    teacher, processor = micro
    _rows(teacher, processor, cells.CellCache(tmp_path), [0])
    other = cells.CellCache(tmp_path)  # another chapter: one more recipe on the same student
    _rows(teacher, processor, other, [0], recipes=("sft", "sft-mm"))
    assert (other.hits, other.computed) == (3, 1)
    monkeypatch.setattr(cells, "code_version", lambda: "edited")
    after = cells.CellCache(tmp_path)
    _rows(teacher, processor, after, [0])
    assert (after.hits, after.computed) == (0, 3)


def test_the_code_version_covers_the_cell_code_only():
    files = {str(f.relative_to(cells.PACKAGE)) for f in cells._py_files(cells.CELL_CODE)}
    assert {"compress/prune.py", "compress/recover.py", "evaluation/evaluate.py",
            "testbed/questions.py", "study/grid.py", "study/cells.py", "training.py"} <= files
    assert not any(f.startswith(("analysis/", "chapters/")) for f in files)
    assert not files & set(cells.NOT_CELL_CODE)
    assert len(cells.code_version()) == 16 and cells.code_version() != cells.package_version()


def test_the_cell_code_never_imports_what_the_code_version_leaves_out():
    """Teacher training and timing are outside the cell key: sound only while no cell code
    imports them (every import, those inside functions too)."""
    left_out = {"studylib." + f.removesuffix(".py").replace("/", ".")
                for f in cells.NOT_CELL_CODE}
    for path in cells._py_files(cells.CELL_CODE):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and node.module:
                names = {node.module} | {f"{node.module}.{a.name}" for a in node.names}
            elif isinstance(node, ast.Import):
                names = {a.name for a in node.names}
            else:
                continue
            assert not names & left_out, f"{path.name} imports {names & left_out}"
