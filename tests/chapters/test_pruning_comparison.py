"""Chapter 01: the comparison of the two Taylor forms, from rows to table, on a micro model."""

import pandas as pd

from studylib.chapters import pruning_comparison
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

