"""studylib.chapters.kd_ablation's teaching toy and tables (the grid itself runs in the notebook test)."""

import math

import pandas as pd
import pytest

from studylib.chapters import kd_ablation


def test_forward_kl_covers_and_reverse_kl_seeks_a_mode():
    fits = kd_ablation.kl_directions_toy(modes=(-2.5, 2.5), width=0.6).attrs["fits"]
    fwd, rev = fits["forward KL(p||q)"], fits["reverse KL(q||p)"]
    assert abs(fwd["mean"]) < 0.05 and fwd["sd"] > 2.5  # one broad bump over both modes
    assert rev["mean"] == pytest.approx(2.5, abs=0.05) and rev["sd"] == pytest.approx(0.6, abs=0.05)
    assert rev["reverse KL"] == pytest.approx(math.log(2), abs=0.01)  # half the teacher ignored


def test_cache_speedup_ratios():
    rec = pd.DataFrame({"method": "layer", "ratio": 0.3,
                        "recipe": ["sft", "sft+l2", "sft+l2 (online)"],
                        "step_time_s": [0.5, 0.55, 0.8]})
    row = kd_ablation.cache_speedup(rec).iloc[0]
    assert row["cached / sft"] == pytest.approx(1.1)
    assert row["online / cached"] == pytest.approx(0.8 / 0.55)


def _evaluations():
    """Two seeds of a layerwise 30% student: pruned only, sft, sft+l2 (+5 points) and
    a widthwise 30% student with sft only."""
    rows = []
    for seed, shift in ((0, 0.0), (1, 2.0)):
        for method, recipe, pct in (("layer", "none", 60.0), ("layer", "sft", 80.0),
                                    ("layer", "sft+l2", 85.0), ("width", "sft", 70.0)):
            rows.append({"method": method, "ratio": 0.3, "recipe": recipe, "seed": seed,
                         "AVG_pct": pct + shift, "se_pct": 1.0, "AVG": (pct + shift) / 2})
    return pd.DataFrame(rows)


def test_the_recipe_table_puts_the_papers_table2_beside_layerwise_rows_only():
    from studylib.analysis.paper import paper_table

    table = kd_ablation.recipe_table(_evaluations(), order=("sft", "sft+l2"),
                                     table2=paper_table("table2_bunny_layer_kd"))
    assert len(table.columns) <= 7
    rows = table.set_index(["pruning", "recipe"])
    paper, gain = "AVG-% (paper Bunny-3B, layer)", "vs FT (paper Bunny-3B, layer)"
    assert list(rows.loc["layer 30%"].index) == ["pruned only", "sft", "sft+l2"]
    assert rows.loc[("layer 30%", "sft+l2"), paper] == 95.03  # Table 2, L2+FT at 30%
    assert rows.loc[("layer 30%", "sft+l2"), gain] == pytest.approx(95.03 - 94.33)
    assert rows.loc[("layer 30%", "pruned only"), paper] == 74.55  # Table 6, Bunny layer 30%
    assert rows.loc[("layer 30%", "sft+l2"), "vs FT, points [95% CI] (ours)"].startswith("+5.0 [")
    assert pd.isna(rows.loc[("layer 30%", "sft"), "vs FT, points [95% CI] (ours)"])
    assert math.isnan(rows.loc[("width 30%", "sft"), paper])  # Table 2 is layerwise


def test_the_timing_table_and_the_kl_fits_are_narrow():
    rec = pd.DataFrame({"method": "layer", "ratio": 0.3, "recipe": ["sft", "sft+l2"],
                        "seed": 0, "teacher": ["no teacher", "teacher cached"],
                        "steps": 3.0, "step_time_s": [0.5, 0.6], "wall_time_s": [2.0, 3.0],
                        "final_loss": [1.0, 2.0]})
    table = kd_ablation.timing_table(rec)
    assert list(table.pruning) == ["layer 30%", "layer 30%"] and len(table.columns) == 7
    fits = kd_ablation.kl_fits_table(kd_ablation.kl_directions_toy(steps=50))
    assert list(fits["student fitted by"]) == ["forward KL(p||q)", "reverse KL(q||p)"]
