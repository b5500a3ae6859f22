"""studylib.analysis.resources: our counts of the paper's architectures beside Tables 1/7."""

import pytest

from studylib.analysis import resources
from studylib.evaluation import measure


def test_llava_1_5_7b_on_meta_matches_the_paper_at_ratio_0():
    row = resources.beside_paper(measure.arch_row("llava-1.5-7b", "none", 0.0))
    assert row["model"] == "LLaVA-v1.5-7B" and row["method"] == "none"
    assert abs(row["params_b"] - 7.06) / 7.06 < 0.10
    assert 6.70 < row["llm_params_b"] < 6.75  # Llama-2-7B (+ llava-hf's 64 extra tokens)
    assert abs(row["tflops_rel_diff"]) < 0.10 and row["paper_tflops"] == 9.57
    assert abs(row["memory_rel_diff"]) < 0.10 and row["paper_memory_mib"] == 13546
    assert row["paper_params_b"] == 7.0
    assert row["params_rel_diff"] == pytest.approx((row["params_b"] - 7.0) / 7.0)
    # the paper's 9.57 TFLOPs fits ~100 text tokens (its prompt template)
    longer = measure.count_flops(measure.build_meta("llava-1.5-7b"), 100)
    assert abs(longer["total"] / 1e12 - 9.57) / 9.57 < 0.01


def test_pruned_rows_get_the_papers_cell_and_unknown_cells_stay_empty():
    ours = {"arch": "bunny-v1.0-3b", "method": "layer", "ratio": 0.6, "params": 2e9,
            "params_b": 2.0, "llm_params_b": 1.5, "decoder_ratio": 0.6, "tflops": 2.0,
            "memory_mib": 3300.0, "weights_mib": 3000.0}
    row = resources.beside_paper(ours)
    assert (row["paper_memory_mib"], row["paper_tflops"]) == (3006, 2.22)
    assert row["tflops_rel_diff"] == pytest.approx((2.0 - 2.22) / 2.22)
    assert "paper_params_b" not in row  # the paper gives sizes of unpruned models only
    off_grid = resources.beside_paper({**ours, "ratio": 0.5})
    assert off_grid["paper_tflops"] is None and off_grid["memory_rel_diff"] is None
    text = resources.format_table([row, off_grid])
    assert "Bunny-v1.0-3B" in text and "3006" in text and "-9.9%" in text
