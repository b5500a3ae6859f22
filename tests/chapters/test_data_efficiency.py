"""Chapter 04's tables and figure: the paper's full-data points (Tables 3 and 2) beside ours
where the setting matches, and nowhere else."""

import math

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import pytest

from studylib.chapters import data_efficiency


def _summary(ratio=0.6, method="width", recipes=("sft", "sft+l2"), seeds=1):
    rows = [{"method": method, "ratio": ratio, "recipe": r, "data_fraction": f, "mean": m,
             "seeds": seeds, "ci95": 2.0 if seeds > 1 else math.nan, "ratio_achieved": ratio}
            for r in recipes for f, m in ((0.05, 60.0), (1.0, 80.0))]
    return pd.DataFrame(rows)


def _prune_only(ratio=0.6, method="width"):
    return pd.DataFrame({"method": [method], "ratio": [ratio], "mean": [20.0], "seeds": [1],
                         "ci95": [math.nan]})


def test_the_papers_full_data_points_come_from_tables_3_and_2():
    llava = data_efficiency.paper_full_data("LLaVA-v1.5-7B").set_index(["method", "ratio", "recipe"])
    assert set(llava.source) == {"Table 3"}  # Table 2 is Bunny's
    assert llava.loc[("width", 0.6, "sft+l2"), "avg_pct"] == 77.90
    assert llava.loc[("layer", 0.3, "sft+l2"), "avg_pct"] == 97.88
    bunny = data_efficiency.paper_full_data("Bunny-v1.0-3B").set_index(["method", "ratio", "recipe"])
    assert bunny.loc[("layer", 0.3, "sft"), "source"] == "Table 2"  # FT
    assert bunny.loc[("layer", 0.3, "sft+l2"), "source"] == "Table 3"  # printed in both
    assert bunny.index.is_unique
    assert data_efficiency.paper_full_data(None).empty


def test_the_fraction_table_puts_the_paper_beside_the_matching_setting_only():
    points = data_efficiency.paper_full_data("LLaVA-v1.5-7B")
    table = data_efficiency.fraction_table(_summary(seeds=3), _prune_only(), points)
    assert list(table.columns) == ["pruning, recipe", "pruned only", "5% data", "100% data",
                                   "paper, 100% data"]
    rows = table.set_index("pruning, recipe")
    assert rows.loc["width 60%, sft+l2", "paper, 100% data"] == "77.9 (Table 3)"
    assert pd.isna(rows.loc["width 60%, sft", "paper, 100% data"])  # Table 3 is FT + L2
    assert rows.loc["width 60%, sft", "100% data"] == "80.0 ± 2.0"
    # widthwise 30%: Table 3 prescribes layerwise there, so nothing of the paper's matches
    table = data_efficiency.fraction_table(_summary(0.3), _prune_only(0.3), points)
    assert table["paper, 100% data"].isna().all()


def test_the_figure_draws_a_diamond_at_100_percent_where_the_paper_prints_one():
    points = data_efficiency.paper_full_data("LLaVA-v1.5-7B")
    fig = data_efficiency.fig4_with_paper(_summary(), "toy-llava", _prune_only(), 30.0, points,
                                          "LLaVA-v1.5-7B")
    offsets = [c.get_offsets() for c in fig.axes[0].collections if len(c.get_offsets())]
    diamonds = [o for o in offsets if np.allclose(o, [[1.0, 77.9]])]
    assert len(diamonds) == 1
    labels = [t.get_text() for t in fig.legends[0].get_texts()]
    assert any("paper (LLaVA-7B), 100% data (Table 3)" in t for t in labels)
    assert "ours (toy-llava)" in labels
    plt.close(fig)


@pytest.mark.parametrize("ratio", [0.6, 0.3])
def test_the_takeaways_quote_the_papers_100_percent_result_where_it_has_one(ratio):
    points = data_efficiency.paper_full_data("LLaVA-v1.5-7B")
    lines = data_efficiency.data_takeaways(_summary(ratio), 200, points)
    quoted = [line for line in lines if "the paper's 100% result" in line]
    assert len(quoted) == (1 if ratio == 0.6 else 0)
    if quoted:
        assert "77.9% (Table 3)" in quoted[0] and "sft+l2" in quoted[0]
