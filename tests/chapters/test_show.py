"""How a chapter shows a result (`studylib.chapters.show`): numbered MyST tables and figures
with captions, readable numbers, and no `nan` or `None` on the page."""

import math

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import pandas as pd  # noqa: E402
import pytest  # noqa: E402

from studylib.chapters import show  # noqa: E402


@pytest.fixture()
def shown(monkeypatch):
    bundles = []
    monkeypatch.setattr(show, "_display", bundles.append)
    monkeypatch.setattr(show, "_shown", type(show._shown)())
    return bundles


def test_table_is_a_numbered_myst_table_with_missing_values_as_a_dash(shown):
    df = pd.DataFrame({"method": ["layer", None], "ratio": [0.15, 0.3], "AVG-%": [91.234, math.nan],
                       "median |d|": [1.0, 2.0]})
    show.table(df, "AVG-% per method.", "02-study-toy-x")
    md = shown[0]["text/markdown"]
    assert md.startswith("```{table} Table 2.1. AVG-% per method.\n:name: 02-study-toy-x\n")
    assert "| 0.15 " in md and "| 91.2 " in md  # ratios as they are, the rest to 1 decimal
    assert "median \\|d\\|" in md  # a pipe would split the Markdown table
    body = md.split("\n\n", 1)[1]
    for bad in ("nan", "None", "NaN"):
        assert bad not in body
    assert body.count(show.MISSING) == 2
    assert "AVG-% per method." in shown[0]["text/html"]  # what JupyterLab shows


def test_a_long_table_can_be_folded(shown):
    show.table(pd.DataFrame({"a": [1]}), "All claims.", "tab-y", folded="All 1 claims")
    md = shown[0]["text/markdown"]
    assert md.startswith("::::{dropdown} All 1 claims\n```{table} Table 1. All claims.")
    assert md.rstrip().endswith("::::")


def test_figure_is_saved_and_shown_once_as_a_numbered_figure(shown, tmp_path):
    fig, ax = plt.subplots()
    ax.plot([0, 1])
    assert show.figure(fig, "02_study__toy__fig2", "AVG-% vs ratio.", tmp_path) is None
    assert (tmp_path / "02_study__toy__fig2.png").stat().st_size > 1000
    md = shown[0]["text/markdown"]
    assert md.startswith("```{figure} /figures/02_study__toy__fig2.png\n:name: 02_study__toy__fig2")
    assert "Figure 2.1. AVG-% vs ratio." in md
    assert shown[0]["text/html"].startswith('<img src="data:image/png;base64,')
    assert not plt.fignum_exists(fig.number)  # closed: the inline backend will not show it again


def test_labels_are_unique_per_run():
    class P:
        study, model, key = "02_sft_recovery", "toy-llava", "fig2"

    class Q(P):
        model = "toy-bunny"

    assert show.label(P, "table8") != show.label(Q, "table8")
    assert show.label(P, "table8") == "02-sft-recovery-toy-llava-fig2-table8"


def test_tables_and_figures_are_numbered_per_chapter_in_the_order_shown(shown, tmp_path):
    for name in ("02-a", "02-b", "05-a"):
        show.table(pd.DataFrame({"a": [1]}), "t.", name)
    fig, _ = plt.subplots()
    show.figure(fig, "02_study__fig", "f.", tmp_path)
    captions = [b["text/markdown"].split("\n")[0] for b in shown]
    assert captions == ["```{table} Table 2.1. t.", "```{table} Table 2.2. t.",
                        "```{table} Table 5.1. t.", "```{figure} /figures/02_study__fig.png"]
    assert "Figure 2.1. f." in shown[-1]["text/markdown"]  # figures count apart from tables


def test_a_mean_or_a_difference_with_its_interval_reads_the_same_everywhere():
    assert show.mean_ci(91.23, 3.45) == "91.2 ± 3.5" and show.mean_ci(91.23, math.nan) == "91.2"
    assert show.mean_ci(math.nan, 1.0) == show.MISSING
    assert show.interval(91.23, 88.0, 94.44) == "91.2 [88.0, 94.4]"
    assert show.interval(1.2, -0.3, 2.7, signed=True) == "+1.2 [-0.3, +2.7]"
    assert show.interval(math.nan, 0, 1) == show.MISSING
