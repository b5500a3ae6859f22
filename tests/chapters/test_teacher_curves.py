"""Chapter 00's learning curves, drawn from a synthetic training summary."""

import json

import matplotlib.pyplot as plt
import pytest

from studylib.chapters import teacher_curves
from studylib.evaluation import metrics

SUMMARY = {
    "arch": "toy-llava",
    "steps": {"align": 10, "binding": 10, "instruct": 30},
    "stage_wall_time_s": {"align": 1.0, "binding": 2.0, "instruct": 3.0},
    "llm_stage_wall_time_s": 6.0, "tokens": 1000, "tokens_per_s": 166,
    "machine": {"threads": 1},
    "curves": [
        {"stage": "align", "step": 10, "GQA": 0.0, "POPE": 0.0, "MME-P": 0.0, "AVG": 0.0},
        {"stage": "instruct", "step": 30, "GQA": 40.0, "POPE": 70.0, "MME-P": 1000.0,
         "AVG": 40.0},
        {"stage": "instruct", "step": 50, "GQA": 50.0, "POPE": 72.0, "MME-P": 1200.0,
         "AVG": 50.0},
    ],
}


def test_curves_are_on_the_paper_scale_and_key_points_say_when_a_skill_emerged():
    long = teacher_curves.curve_table(SUMMARY)
    mme = long[(long.benchmark == "MME-P")].score.tolist()
    assert mme == [0.0, 50.0, 60.0]  # MME-P / 20
    points = teacher_curves.key_points(SUMMARY).set_index("benchmark")
    # POPE reached 90% of its final 72 at step 30; GQA (40 < 45) only at step 50
    assert points.loc["POPE", "step at 90% of final"] == 30
    assert points.loc["GQA", "step at 90% of final"] == 50
    assert points.loc["MME-P", "final"] == 60.0


def test_the_figure_has_a_panel_per_benchmark_and_the_table_sums_the_stages(tmp_path):
    fig = teacher_curves.fig_learning_curves(SUMMARY, chance=metrics.CHANCE)
    titles = [ax.get_title() for ax in fig.axes if ax.get_title()]
    assert titles == ["GQA", "SQA", "POPE", "MME-P", "MME-C", "MMMU", "AVG"]
    plt.close(fig)
    table = teacher_curves.training_table(SUMMARY)
    assert table.steps.iloc[-1] == 50 and "166/s on 1 thread(s)" in table.attrs["note"]
    assert teacher_curves.multiple_choice_formulation(SUMMARY) == "letter"


def test_curves_with_letters_and_the_option_lookup_probe_get_their_own_lines(tmp_path):
    """A teacher trained since the cloze headline records SQA/MMMU by letter and the probe:
    the letters are drawn dotted in their benchmark's panel, the probe in the last one."""
    points = [{**p, "SQA": 30.0, "SQA (letter)": 24.0, "MMMU (letter)": 25.0,
               "option_lookup": 20.0 + 30 * k} for k, p in enumerate(SUMMARY["curves"])]
    summary = {**SUMMARY, "curves": points}
    assert teacher_curves.multiple_choice_formulation(summary) == "cloze"
    fig = teacher_curves.fig_learning_curves(summary, chance=metrics.CHANCE)
    panels = {ax.get_title(): ax for ax in fig.axes if ax.get_title()}
    assert list(panels)[-1] == "option lookup (letters)"
    assert [line.get_linestyle() for line in panels["SQA"].lines[:2]] == ["-", ":"]
    assert list(panels["option lookup (letters)"].lines[0].get_ydata()) == [20.0, 50.0, 80.0]
    plt.close(fig)


def test_a_checkpoint_without_a_summary_has_no_curves(tmp_path):
    assert teacher_curves.training_summary(tmp_path) is None
    (tmp_path / "training_summary.json").write_text(json.dumps(SUMMARY))
    assert teacher_curves.training_summary(tmp_path)["arch"] == "toy-llava"
    assert teacher_curves.curve_table({}).empty


@pytest.mark.parametrize("fraction", [0.5, 1.0])
def test_key_points_reach_the_final_value_at_the_latest_at_the_end(fraction):
    points = teacher_curves.key_points(SUMMARY, fraction)
    assert (points.filter(like="step at").iloc[:, 0] <= 50).all()


def test_a_plan_after_the_recipe_gets_its_stages_in_the_table_and_the_shading():
    """A v3 teacher (`teachers.continue_teacher`) lists its plan's stages as "+<kind>" after
    the recipe's, with their steps and wall time, and the figure shades them."""
    plan = {"steps": 12, "wall_time_s": 9.0, "stages": [
        {"kind": "lookup", "steps_done": 8, "wall_s": 5.0},
        {"kind": "mme", "steps_done": 4, "wall_s": 4.0}]}
    summary = {**SUMMARY, "plans": [plan], "curves": [*SUMMARY["curves"], {
        "stage": "mme", "step": 62, "GQA": 45.0, "POPE": 90.0, "MME-P": 1300.0, "AVG": 55.0}]}
    table = teacher_curves.training_table(summary)
    assert list(table.stage) == ["align", "binding", "instruct", "+lookup", "+mme",
                                 "total (LLM stages)"]
    assert table.steps.iloc[-1] == 62 and table["wall time (s)"].iloc[-1] == 15.0
    fig = teacher_curves.fig_learning_curves(summary, chance=metrics.CHANCE)
    spans = [(round(p.get_x()), round(p.get_x() + p.get_width())) for p in fig.axes[0].patches]
    assert spans[-2:] == [(50, 58), (58, 62)]
    plt.close(fig)
