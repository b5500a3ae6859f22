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
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from typing import Any

import pandas as pd

from studylib.results import ResultsTable
from studylib.study import params_file


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
        return frame[frame.run_id == self.run_id]


def open_chapter(study: str, overrides: Mapping[str, Any]) -> Chapter:
    """Validate and apply a chapter's params (defaults + `overrides`) and say what will run."""
    ch = Chapter(study, overrides)
    P = ch.params
    print(f"study {P.study}, model {P.model} ({P.checkpoint_dir}), run_id {ch.run_id}, "
          f"{'already recorded' if ch.recorded else 'new'}")
    return ch
