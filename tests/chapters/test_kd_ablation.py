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
