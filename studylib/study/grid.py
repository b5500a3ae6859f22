"""Prune -> recover -> evaluate over a grid, as tidy result rows (chapters 02 and 04).

A grid is methods x ratios x recipes x data fractions x seeds. Each (method, ratio, seed)
is pruned once from the teacher and evaluated ("prune only"); each recipe and fraction then
trains its own copy of that pruned model (`recover` trains in place) and is evaluated on the
same seeded benchmark items as the teacher, so AVG-% = AVG / teacher AVG compares like with
like.

A replicate seed changes everything that is drawn at random in compression: the pruning
calibration sample, the recovery data subset and the training order/initialisation. The
benchmark subset stays fixed (`eval_seed`), so seeds differ only in the model they produce.

Rows follow the results table's schema (one per benchmark and metric) and carry the grid
coordinates plus what the chapter explains: achieved ratio, trainable parameters, steps,
wall times, the subset's size and hash. Each student also gets an `AVG / avg_pct` row.
"""

from __future__ import annotations

import contextlib
import copy
import io
import math
import time
import warnings
from collections.abc import Callable, Sequence
from typing import Any

from studylib import models
from studylib.compress import prune, recipes, recover
from studylib.evaluation import evaluate, metrics
from studylib.results import eval_rows
from studylib.testbed import instructions


@contextlib.contextmanager
def quiet():
    """Keep progress bars, the Trainer's printed logs and deprecation warnings out of the
    chapter (the summary lines and the recorded rows say what happened)."""
    with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()), \
            warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)
        yield


def _parts(model) -> dict[str, int]:
    counts = models.parameter_counts(model)
    return {"n_params": counts["total"], "n_params_llm": counts["llm"],
            "n_params_vision": counts["vision"], "n_params_projector": counts["projector"]}


def _student_rows(report, teacher_head: dict[str, float], model: str, seed: int,
                  extra: dict[str, Any]) -> list[dict[str, Any]]:
    rows = eval_rows(report, model=model, seed=seed)
    head = report.headline()
    complete = all(k in head for k in metrics.PAPER_KEYS)
    pct = metrics.average_pct(head, teacher_head) if complete and metrics.average(
        teacher_head) > 0 else math.nan  # an untrained (micro) teacher can score 0
    rows.append({"model": model, "seed": seed, "benchmark": "AVG", "metric": "avg_pct",
                 "value": pct, "ci_low": None, "ci_high": None,
                 "n": int(report.scores["n"].sum())})
    return [{**r, **extra} for r in rows]


def run_grid(teacher, processor, *, model: str, methods: Sequence[str],
             ratios: Sequence[float], recipe_names: Sequence[str],
             fractions: Sequence[float], seeds: Sequence[int], calib_n: int = 10,
             eval_limit: int | None = None, eval_seed: int = 0, batch_size: int = 64,
             max_steps: int = 0, device: str = "cpu",
             log: Callable[[str], None] | None = print) -> list[dict[str, Any]]:
    """Evaluate the teacher, then every pruned and recovered student of the grid.

    `teacher` is an in-memory model (never modified: students are deep copies). Returns
    rows for the results table: the teacher's (method "none"), each pruned model's
    (recipe "none") and each recovered model's (recipe and data_fraction set).
    """
    say = log or (lambda _msg: None)
    t0 = time.perf_counter()

    def ev(m):
        return evaluate.evaluate(m, processor, limit=eval_limit, seed=eval_seed,
                                 batch_size=batch_size, progress=False)

    t_report = ev(teacher)
    teacher_head = t_report.headline()
    base = {"eval_seed": eval_seed, "ratio_achieved": 0.0, "train": None}
    rows = [{**r, "method": "none", "ratio": 0.0, "recipe": "none", "data_fraction": None,
             **base, **_parts(teacher), "eval_wall_s": round(t_report.wall_time, 2)}
            for r in eval_rows(t_report, model=model, seed=eval_seed)]
    say(f"teacher: AVG {t_report.summary()['AVG']:.2f} ({t_report.wall_time:.1f} s)")
    for seed in seeds:
        calib = instructions.calibration_sample(calib_n, seed=seed)
        for method in methods:
            for ratio in ratios:
                pruned = copy.deepcopy(teacher).to(device)
                with quiet():  # calibration progress bars
                    p_report = prune.prune(pruned, method, ratio, calib, processor, seed=seed)
                where = {"method": method, "ratio": float(ratio),
                         "ratio_achieved": round(p_report.ratio_achieved, 4),
                         "prune_wall_s": p_report.wall_time_s, "eval_seed": eval_seed,
                         **_parts(pruned)}
                report = ev(pruned)
                rows += _student_rows(report, teacher_head, model, seed,
                                      {**where, "recipe": "none", "data_fraction": None,
                                       "train": None, "eval_wall_s": round(report.wall_time, 2)})
                say(f"seed {seed} {method} {ratio:g} (achieved {p_report.ratio_achieved:.3f}): "
                    f"prune only AVG-% {rows[-1]['value']:.1f}")
                for name in recipe_names:
                    for fraction in fractions:
                        student = copy.deepcopy(pruned).to(device)
                        with quiet():  # the Trainer prints its log dicts
                            rec = recover.recover((student, processor), (teacher, processor),
                                                  name, data_fraction=fraction, seed=seed,
                                                  subset_seed=seed,
                                                  max_steps=max_steps or None, progress=False)
                        teacher.to(device)  # recover parks a cached teacher on the CPU
                        s = rec.summary
                        report = ev(rec.model)
                        rows += _student_rows(report, teacher_head, model, seed, {
                            **where, "recipe": name, "data_fraction": float(fraction),
                            "train": recipes.get(name).train,
                            "trainable_params": s["parameters"]["trainable"],
                            "training_params": s["parameters"]["total"],
                            "steps": s["steps"], "recovery_wall_s": s["wall_time_s"],
                            "step_time_s": round(s["step_time_s"]["median"], 4),
                            "subset_n": s["subset"]["n"], "subset_n_total": s["subset"]["n_total"],
                            "subset_hash": s["subset_hash"], "final_loss": s["final_loss"],
                            "teacher_cache": bool(s["teacher_cache"].get("used")),
                            "eval_wall_s": round(report.wall_time, 2)})
                        say(f"seed {seed} {method} {ratio:g} {name} {fraction:g}: "
                            f"{s['steps']} steps in {s['wall_time_s']:.1f} s, "
                            f"AVG-% {rows[-1]['value']:.1f}")
    say(f"grid done in {time.perf_counter() - t0:.1f} s")
    return rows


# --- reading the rows back ---------------------------------------------------------------


# --- data subsets --------------------------------------------------------------------------


# --- takeaways (computed from the rows, printed by the chapters) ---------------------------


