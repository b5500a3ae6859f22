"""The chapters' exercises: every chapter 01-08 ends with two or more, each solution cites a
sentence the run glues (`studylib.chapters.exercises`), and the sentences carry the numbers
of the rows, or say that the run lacks them."""

import json
import re
from pathlib import Path

import pandas as pd
import pytest

from studylib.analysis import evidence
from studylib.chapters import exercises

NOTEBOOKS = Path(__file__).resolve().parents[2] / "notebooks"
STUDIES = ("01_pruning_comparison", "02_sft_recovery", "03_kd_ablation", "04_data_efficiency",
           "05_best_practices", "06_generalization", "07_quantization", "08_resources")
EMPTY = pd.DataFrame(columns=["run_id", "study", "model", "arch", "method", "ratio", "recipe",
                              "data_fraction", "max_steps", "seed", "benchmark", "metric",
                              "value"])


def _cells(study: str) -> list[str]:
    nb = json.loads((NOTEBOOKS / f"{study}.ipynb").read_text())
    return ["".join(c["source"]) for c in nb["cells"] if c["cell_type"] == "markdown"]


def _answers(study: str) -> dict[str, str]:
    if study == "05_best_practices":
        return exercises._05(pd.DataFrame(columns=["finding", "arch", "on_arch"]),
                             pd.DataFrame(columns=["outcome"]), pd.DataFrame(columns=["outcome"]))
    return exercises.ANSWERS[study](EMPTY, evidence.evaluations(EMPTY))


@pytest.mark.parametrize("study", STUDIES)
def test_every_chapter_ends_with_exercises_whose_solutions_cite_glued_answers(study):
    cells = _cells(study)
    start = next(i for i, c in enumerate(cells) if c.startswith("## Exercises"))
    tail = cells[start:]
    asked = [re.search(r":label: (\S+)", c).group(1) for c in tail if c.startswith("````{exercise}")]
    solved = [re.match(r"````\{solution\} (\S+)", c).group(1) for c in tail
              if c.startswith("````{solution}")]
    assert 2 <= len(asked) <= 3 and solved == asked
    for c in tail:
        if c.startswith("````{exercise}"):  # a prediction, then the command that tests it
            assert "Predict" in c and f"params/{study}.yaml" in c and "--set key=exercise" in c
    cited = {m for c in tail for m in re.findall(r"\{glue:text\}`([^`:]+)`", c)}
    assert cited and cited == set(_answers(study))  # each answer cited, nothing else
    assert all(exercises.MISSING in s for s in _answers(study).values())  # an empty run says so


def _ev(rows):
    """Evaluations as `evidence.evaluations` gives them: AVG-% and per-benchmark scores."""
    base = {"arch": "toy", "recipe": "none", "data_fraction": None, "max_steps": 0,
            "se_pct": 1.0, "AVG": 40.0}
    return pd.DataFrame([{**base, **r} for r in rows])


def test_a_difference_is_read_from_the_rows_with_its_interval():
    ev = _ev([{"method": m, "ratio": 0.3, "seed": s, "AVG_pct": v}
              for m, vals in (("layer", (90.0, 92.0, 94.0)), ("layer-random", (80.0, 81.0, 85.0)))
              for s, v in enumerate(vals)])
    text = exercises.retained(ev, dict(method="layer", ratio=0.3),
                              dict(method="layer-random", ratio=0.3), "BI", "random")
    assert text.startswith("BI keeps 92.0% of the teacher's AVG and random 82.0%: d = +10.0 points")
    assert "95% CI" in text and "3 seeds" in text
    assert exercises.MISSING in exercises.retained(ev, dict(method="width"), dict(method="layer"),
                                                   "a", "b")
    above = exercises.against(ev, dict(method="layer", ratio=0.3), "BI", 80.0)
    assert "above 80%" in above and "d = +12.0" in above


def test_the_first_ratio_where_a_benchmark_falls_is_found():
    ev = _ev([{"method": "layer", "ratio": r, "seed": 0, "POPE": p, "teacher_POPE": 80.0}
              for r, p in ((0.15, 78.0), (0.3, 75.0), (0.45, 62.0), (0.6, 75.0))])
    text = exercises.first_drop(ev, "POPE", 10.0, dict(method="layer"), "layerwise")
    assert text == ("layerwise: the teacher's POPE is 80.0; it stays within 10 points up to 30% "
                    "and first falls 18.0 points at 45%")
    held = exercises.first_drop(ev[ev.ratio < 0.4], "POPE", 10.0, dict(method="layer"), "l")
    assert "stays within 10 points at every ratio measured, up to 30% (it falls at most 5.0" in held


@pytest.mark.parametrize("study", STUDIES)
def test_every_exercise_command_plans_without_error(study, capsys):
    """The printed command as the runner reads it (`--check`: validated and listed, nothing
    run): known knobs, no two runs writing one notebook, every checkpoint present."""
    import shlex

    from clirun import run

    commands = [re.search(r"```bash\n(.*?)\n```", c, flags=re.S).group(1)
                for c in _cells(study) if c.startswith("````{exercise}")]
    for command in commands:
        argv = shlex.split(command)
        assert argv[:2] == [".venv/bin/studylib", "study"]
        code, out, err = run([*argv[1:], "--check"], capsys)
        assert code == 0, err
        assert "__exercise" in out and "warning" not in err, (command, err)
