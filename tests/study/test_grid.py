"""The recovery chapters' sweep (prune -> recover -> evaluate rows) and their figures."""

import math

import matplotlib
import pandas as pd
import pytest

from studylib import models
from studylib.analysis import tables
from studylib.chapters import data_efficiency, sft_recovery
from studylib.chapters import recovery_figures as rp
from studylib.compress import subsets
from studylib.errors import StudyError
from studylib.evaluation import evaluate, metrics
from studylib.study import grid
from studylib.testbed import toy

matplotlib.use("Agg")


def _fake_evaluate(model, processor, limit=None, seed=0, batch_size=64, progress=False,
                   images="scene"):
    """Scores proportional to the LLM's size: an untrained micro model would score 0, and
    this makes every AVG-% a known number (the share of LLM parameters kept)."""
    llm = models.parameter_counts(model)["llm"] / 1e4
    scores = pd.DataFrame([{"benchmark": b, "metric": "score", "n": 4, "ci_low": 0.0,
                            "ci_high": 100.0, "value": llm * metrics.PAPER_SCALE[b]}
                           for b in metrics.PAPER_KEYS])
    return evaluate.EvalReport(pd.DataFrame(), scores, 0.01, seed)


@pytest.fixture(scope="module")
def grid_rows():
    """A micro (untrained) toy-llava through a 1 x 1 x 2 x 1 x 1 grid, 2 steps per recovery."""
    mp = pytest.MonkeyPatch()
    mp.setattr(grid.evaluate, "evaluate", _fake_evaluate)
    teacher, processor = toy.build("toy-llava", "micro", seed=0)
    plan = grid.Grid(grid.product(["width"], [0.3]), recipes=["sft-mm", "sft"],
                     fractions=[0.01], seeds=[0], calib_n=2, max_steps=2)
    rows = grid.run_grid(teacher, processor, plan, model="micro", eval_limit=4, log=None)
    mp.undo()
    return pd.DataFrame(rows)


def test_grid_rows_cover_teacher_pruned_and_recovered(grid_rows):
    df = grid_rows
    avg = df[(df.benchmark == "AVG") & (df.metric == "paper")]
    assert sorted(avg.recipe.fillna("none")) == ["none", "none", "sft", "sft-mm"]
    teacher = avg[avg.method == "none"].value.iloc[0]
    pct = tables.avg_pct(df)
    assert len(pct) == 3 and set(pct.recipe) == {"none", "sft-mm", "sft"}
    llm = df[df.metric == "avg_pct"].n_params_llm
    for r, kept in zip(pct.itertuples(), llm, strict=True):  # student AVG / teacher AVG
        student = avg[(avg.method == r.method) & (avg.recipe.fillna("none") == r.recipe)]
        assert r.avg_pct == pytest.approx(100 * student.value.iloc[0] / teacher)
        assert r.avg_pct == pytest.approx(100 * kept / df.n_params_llm.max())
    rec = df[(df.recipe == "sft-mm") & (df.metric == "avg_pct")].iloc[0]
    assert rec.trainable_params == rec.n_params_projector  # projector only
    lora = df[(df.recipe == "sft") & (df.metric == "avg_pct")].iloc[0]
    assert lora.trainable_params > lora.n_params_projector and lora.train == "mm+lora"
    assert rec.steps == 2 and rec.subset_n == 40 and len(rec.subset_hash) == 64
    assert 0.2 < rec.ratio_achieved < 0.4


def test_teacher_is_left_untouched_by_the_grid(monkeypatch):
    monkeypatch.setattr(grid.evaluate, "evaluate", _fake_evaluate)
    teacher, processor = toy.build("toy-llava", "micro", seed=0)
    before = {k: v.clone() for k, v in teacher.state_dict().items()}
    plan = grid.Grid(grid.product(["layer"], [0.3]), recipes=["sft"], fractions=[0.01],
                     seeds=[0], calib_n=2, max_steps=1)
    grid.run_grid(teacher, processor, plan, model="micro", eval_limit=2, log=None)
    after = teacher.state_dict()
    assert before.keys() == after.keys()
    assert all((before[k] == after[k]).all() for k in before)


def test_summarize_gives_t_intervals_over_seeds():
    pct = pd.DataFrame({"method": "width", "ratio": 0.3, "recipe": "sft",
                        "ratio_achieved": 0.3, "seed": [0, 1, 2], "avg_pct": [90.0, 92.0, 94.0]})
    s = tables.summarize(pct, ["method", "ratio", "recipe"]).iloc[0]
    assert s["mean"] == pytest.approx(92.0) and s.seeds == 3
    assert s.ci95 == pytest.approx(4.303 * 2.0 / math.sqrt(3), rel=1e-3)
    one = tables.summarize(pct.iloc[:1], ["method", "ratio", "recipe"]).iloc[0]
    assert math.isnan(one.ci95)


def test_subsets_are_nested_and_match_recover():
    subs = data_efficiency.grid_subsets([0.1, 0.05], [3])
    assert [s.fraction for s in subs] == [0.05, 0.1]
    table = data_efficiency.subset_table(subs)
    assert list(table.images) == [200, 400] and list(table.steps_per_epoch) == [13, 25]
    assert table.contains_smaller.iloc[1] is True or table.contains_smaller.iloc[1]
    same = subsets.select_subset(subsets.training_records(), 0.05, 3)
    assert subs[0].hash == same.hash


def test_paper_fig2_recomputes_avg_pct_from_avg():
    p = rp.paper_fig2("Bunny-v1.0-3B")
    width15 = p[(p.method == "width") & (p.ratio == 0.15) & (p.recipe == "none")].avg_pct.iloc[0]
    assert width15 == pytest.approx(100 * 54.50 / 59.65)  # not the printed 95.48 (study.md)
    assert set(p[p.recipe == "sft"].method) == {"layer"}  # Table 2: Bunny layerwise FT
    llava = rp.paper_fig2("LLaVA-v1.5-7B")
    assert set(llava.recipe) == {"none"} and rp.paper_fig2(None).empty


def test_figures_draw_from_the_rows(grid_rows, tmp_path):
    from studylib.chapters import plotting

    pct = tables.avg_pct(grid_rows)
    summary = tables.summarize(pct, ["method", "ratio", "recipe"])
    fig = rp.fig2_sft_recovery(summary, "micro", rp.paper_fig2("LLaVA-v1.5-7B"),
                               "LLaVA-v1.5-7B", chance=50.0)
    assert plotting.save(fig, "fig2", tmp_path).stat().st_size > 1000
    fig = rp.fig_trainable_parameters(sft_recovery.trainable_table(grid_rows))
    assert plotting.save(fig, "trainable", tmp_path).is_file()
    rec = summary[summary.recipe != "none"].assign(data_fraction=0.01)
    fig = rp.fig4_data_efficiency(rec, "micro", summary[summary.recipe == "none"])
    assert plotting.save(fig, "fig4", tmp_path).is_file()
    lines = sft_recovery.sft_takeaways(summary, items=4, chance=50.0)
    assert any(line.startswith("width 0.3") for line in lines)
    assert metrics.PAPER_KEYS  # the AVG the takeaways quote is the paper's


def test_a_depth_share_is_part_of_the_method_a_grid_names(monkeypatch):
    """"depth+width@0.25" prunes with a quarter of the budget by layers; the spec names the
    condition in the rows, so a share sweep is a list of methods."""
    monkeypatch.setattr(grid.evaluate, "evaluate", _fake_evaluate)
    teacher, processor = toy.build("toy-llava", "micro", seed=0)
    plan = grid.Grid((("depth+width@0.25", 0.5), ("depth+width", 0.5), ("depth+width@1", 0.5)),
                     calib_n=2)
    pruned = [s for s in grid.students(teacher, processor, plan, log=None) if s.kind == "pruned"]
    assert [s.method for s in pruned] == ["depth+width@0.25", "depth+width", "depth+width@1"]
    assert [s.pruning.depth_share for s in pruned] == [0.25, 0.5, 1.0]
    assert [s.pruning.parts["layers_removed"] for s in pruned] == [0, 1, 2]  # of 4 layers
    for bad, needle in (("width@0.5", "only depth+width takes a depth share"),
                        ("depth+width@x", "must be a number"), ("depth+width@2", "[0, 1]")):
        with pytest.raises(StudyError) as info:
            grid.prune.parse_method(bad)
        assert needle in str(info.value)
