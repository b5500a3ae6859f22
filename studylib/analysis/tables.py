"""Reading grid rows back: AVG-% per student and seed, means over seeds with their interval, the teacher's and a random guesser's levels, wide tables."""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
import pandas as pd

from studylib.analysis import stats
from studylib.evaluation import metrics

GRID = ["method", "ratio", "recipe", "data_fraction", "seed"]  # the coordinates of a grid cell


def avg_pct(df: pd.DataFrame) -> pd.DataFrame:
    """One row per student and seed: grid coordinates, achieved ratio and AVG-%."""
    rows = df[(df.benchmark == "AVG") & (df.metric == "avg_pct")].copy()
    keep = [c for c in (*GRID, "ratio_achieved", "train", "trainable_params", "steps",
                        "recovery_wall_s", "subset_n", "subset_hash") if c in rows]
    out = rows[keep].assign(avg_pct=rows.value.astype(float))
    out["recipe"] = out.recipe.fillna("none")
    out["ratio"] = out.ratio.astype(float).round(4)  # join keys with the paper's tables
    return out.reset_index(drop=True)


def _ci95(values: np.ndarray) -> float:
    """Half-width of the 95% CI of the mean over seeds (`stats.halfwidth`; grid rows carry
    no evaluation CI). NaN with one seed: a table then shows no "±" column rather than a 0
    that would read as certainty."""
    n = len(values)
    if n < 2:
        return math.nan
    return stats.halfwidth(float(np.std(values, ddof=1)), n)


def summarize(pct: pd.DataFrame, by: Sequence[str]) -> pd.DataFrame:
    """Mean AVG-% over seeds with the 95% CI half-width (`stats`; NaN for one seed)."""
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
    return metrics.pct_of_teacher(metrics.average(head), teacher_avg(df))


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

