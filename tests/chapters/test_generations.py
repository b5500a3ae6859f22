"""Chapter 02's example generations (paper Table 8): read from the grid's cells, items picked
deterministically, one figure panel per item."""

import matplotlib.pyplot as plt
import pandas as pd
import pytest

from studylib.chapters import generations
from studylib.study import cells, grid
from studylib.study.params import SFTRecoveryParams
from studylib.testbed import suite

LABELS = ["teacher", "width 30% · prune only", "width 30% · sft-mm"]


@pytest.fixture(scope="module")
def run(micro_checkpoint, tmp_path_factory):
    """A 1 x 1 x 1 grid (width 30%, sft-mm, one step) on the micro teacher, computed once
    into the params' own cells; returns the params, the first call's cache and its frame."""
    root = tmp_path_factory.mktemp("gen")
    P = SFTRecoveryParams(model="micro", checkpoint=str(micro_checkpoint), limit=2,
                          methods=("width",), ratios=(0.3,), recipes=("sft-mm",), max_steps=1,
                          calib_n=2, data_fraction=0.01, results=str(root / "results.jsonl"))
    cache = grid.cell_cache(P)
    return P, cache, generations.examples(P, n=3, cache=cache)


def test_a_second_call_reads_the_cells_and_trains_nothing(run, monkeypatch):
    P, first, ex = run
    assert (first.hits, first.computed) == (0, 3)  # teacher, pruned, recovered
    again = cells.CellCache(first.root)
    assert generations.examples(P, n=3, cache=again).equals(ex)
    assert (again.hits, again.computed) == (3, 0)

    def never(*args, **kwargs):
        raise AssertionError("a cell was recomputed")

    monkeypatch.setattr(grid.prune, "prune", never)
    monkeypatch.setattr(grid, "_recover", never)
    monkeypatch.setattr(grid.evaluate, "evaluate", never)
    assert generations.examples(P, n=3).equals(ex)  # default: the chapter's results/cells


def test_examples_are_tidy_with_every_model_on_every_item(run):
    P, _, ex = run
    assert list(ex.columns) == generations.COLUMNS
    assert ex["item"].nunique() == 3 and ex.benchmark.nunique() == 3  # one per benchmark
    for item, rows in ex.groupby("item", sort=False):
        assert list(rows.model) == LABELS
        it = next(i for i in suite.benchmark(rows.benchmark.iloc[0]) if i.id == item)
        assert set(rows.question) == {it.question} and set(rows.answer) == {it.answer}
        assert set(rows.scene_seed) == {it.scene_seed}
    assert ex.correct.dtype == bool
    table = generations.answers_table(ex)
    assert list(table.model) == ["reference answer", *LABELS]
    assert list(table.columns[1:]) == list(dict.fromkeys(ex["item"]))
    assert table.iloc[1:, 1:].map(lambda c: c[0] in "✓✗").all().all()


def _preds(rows):
    """A predictions() frame from (item, benchmark, teacher, s1, s2) verdicts."""
    out = []
    for item, bench, *ok in rows:
        for model, right in zip(("teacher", "s1", "s2"), ok, strict=True):
            out.append({"item": item, "benchmark": bench, "model": model, "correct": right})
    return pd.DataFrame(out)


PREDS = _preds([
    ("GQA-1", "GQA", True, True, True),  # all agree
    ("GQA-2", "GQA", True, False, True),  # teacher right, a student wrong, evenly split
    ("POPE-1", "POPE", False, True, False),  # teacher wrong, a student right, evenly split
    ("POPE-2", "POPE", False, True, True),
    ("MME-P-1", "MME-P", True, False, False),
    ("SQA-1", "SQA", False, False, False),  # all agree
])


def test_items_disagreeing_first_one_per_benchmark_and_deterministic():
    assert generations.pick_items(PREDS, 3) == ["GQA-2", "POPE-1", "MME-P-1"]
    # then the agreeing SQA item (a new benchmark), then the next disagreeing one
    assert generations.pick_items(PREDS, 5) == ["GQA-2", "POPE-1", "MME-P-1", "SQA-1", "POPE-2"]
    shuffled = PREDS.sample(frac=1, random_state=1)
    for seed in (0, 1, 2):
        assert generations.pick_items(shuffled, 4, seed) == generations.pick_items(PREDS, 4, seed)
    assert len(generations.pick_items(PREDS, 10)) == 6


def test_the_figure_has_one_panel_per_item(run):
    _, _, ex = run
    fig = generations.fig_generations(ex)
    panels = [ax for ax in fig.axes if ax.images]
    assert len(panels) == ex["item"].nunique() == 3
    marks = [t for ax in fig.axes for t in ax.texts if t.get_text()[:1] in "✓✗"]
    assert len(marks) == len(ex)  # one answer per (item, model)
    for t in marks:
        assert t.get_color() == (generations.RIGHT if t.get_text()[0] == "✓"
                                 else generations.WRONG)
    plt.close(fig)
