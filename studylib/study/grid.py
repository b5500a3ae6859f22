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

import numpy as np
import pandas as pd

from studylib import models
from studylib.compress import prune, recipes, recover
from studylib.evaluation import evaluate, metrics
from studylib.results import eval_rows
from studylib.testbed import shapes

GRID = ["method", "ratio", "recipe", "data_fraction", "seed"]


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
        calib = shapes.calibration_sample(calib_n, seed=seed)
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


def avg_pct(df: pd.DataFrame) -> pd.DataFrame:
    """One row per student and seed: grid coordinates, achieved ratio and AVG-%."""
    rows = df[(df.benchmark == "AVG") & (df.metric == "avg_pct")].copy()
    keep = [c for c in (*GRID, "ratio_achieved", "train", "trainable_params", "steps",
                        "recovery_wall_s", "subset_n", "subset_hash") if c in rows]
    out = rows[keep].assign(avg_pct=rows.value.astype(float))
    out["recipe"] = out.recipe.fillna("none")
    out["ratio"] = out.ratio.astype(float).round(4)  # join keys with the paper's tables
    return out.reset_index(drop=True)


# Student t quantiles t(0.975, df) for df = 1..10 (no scipy here); 1.96 beyond df 30.
_T975 = (12.706, 4.303, 3.182, 2.776, 2.571, 2.447, 2.365, 2.306, 2.262, 2.228)


def _ci95(values: np.ndarray) -> float:
    """Half-width of a t-based 95% interval of the mean over seeds (NaN with one seed)."""
    n = len(values)
    if n < 2:
        return math.nan
    df = n - 1
    t = _T975[df - 1] if df <= len(_T975) else (2.09 if df < 20 else 2.03 if df <= 30 else 1.96)
    return float(t * np.std(values, ddof=1) / math.sqrt(n))


def summarize(pct: pd.DataFrame, by: Sequence[str]) -> pd.DataFrame:
    """Mean AVG-% over seeds with the 95% CI half-width (t interval; NaN for one seed)."""
    g = pct.groupby(list(by), dropna=False, sort=True)
    out = g.avg_pct.agg(mean="mean", seeds="count").reset_index()
    out["ci95"] = g.avg_pct.apply(lambda v: _ci95(v.to_numpy(float))).to_numpy()
    if "ratio_achieved" in pct and "ratio_achieved" not in by:
        out["ratio_achieved"] = g.ratio_achieved.mean().to_numpy()
    return out


def teacher_avg(df: pd.DataFrame) -> float:
    """The teacher's AVG in a run's rows."""
    row = df[(df.method == "none") & (df.benchmark == "AVG") & (df.metric == "paper")
             & (df.model != "chance")]
    return float(row.value.iloc[0])


def chance_pct(df: pd.DataFrame) -> float:
    """A random guesser's AVG as a % of the teacher's (the floor a collapsed model hits)."""
    rows = df[(df.model == "chance") & (df.metric == "score")]
    head = dict(zip(rows.benchmark, rows.value, strict=False))
    if not all(k in head for k in metrics.PAPER_KEYS):
        return math.nan
    return 100.0 * metrics.average(head) / teacher_avg(df)


def trainable_table(df: pd.DataFrame) -> pd.DataFrame:
    """What each recipe trains, per pruned model: trainable parameters by part (seed 0)."""
    rows = df[(df.benchmark == "AVG") & (df.metric == "avg_pct") & (df.recipe != "none")]
    if rows.empty:
        return pd.DataFrame()
    rows = rows[rows.seed == rows.seed.min()]
    out = rows[["method", "ratio", "ratio_achieved", "recipe", "train", "n_params",
                "n_params_vision", "n_params_projector", "n_params_llm",
                "trainable_params"]].drop_duplicates(["method", "ratio", "recipe"])
    ints = ["n_params", "n_params_vision", "n_params_projector", "n_params_llm",
            "trainable_params"]
    out = out.astype({c: "int64" for c in ints})
    out = out.assign(lora_params=out.trainable_params - out.n_params_projector,
                     trainable_share=(out.trainable_params / out.n_params).round(4))
    return out.sort_values(["method", "ratio", "recipe"]).reset_index(drop=True)


def wide(summary: pd.DataFrame, columns: str, index: Sequence[str] = ("method", "ratio"),
         paper: pd.DataFrame | None = None) -> pd.DataFrame:
    """A readable AVG-% table: one row per `index`, the achieved ratio, the mean per value
    of `columns` (and its 95% CI half-width where there are several seeds), then the
    paper's AVG-% where its tables have the point."""
    index = list(index)
    table = summary.pivot_table(index=index, columns=columns, values="mean", sort=True)
    if columns == "recipe":  # the paper's order: prune only, + projector, + projector + LLM
        first = [c for c in ("none", "sft-mm", "sft") if c in table.columns]
        table = table[first + [c for c in table.columns if c not in first]]
    table.columns = [f"{c}" for c in table.columns]
    removed = summary.groupby(index).ratio_achieved.mean().rename("removed")
    out = pd.concat([removed, table], axis=1)
    if summary.ci95.notna().any():
        ci = summary.pivot_table(index=index, columns=columns, values="ci95", sort=True,
                                 dropna=False)
        out = out.join(ci[[c for c in ci.columns if f"{c}" in table.columns]]
                       .rename(columns=lambda c: f"± {c}"))
    if paper is not None and not paper.empty and columns == "recipe":
        p = paper[paper.ratio > 0].pivot_table(index=index, columns="recipe", values="avg_pct")
        p.columns = [f"paper {c}" for c in p.columns]
        out = out.join(p, how="left")
    return out.round(1).assign(removed=out.removed.round(3))


# --- data subsets --------------------------------------------------------------------------


def subsets(fractions: Sequence[float], seeds: Sequence[int]) -> list[recover.Subset]:
    """The seeded recovery-data subsets a grid trains on (what `recover` draws), by seed
    and increasing fraction."""
    records = recover.training_records()
    return [recover.select_subset(records, f, seed)
            for seed in seeds for f in sorted(fractions)]


def subset_table(subs: Sequence[recover.Subset], batch_size: int = 16) -> pd.DataFrame:
    """Per subset: size in images and question/answer pairs, steps per epoch, content hash,
    and whether it contains the next-smaller subset of the same seed."""
    records = recover.training_records()
    rows, previous = [], {}
    for sub in subs:
        pairs = sum(len(records[i]["conversations"]) // 2 for i in sub.indices)
        idx = set(sub.indices)
        before = previous.get(sub.seed)
        rows.append({"seed": sub.seed, "fraction": sub.fraction, "images": len(idx),
                     "qa_pairs": pairs, "steps_per_epoch": math.ceil(len(idx) / batch_size),
                     "hash": sub.hash[:12],
                     "contains_smaller": None if before is None else before <= idx})
        previous[sub.seed] = idx
    return pd.DataFrame(rows)


# --- takeaways (computed from the rows, printed by the chapters) ---------------------------


def _fmt(mean: float, ci: float) -> str:
    return f"{mean:.1f}%" + (f" ± {ci:.1f}" if np.isfinite(ci) else "")


def sft_takeaways(summary: pd.DataFrame, items: int, chance: float = math.nan) -> list[str]:
    """Chapter 02's findings from `summarize(pct, ["method", "ratio", "recipe"])`:
    per setting the three curves, how much of the full recovery the projector alone gets,
    the paper's finding 3 (projector-only >= 95% at the smallest ratio) and finding 2
    (which method is ahead once the LLM is finetuned)."""
    lines = []
    s = summary.set_index(["method", "ratio", "recipe"])
    for (method, ratio), g in summary.groupby(["method", "ratio"], sort=True):
        by = g.set_index("recipe")
        parts = [f"{r} {_fmt(by.loc[r, 'mean'], by.loc[r, 'ci95'])}" for r in
                 ("none", "sft-mm", "sft", *[x for x in by.index
                                             if x not in ("none", "sft-mm", "sft")])
                 if r in by.index]
        line = (f"{method} {ratio:g} ({100 * g.ratio_achieved.iloc[0]:.3g}% removed): "
                + " -> ".join(parts).replace("none ", "prune only "))
        if {"none", "sft-mm", "sft"} <= set(by.index):
            gain_mm = by.loc["sft-mm", "mean"] - by.loc["none", "mean"]
            gain_full = by.loc["sft", "mean"] - by.loc["none", "mean"]
            line += (f"; over prune only: projector {gain_mm:+.1f} points, "
                     f"projector + LoRA {gain_full:+.1f}")
        lines.append(line)
    for method in sorted(set(summary.method)):
        smallest = summary[summary.method == method].ratio.min()
        if (method, smallest, "sft-mm") in s.index:
            v = s.loc[(method, smallest, "sft-mm"), "mean"]
            verdict = "as in the paper" if v >= 95 else "below the paper's >= 95%"
            lines.append(f"finding 3, {method} at {smallest:g}: projector-only finetuning keeps "
                         f"{v:.1f}% ({verdict})")
    if {"layer", "width"} <= set(summary.method) and "sft" in set(summary.recipe):
        for ratio in sorted(set(summary.ratio)):
            try:
                lay, wid = (s.loc[(m, ratio, "sft"), "mean"] for m in ("layer", "width"))
            except KeyError:
                continue
            lines.append(f"finding 2, {ratio:g} with projector + LoRA: "
                         f"{'layer' if lay > wid else 'width'} ahead ({lay:.1f}% vs {wid:.1f}%; "
                         "paper: layer below ~30-40%, width above)")
    if np.isfinite(chance) and chance >= 95:
        lines.append(f"a random guesser reaches {chance:.0f}% of the teacher's AVG: the teacher is "
                     "near chance on some benchmarks, so AVG-% differences partly reflect answer "
                     "biases, not skill (chapter 00 gives the per-benchmark scores)")
    elif np.isfinite(chance):
        low = summary[summary["mean"] <= chance + 5]
        lines.append(f"at or near chance ({chance:.0f}% + 5): " + (", ".join(
            f"{m} {r:g} {c}" for m, r, c in zip(low.method, low.ratio, low.recipe, strict=True))
            or "none"))
    lines.append(f"{items} items per benchmark" + (
        "; with this few items differences of a few points are noise" if items < 100 else ""))
    return lines


def data_takeaways(summary: pd.DataFrame, items: int) -> list[str]:
    """Chapter 04's findings from `summarize(pct, [..., "data_fraction"])`: per setting and
    recipe, the smallest fraction's result as a share of the largest's (the paper's
    finding 5: >= 95% below ~50% compression) and how the curve grows."""
    lines = []
    for (method, ratio, recipe), g in summary.groupby(["method", "ratio", "recipe"], sort=True):
        g = g.sort_values("data_fraction")
        lo, hi = g.iloc[0], g.iloc[-1]
        share = 100 * lo["mean"] / hi["mean"] if hi["mean"] else math.nan
        curve = ", ".join(f"{100 * f:g}%: {m:.1f}" for f, m in zip(g.data_fraction, g["mean"],
                                                                     strict=True))
        line = (f"{method} {ratio:g}, {recipe}: AVG-% {curve}; {100 * lo.data_fraction:g}% "
                f"of the data gives {share:.0f}% of the {100 * hi.data_fraction:g}% result")
        if hi.data_fraction == 1.0 and lo.data_fraction <= 0.05:
            expect = ">= 95%" if ratio < 0.5 else "< 95% (more data needed)"
            ok = (share >= 95) == (ratio < 0.5)
            line += f" (paper, finding 5: {expect} -> {'agrees' if ok else 'disagrees'})"
        else:
            line += " (finding 5 compares 5% with 100%: not in this grid)"
        lines.append(line)
    lines.append(f"{items} items per benchmark" + (
        "; with this few items differences of a few points are noise" if items < 100 else ""))
    return lines
