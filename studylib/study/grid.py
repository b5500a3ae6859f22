"""The study's one prune -> recover -> evaluate loop, and the recovery chapters' rows.

Every chapter that compresses a model goes through `students()`: chapter 01 prunes only
(with each method's importance score and random baselines), chapters 02, 04 and 06 recover
every pruned model with every recipe and data fraction, chapter 03 compares recipes on one
fixed pruned student, and chapter 07 keeps the recovered models to quantize them. Each
chapter then turns the students into its rows (`recovery_rows()` here for 02, 04 and 06).

A grid is (method, ratio) pairs x importances x recipes x data fractions x seeds. The teacher
is evaluated first; each (method, ratio, importance) prunes a fresh copy of it and is
evaluated ("prune only"); each recipe and fraction then trains its own copy of that pruned
model and is evaluated on the same seeded benchmark items as the teacher, so AVG-% =
AVG / teacher AVG compares like with like.

A replicate seed changes, the same way in every chapter, everything compression draws at
random: the pruning calibration sample, the recovery data subset and the training
order/initialisation (this is the one place that says so). Chapter 03 therefore compares
recipes on the same student and the same examples *within* a seed, and pairs seeds across
recipes. The benchmark subset never changes (`eval_seed`), so seeds differ only in the
model they produce. Every evaluated student is a cell (`studylib.study.cells`): computed
once, by content, and shared by every chapter that asks for it.
"""

from __future__ import annotations

import contextlib
import copy
import dataclasses
import io
import math
import time
import warnings
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

import pandas as pd

from studylib import models
from studylib.compress import prune, recipes, recover
from studylib.compress.teacher_cache import teacher_fingerprint
from studylib.evaluation import evaluate, metrics
from studylib.evaluation.chance import chance_scores
from studylib.results import eval_rows, items_scored
from studylib.study import cells
from studylib.testbed import instructions


@contextlib.contextmanager
def quiet():
    """Keep progress bars, the Trainer's printed logs and deprecation warnings out of the
    chapter (the summary lines and the recorded rows say what happened)."""
    with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()), \
            warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)
        yield


def product(methods: Sequence[str], ratios: Sequence[float]) -> tuple[tuple[str, float], ...]:
    """Every method at every ratio, the shape of most chapters' grids."""
    return tuple((m, float(r)) for m in methods for r in ratios)


@dataclasses.dataclass(frozen=True)
class Grid:
    """What to prune and how to recover it (the loop's whole configuration)."""

    pruned: Sequence[tuple[str, float]]  # (method, ratio) pairs; `product()` for a full grid
    recipes: Sequence[str | recipes.RecoveryRecipe] = ()  # none: prune only
    fractions: Sequence[float] = (1.0,)  # recovery data fractions, each a seeded subset
    seeds: Sequence[int] = (0,)  # replicate seeds (see the module doc)
    importances: Sequence[str] = ("default",)  # "default" = the method's own score
    calib_n: int = 10  # calibration samples for pruning (the paper's n = 10)
    max_steps: int = 0  # cap on recovery steps (0 = one epoch over the subset)
    online_check: bool = False  # also time sft+l2 with the teacher online, per pruned model
    image_shuffle: bool = False  # also score the teacher on shuffled images (chapter 00)


# The image-shuffle control's `method`: the teacher, unpruned, asked every question about
# another item's image (`evaluate.shuffled_images`); rows filtered to method "none" skip it.
IMAGE_SHUFFLE = "image-shuffle"


@dataclasses.dataclass
class Student:
    """One model the loop produced: the teacher, a pruned model or a recovered one."""

    # teacher | control (the teacher on shuffled images) | pruned | recovered | timing
    # (online-teacher check, not evaluated)
    kind: str
    model: Any
    seed: int  # the seed that made it (teacher: the evaluation seed)
    method: str = "none"
    ratio: float = 0.0
    importance: str = "default"
    pruning: prune.PruneReport | None = None
    recipe: recipes.RecoveryRecipe | None = None
    fraction: float | None = None
    recovery: recover.RecoveryReport | None = None
    report: evaluate.EvalReport | None = None  # None when the loop does not evaluate
    cached_counts: dict[str, int] | None = None  # parameter counts of a student read from a cell
    cell: str | None = None  # its cell's key: rows name it, so the analysis can read its items

    @property
    def counts(self) -> dict[str, int]:
        """Parameters by part (`models.parameter_counts`), also for a cell read back."""
        return self.cached_counts or models.parameter_counts(self.model)

    @property
    def ratio_achieved(self) -> float:
        return self.pruning.ratio_achieved if self.pruning else 0.0


def students(teacher, processor, grid: Grid, *, evaluated: bool = True,
             eval_limit: int | None = None, eval_seed: int = 0, batch_size: int = 64,
             log: Callable[[str], None] | None = print,
             cache: cells.CellCache | None = None) -> Iterator[Student]:
    """The teacher, then every pruned and recovered student of `grid`, each evaluated on the
    same seeded items (unless `evaluated` is False: chapter 07 evaluates its own way).

    `teacher` is an in-memory model and is never modified: students are deep copies, on
    the teacher's device (`recover` leaves the teacher where it found it). A generator, so
    a caller that only writes rows holds one pruned model at a time.

    With a `cache` (`studylib.study.cells`), every evaluated student is a cell: one found
    there is read back (its `model` is then None) and one computed is stored. A model is
    pruned only when one of its cells is missing.
    """
    say = log or (lambda _msg: None)
    cache = cache if evaluated else None
    dev = next(teacher.parameters())
    common = dict(teacher=teacher_fingerprint(teacher), limit=eval_limit, eval_seed=eval_seed,
                  batch_size=batch_size, dtype=str(dev.dtype), device=dev.device.type,
                  calib_n=grid.calib_n) if cache else {}

    def ev(model, images: str = "scene"):
        if not evaluated:
            return None
        return evaluate.evaluate(model, processor, limit=eval_limit, seed=eval_seed,
                                 batch_size=batch_size, progress=False, images=images)

    def cell(fields: dict[str, Any], make: Callable[[], Student]) -> Student:
        """The cached student when its cell exists, else `make()` it and store it."""
        if cache is None:
            return make()
        key = cells.cell_key({**common, **fields})
        with cache.lock(key):
            found = cache.get(key)
            if found is not None:
                cache.hits += 1
                student = _from_cell(found)
            else:
                student = make()
                cache.put(key, _to_cell(student))
                cache.computed += 1
            student.cell = key
            return student

    def avg(report) -> str:
        return f"AVG {report.summary().get('AVG', math.nan):5.2f}" if report else "not evaluated"

    chosen = [recipes.get(r) for r in grid.recipes]  # a bad recipe name fails before any work
    t0 = time.perf_counter()
    first = cell(dict(kind="teacher"), lambda: Student("teacher", teacher, eval_seed,
                                                       report=ev(teacher)))
    first.model = teacher
    say(f"teacher: {avg(first.report)}")
    yield first
    if grid.image_shuffle and evaluated:
        control = cell(dict(kind="control", images="shuffled"),
                       lambda: Student("control", teacher, eval_seed, method=IMAGE_SHUFFLE,
                                       report=ev(teacher, images="shuffled")))
        control.model = teacher
        say(f"teacher, images shuffled: {avg(control.report)}")
        yield control
    for seed in grid.seeds:
        calib = instructions.calibration_sample(grid.calib_n, seed=seed)
        for method, ratio in grid.pruned:  # method: a spec, "depth+width@0.25" too
            base, share = prune.parse_method(method)
            for importance in grid.importances:
                if importance != "default" and importance not in prune.IMPORTANCES[base]:
                    continue  # e.g. magnitude scores apply to width only
                made: dict[str, Any] = {}

                def pruned_model(base=base, share=share, ratio=ratio, importance=importance,
                                 seed=seed, calib=calib, made=made):
                    """Prune a copy of the teacher on first need (every cell may be cached)."""
                    if "model" not in made:
                        made["model"] = copy.deepcopy(teacher)
                        with quiet():  # calibration progress bars
                            made["report"] = prune.prune(
                                made["model"], base, ratio, calib, processor, seed=seed,
                                importance=None if importance == "default" else importance,
                                depth_share=share)
                    return made["model"], made["report"]

                where = dict(method=method, ratio=float(ratio), importance=importance)
                fields = dict(kind="pruned", seed=seed, **where)

                def make_pruned(where=where, seed=seed, pruned_model=pruned_model):
                    model, report = pruned_model()
                    return Student("pruned", model, seed, pruning=report, report=ev(model),
                                   **where)

                student = cell(fields, make_pruned)
                where["pruning"] = report = student.pruning
                say(f"seed {seed} {method} {report.importance} {ratio:g} (achieved "
                    f"{report.ratio_achieved:.3f}): prune only {avg(student.report)}")
                yield student
                for recipe in chosen:
                    for fraction in grid.fractions:
                        def make_recovered(recipe=recipe, fraction=fraction, seed=seed,
                                           where=where, pruned_model=pruned_model):
                            rec = _recover(pruned_model()[0], teacher, processor, recipe,
                                           fraction, seed, grid.max_steps)
                            return Student("recovered", rec.model, seed, recipe=recipe,
                                           fraction=float(fraction), recovery=rec,
                                           report=ev(rec.model), **where)

                        student = cell({**fields, "kind": "recovered", "fraction": fraction,
                                        "recipe": recipe.to_dict(), "max_steps": grid.max_steps},
                                       make_recovered)
                        rec = student.recovery
                        say(f"  seed {seed} {recipe.name} {fraction:g}: {rec['steps']} steps "
                            f"in {rec['wall_time_s']:.1f} s, {avg(student.report)}")
                        yield student
                first_seed = seed == grid.seeds[0]  # timed once, not per seed
                if grid.online_check and first_seed and any(r.gamma > 0 and not r.beta
                                                             for r in chosen):
                    online = recipes.get("sft+l2")
                    rec = _recover(pruned_model()[0], teacher, processor, online,
                                   grid.fractions[0], seed, grid.max_steps or 12,
                                   use_cache=False)
                    say(f"  sft+l2 with the teacher online: {rec['step_time_s']['median']:.3f} "
                        f"s/step ({rec['steps']} steps, timing only)")
                    yield Student("timing", rec.model, seed, recipe=online,
                                  fraction=float(grid.fractions[0]), recovery=rec, **where)
    if cache is not None:
        say(f"cells: {cache.hits} read from {cache.root}, {cache.computed} computed")
    say(f"grid done in {time.perf_counter() - t0:.1f} s")


def _to_cell(s: Student) -> dict[str, Any]:
    """What a cell file holds (`_from_cell` reads it back)."""
    r = s.report
    return {"kind": s.kind, "seed": s.seed, "method": s.method, "ratio": s.ratio,
            "importance": s.importance, "fraction": s.fraction, "counts": s.counts,
            "recipe": s.recipe.to_dict() if s.recipe else None,
            "pruning": s.pruning.to_dict() if s.pruning else None,
            "recovery": s.recovery.summary if s.recovery else None,
            "report": {"items": r.items.to_dict("list"), "scores": r.scores.to_dict("list"),
                       "wall_time": r.wall_time, "seed": r.seed}}


def _from_cell(c: dict[str, Any]) -> Student:
    r = c["report"]
    report = evaluate.EvalReport(pd.DataFrame(r["items"]), pd.DataFrame(r["scores"]),
                                 r["wall_time"], r["seed"])
    return Student(c["kind"], None, c["seed"], method=c["method"], ratio=c["ratio"],
                   importance=c["importance"], fraction=c["fraction"], report=report,
                   pruning=prune.PruneReport(**c["pruning"]) if c["pruning"] else None,
                   recipe=recipes.RecoveryRecipe(**c["recipe"]) if c["recipe"] else None,
                   recovery=recover.RecoveryReport(c["recovery"]) if c["recovery"] else None,
                   cached_counts=c["counts"])


def _recover(pruned, teacher, processor, recipe, fraction, seed, max_steps,
             use_cache: bool = True) -> recover.RecoveryReport:
    """Train a copy of `pruned` (recover trains in place; the pruned model is shared)."""
    with quiet():  # the Trainer prints its log dicts
        return recover.recover((copy.deepcopy(pruned), processor), (teacher, processor), recipe,
                               data_fraction=fraction, seed=seed, subset_seed=seed,
                               max_steps=max_steps or None, use_cache=use_cache, progress=False)


def cell_cache(P) -> cells.CellCache:
    """The cells of a chapter's params `P`: `results/cells/` beside its results table."""
    return cells.CellCache(Path(P.results).parent / "cells")


# --- rows of the recovery chapters (02, 04, 06) ----------------------------------------------


def parts(counts: dict[str, int]) -> dict[str, int]:
    """Parameter counts by part (`Student.counts`), as result columns."""
    return {"n_params": counts["total"], "n_params_llm": counts["llm"],
            "n_params_vision": counts["vision"], "n_params_projector": counts["projector"]}


def compute(P) -> list[dict[str, Any]]:
    """Chapters 02, 04 and 06: the teacher, a random guesser on the same items, and every
    pruned and recovered student of the chapter's grid, as rows (`run_grid`)."""
    teacher, processor = models.load(P.checkpoint_dir, dtype=P.dtype, device=P.resolved_device())
    plan = Grid(product(P.methods, P.ratios), recipes=P.recipes, fractions=P.fractions,
                seeds=P.seeds, calib_n=P.calib_n, max_steps=P.max_steps)
    rows = run_grid(teacher, processor, plan, model=P.model, eval_limit=P.eval_limit,
                    eval_seed=P.seed, batch_size=P.batch_size, cache=cell_cache(P))
    chance = chance_scores(limit=P.eval_limit, seed=P.seed)
    rows += [{"model": "chance", "seed": P.seed, **r} for r in chance.to_dict("records")]
    return [{"calib_n": P.calib_n, "max_steps": P.max_steps, **r} for r in rows]


def run_grid(teacher, processor, grid: Grid, *, model: str, eval_limit: int | None = None,
             eval_seed: int = 0, batch_size: int = 64,
             log: Callable[[str], None] | None = print,
             cache: cells.CellCache | None = None) -> list[dict[str, Any]]:
    """Rows for the results table: the teacher's (method "none"), each pruned model's
    (recipe "none") and each recovered model's (recipe and data_fraction set), every student
    with an `AVG / avg_pct` row and what the chapters explain: achieved ratio, trainable
    parameters, steps, wall times, the subset's size and hash."""
    rows: list[dict[str, Any]] = []
    teacher_head: dict[str, float] = {}
    for s in students(teacher, processor, grid, eval_limit=eval_limit, eval_seed=eval_seed,
                      batch_size=batch_size, log=log, cache=cache):
        base = {"method": s.method, "ratio": s.ratio, "recipe": "none", "data_fraction": None,
                "eval_seed": eval_seed, "ratio_achieved": round(s.ratio_achieved, 4),
                "cell": s.cell,
                "train": None, **parts(s.counts), "eval_wall_s": round(s.report.wall_time, 2)}
        if s.kind in ("teacher", "control"):
            teacher_head = s.report.headline() if s.kind == "teacher" else teacher_head
            rows += [{**r, **base} for r in eval_rows(s.report, model=model, seed=s.seed)]
            continue
        base["prune_wall_s"] = s.pruning.wall_time_s
        if s.kind == "recovered":
            base.update(_recovery_columns(s))
        rows += _student_rows(s.report, teacher_head, model, s.seed, base)
    return rows


def _recovery_columns(s: Student) -> dict[str, Any]:
    summary = s.recovery.summary
    return {"recipe": s.recipe.name, "data_fraction": s.fraction, "train": s.recipe.train,
            "trainable_params": summary["parameters"]["trainable"],
            "training_params": summary["parameters"]["total"],
            "steps": summary["steps"], "recovery_wall_s": summary["wall_time_s"],
            "step_time_s": round(summary["step_time_s"]["median"], 4),
            "subset_n": summary["subset"]["n"], "subset_n_total": summary["subset"]["n_total"],
            "subset_hash": summary["subset_hash"], "final_loss": summary["final_loss"],
            "teacher_cache": bool(summary["teacher_cache"].get("used"))}


def _student_rows(report, teacher_head: dict[str, float], model: str, seed: int,
                  extra: dict[str, Any]) -> list[dict[str, Any]]:
    rows = eval_rows(report, model=model, seed=seed)
    head = report.headline()
    complete = all(k in head for k in metrics.PAPER_KEYS)
    pct = metrics.average_pct(head, teacher_head) if complete and metrics.average(
        teacher_head) > 0 else math.nan  # an untrained (micro) teacher can score 0
    rows.append({"model": model, "seed": seed, "benchmark": "AVG", "metric": "avg_pct",
                 "value": pct, "ci_low": None, "ci_high": None,
                 "n": items_scored(report.scores)})
    return [{**r, **extra} for r in rows]
