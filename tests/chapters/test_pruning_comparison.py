"""Chapter 01: the comparison of the two Taylor forms, from rows to table, on a micro model."""

import pandas as pd

from studylib.chapters import pruning_comparison
from studylib.evaluation import metrics
from studylib.study.params import PruningParams
from studylib.testbed import toy


def test_taylor_forms_rows_and_table():
    model, processor = toy.build("toy-llava", "micro", seed=0)
    P = PruningParams(ratios=(0.3, 0.45), calib_n=3)
    rows = pruning_comparison.taylor_form_rows(model.eval(), processor, P)
    assert all(p.grad is None for p in model.parameters())
    run = pd.DataFrame(rows)
    assert set(run.benchmark) == {"taylor_forms"}
    assert not (run.metric == "score").any()  # never mistaken for benchmark scores
    table = pruning_comparison.taylor_forms_table(run)
    n_layers = len(model.model.language_model.layers)
    assert list(table.index) == [(r, i) for r in P.ratios for i in range(n_layers)]
    assert (table["of them shared"] <= table["MLP channels removed"]).all()
    assert (table["kv shared"] <= table["kv groups removed"]).all()
    assert (table["MLP channels removed"] > 0).all()
    assert table["Spearman (channel scores)"].between(-1, 1).all()
    # more is removed at the larger ratio, from the same two scorings
    assert (table.loc[0.45, "MLP channels removed"] >= table.loc[0.3, "MLP channels removed"]).all()
    assert pruning_comparison.taylor_forms_table(run.iloc[:0]) is None



def _summary():
    rows = [("none", "none", "none", 0.0, 0.0, 100.0), ("layer", "layer", "bi", 0.3, 0.333, 80.0),
            ("layer-random", "layer", "random", 0.3, 0.333, 70.0),
            ("width", "width", "taylor", 0.3, 0.2996, 90.0),
            ("width-random", "width", "random", 0.3, 0.2996, 60.0)]
    return pd.DataFrame([{"method": m, "family": f, "importance": i, "ratio": r, "achieved": a,
                          "LLM params": 1, "AVG": v / 2, "AVG-%": v, "seeds": 1}
                         for m, f, i, r, a, v in rows])


def test_the_results_table_is_narrow_with_the_papers_table6_beside_ours():
    table = pruning_comparison.results_table(_summary(), "LLaVA-v1.5-7B").set_index("pruning")
    assert list(table.columns) == ["ratio (%)", "removed (%)", "AVG-% (ours)",
                                   "AVG-% random scores (ours)", "AVG-% (paper LLaVA-7B, Table 6)"]
    assert table.loc["layer", "AVG-% random scores (ours)"] == 70.0
    assert table.loc["width", "AVG-% (paper LLaVA-7B, Table 6)"] == 84.17  # Table 6, width 30%
    assert table.loc["unpruned teacher", "AVG-% (paper LLaVA-7B, Table 6)"] == 100.0
    both = pruning_comparison.results_table(_summary(), None)
    assert len(both.columns) == 7  # a model without a paper family: both of Table 6's models


def test_the_takeaways_flag_a_teacher_that_keeps_its_skills_without_its_late_layers(monkeypatch):
    """The depth check (findings.DEPTH_RULE): a teacher keeping 88% with 60% of its layers
    removed is flagged; one keeping 40% is not."""
    P = PruningParams(ratios=(0.3, 0.6))
    monkeypatch.setattr(pruning_comparison, "summary", lambda run, model: _summary())
    monkeypatch.setattr(pruning_comparison, "chance_pct", lambda run, model: 45.0)
    monkeypatch.setattr(pruning_comparison, "scores", lambda run, model: pd.DataFrame(
        {"n": [300]}))
    for kept, flagged in ((88.0, True), (40.0, False)):
        run = pd.DataFrame([
            {"study": "01_pruning_comparison", "run_id": "r", "arch": "toy-llava",
             "model": "toy-llava", "key": "k", "timestamp": "2026-01-01", "method": method,
             "ratio": ratio, "recipe": "none", "data_fraction": None, "seed": 0, "limit": 300,
             "benchmark": b, "metric": "score", "value": avg * metrics.PAPER_SCALE[b],
             "ci_low": avg * metrics.PAPER_SCALE[b], "ci_high": avg * metrics.PAPER_SCALE[b],
             "n": 300}
            for method, ratio, avg in (("none", 0.0, 50.0), ("layer", 0.6, kept / 2))
            for b in metrics.PAPER_KEYS])
        lines = pruning_comparison.takeaways(run, P)
        assert any(line.startswith("**Testbed-limited:**") and f"keeps {kept:.0f}%" in line
                   for line in lines) == flagged
