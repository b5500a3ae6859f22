"""What every chapter notebook does before it shows anything: validate its parameters, and
get its run's rows -- read back from the results table when the run is recorded, computed
and recorded otherwise.

A notebook is then two calls and its tables and figures::

    ch = open_chapter("01_pruning_comparison", overrides)   # overrides: papermill's
    run = ch.rows(pruning_comparison.compute)                # the run's rows, a DataFrame

The run's identity is `run_id`, a hash of everything that changes its numbers (the params
and a fingerprint of the teacher's weights). A recorded run is not computed again:
re-executing a chapter only redraws it. Rows are written in one atomic write at the end, so
an interrupted run leaves nothing behind.

Every chapter's teacher is checked here, the one place all chapters pass through: when its
scores sit near a random guesser's on a benchmark (`evaluation.chance.near_chance`), the
chapter warns (`NearChanceWarning`), whether the run was just computed or read back, and shows
the same finding as a `{warning}` admonition, which the book puts at the top of the chapter's
page (`pages.VALIDITY`): the terminal's stderr never reaches the page. Where a run also scored
its teacher on shuffled images (chapter 00's control), a benchmark that keeps most of the
teacher's edge without its image warns too (`ImageBlindWarning`).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from typing import Any

import pandas as pd

from studylib.evaluation import chance
from studylib.results import ResultsTable
from studylib.study import params_file
from studylib.study.grid import IMAGE_SHUFFLE
from studylib.study.pages import VALIDITY
from studylib.testbed import shapes


class Chapter:
    """One chapter run: its validated params, its results table and its run_id."""

    def __init__(self, study: str, overrides: Mapping[str, Any]):
        self.started = time.perf_counter()  # wall_s covers the whole notebook up to recording
        self.params = params_file.from_notebook(study, overrides)
        self.params.apply()
        self.table = ResultsTable(self.params.results)
        self.run_id = self.params.run_id()

    @property
    def recorded(self) -> bool:
        return self.table.has(self.run_id)

    def rows(self, compute: Callable[..., list[dict[str, Any]]], *args: Any) -> pd.DataFrame:
        """The run's rows; `compute(params, *args)` runs only when they are not recorded yet.

        A row's own columns win over the run's shared ones (`StudyParams.common`).
        """
        P = self.params
        if self.recorded:
            print(f"run {self.run_id} is in {P.results}: reusing its rows")
        else:
            rows = compute(P, *args)
            wall = round(time.perf_counter() - self.started, 2)
            self.table.record(self.run_id, rows, P.common(wall_s=wall))
            print(f"recorded run {self.run_id}: {len(rows)} rows in {P.results} ({wall:.1f} s)")
        frame = self.table.frame()
        run = frame[frame.run_id == self.run_id]
        # the warning names the notebook line that asked for the rows
        self.check_teachers(run, [P.model], stacklevel=3)
        warn_if_image_blind(run, P.model, stacklevel=3)
        return run

    def check_teachers(self, rows: pd.DataFrame, models: list[str], *,
                       stacklevel: int = 2) -> dict[str, dict[str, str]]:
        """Model -> benchmark -> sentence, for each teacher of `models` near chance in `rows`:
        warned (`warn_if_near_chance`) and shown as one admonition per teacher, with what it
        means for this chapter (`NEAR_CHANCE_MEANS`). A chapter that judges other chapters'
        rows (05) calls it on them."""
        P = self.params
        found = {}
        for m in models:  # a loop, not a comprehension: that would be one more frame (3.11)
            if f := warn_if_near_chance(rows, m, limit=P.eval_limit, seed=P.seed,
                                        stacklevel=stacklevel + 1):
                found[m] = f
        if found:
            from IPython.display import display

            meaning = NEAR_CHANCE_MEANS.get(P.study, NEAR_CHANCE_MEANS["default"])
            text = "\n".join(chance.admonition(m, f, meaning) for m, f in found.items())
            display({"text/markdown": text, "text/plain": text}, raw=True,
                    metadata={VALIDITY: sorted(found)})
        return found


# What a teacher near chance does to each chapter's numbers: the last line of its admonition.
NEAR_CHANCE_MEANS = {
    "default": "A compressed model cannot lose what its teacher never had: on these "
               "benchmarks retention (AVG-%) moves with answer bias, not with compression.",
    "00_testbed": "The teacher has not learned these benchmarks' task, so every later "
                  "chapter's retention on them says little about compression.",
    "01_pruning_comparison": "A pruned model cannot lose what the teacher never had: on these "
                             "benchmarks AVG-% after pruning moves with answer bias (how often "
                             "it says yes, which letter it favours), not with what pruning "
                             "removed, and can read near or above 100%.",
    "02_sft_recovery": "Recovery cannot restore a skill the teacher lacks: on these benchmarks "
                       "the recipes' differences are differences in answer bias, not in "
                       "recovered skill.",
    "03_kd_ablation": "Distillation copies the teacher's answers, guesses included: on these "
                      "benchmarks the losses' differences are differences in answer bias, not "
                      "in what was distilled.",
    "04_data_efficiency": "On these benchmarks the data-fraction curves move with answer bias, "
                          "not with how much of the skill the data recover.",
    "05_best_practices": "Every verdict rests on AVG-%, which these benchmarks hold near 100% "
                         "whatever compression does: a verdict speaks for the benchmarks the "
                         "teachers have learned, not for these.",
    "06_generalization": "On these benchmarks the third architecture's retention is measured "
                         "against a teacher at guessing level, so it says little.",
    "07_quantization": "A quantized model cannot lose what the teacher never had: retention "
                       "near 100% on these benchmarks is not robustness to quantization.",
    "08_resources": "Only this chapter's scores are affected: memory, FLOPs and latency do not "
                    "depend on what the teacher learned.",
}


def teacher_scores(run: pd.DataFrame, model: str, method: str = "none") -> dict[str, float]:
    """The unpruned teacher's headline score per benchmark in a run's rows (method and
    recipe "none", full precision); {} for a run that evaluates no teacher. `method`
    `grid.IMAGE_SHUFFLE` gives its scores on shuffled images instead."""
    if run.empty or not {"model", "metric", "benchmark", "value"} <= set(run.columns):
        return {}
    keep = (run.model == model) & (run.metric == "score") & run.benchmark.isin(shapes.BENCHMARKS)
    if "method" in run:
        keep &= run.method.fillna("none") == method
    if "recipe" in run:
        keep &= run.recipe.fillna("none") == "none"
    if "precision" in run:
        keep &= run.precision.fillna("fp32") == "fp32"
    rows = run[keep]
    return {b: float(v) for b, v in rows.groupby("benchmark", sort=False).value.mean().items()}


def warn_if_near_chance(run: pd.DataFrame, model: str, *, limit: int | None = None,
                        seed: int = 0, stacklevel: int = 2) -> dict[str, str]:
    """`NearChanceWarning` per benchmark where the run's teacher is near chance. The chance
    level is the run's own `chance` rows when it has them, else a random guesser on the same
    seeded items (`limit`, `seed`), computed here (under a second)."""
    scores = teacher_scores(run, model)
    if not scores:
        return {}
    guessed = teacher_scores(run, "chance")
    if not all(b in guessed for b in scores):
        guessed = None
    return chance.warn_near_chance(scores, guessed, model=model, limit=limit, seed=seed,
                                   stacklevel=stacklevel + 1)


def warn_if_image_blind(run: pd.DataFrame, model: str, *, stacklevel: int = 2) -> dict[str, str]:
    """`ImageBlindWarning` per benchmark where the run's teacher keeps most of its edge over
    the guesser with shuffled images; {} for a run without that control or chance rows."""
    shuffled = teacher_scores(run, model, IMAGE_SHUFFLE)
    guessed = teacher_scores(run, "chance")
    if not shuffled or not guessed:
        return {}
    return chance.warn_image_blind(teacher_scores(run, model), shuffled, guessed, model=model,
                                   stacklevel=stacklevel + 1)


def open_chapter(study: str, overrides: Mapping[str, Any]) -> Chapter:
    """Validate and apply a chapter's params (defaults + `overrides`) and say what will run."""
    ch = Chapter(study, overrides)
    P = ch.params
    print(f"study {P.study}, model {P.model} ({P.checkpoint_dir}), run_id {ch.run_id}, "
          f"{'already recorded' if ch.recorded else 'new'}")
    return ch
