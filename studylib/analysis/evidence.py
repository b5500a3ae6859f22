"""From results-table rows to evaluations: AVG-% per model and seed, and its statistics.

Every number here is read from the tidy results table (`studylib.results`); nothing is
trained.

- `evaluations(df)`: one row per evaluated model (a run's condition and training seed)
  with its six benchmark scores, the paper's AVG, and **AVG-%** = 100 * AVG / AVG of the
  unpruned teacher measured in the same run (same items, same seed), plus the evaluation
  standard error of AVG-% derived from the per-benchmark 95% bootstrap CIs.
- `summary(ev)`: AVG-% per condition, mean over seeds with its 95% CI; `compare(a, b)`:
  the difference of two conditions' AVG-% with its 95% CI. Both follow the study's one CI
  rule, `studylib.analysis.stats`.
- `matched(e, method, at)`: one method's AVG-% at another's achieved ratio, interpolated.
- `headline(ev)`, `coverage(df)`: the retained-performance headline and what the table holds.

The paper's findings are judged from these in `studylib.analysis.findings`.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np
import pandas as pd

from studylib.analysis import stats
from studylib.evaluation import metrics

BENCHMARKS = metrics.PAPER_KEYS
# A condition: what was pruned and how it was recovered, including the training length
# (`max_steps`, 0 = one epoch over the subset), so capped smoke runs never pool with full ones.
CONDITION = ("arch", "method", "ratio", "recipe", "data_fraction", "max_steps")
MATCH_TOL = 0.005  # achieved ratios closer than this are compared as they are (`matched`)


# --- from rows to evaluations -------------------------------------------------------------


def _run_model(models: pd.Series) -> str:
    own = models[models != "chance"]
    return own.iloc[0] if len(own) else models.iloc[0]


def latest_runs(df: pd.DataFrame) -> pd.DataFrame:
    """Keep, per executed notebook (study, model, key), only its newest run: a rerun with
    new parameters or a retrained teacher replaces the old rows instead of mixing with them.
    A run's model is its first row's other than the random guesser's (chapter 01 records
    "chance" rows first: taken as the model, two architectures' runs of one key were one
    notebook, and only the newer one counted)."""
    if df.empty or not {"study", "model", "key", "timestamp", "run_id"} <= set(df.columns):
        return df
    runs = df.groupby("run_id", sort=False).agg(study=("study", "first"),
                                                model=("model", _run_model),
                                                key=("key", "first"),
                                                timestamp=("timestamp", "max"))
    runs = runs.reset_index()
    runs["notebook"] = [f"{s}/{m}__{k}" for s, m, k in
                        zip(runs.study, runs.model, runs.key, strict=True)]
    newest = runs.sort_values("timestamp").groupby("notebook").tail(1).run_id
    return df[df.run_id.isin(set(newest))]


def _num(series: pd.Series) -> pd.Series:
    return pd.to_numeric(series, errors="coerce")


def evaluations(df: pd.DataFrame, studies: Sequence[str] | None = None,
                dedupe: bool = True) -> pd.DataFrame:
    """One row per evaluated model: condition, seed, six scores, AVG, AVG-% and its eval SE.

    `df` is the results table (any studies). Rows of random-guess baselines (model
    "chance") and non-benchmark rows (timings, verdicts) are ignored. With `dedupe`, one
    condition and seed measured by several chapters counts once (the larger benchmark
    subset, then the newest run).
    """
    cols = ["study", "run_id", *CONDITION, "seed", "ratio_achieved", "limit", "timestamp",
            *BENCHMARKS, "AVG",
            "se_AVG", "teacher_AVG", "AVG_pct", "se_pct",
            *(f"teacher_{b}" for b in BENCHMARKS), "cell", "teacher_cell"]
    need = {"run_id", "benchmark", "metric", "value", *CONDITION} - {"max_steps"}
    if df is None or df.empty or not need <= set(df.columns):
        return pd.DataFrame(columns=cols)
    df = latest_runs(df)
    if studies:
        df = df[df.study.isin(list(studies))]
    rows = df[(df.metric == "score") & df.benchmark.isin(BENCHMARKS)]
    if "model" in rows:
        rows = rows[rows.model != "chance"]
    if rows.empty:
        return pd.DataFrame(columns=cols)
    rows = rows.copy()
    for col in ("study", "seed", "limit", "timestamp", "ci_low", "ci_high", "ratio_achieved",
                "cell"):
        if col not in rows:
            rows[col] = np.nan
    rows["ratio"] = _num(rows.ratio).round(4)
    rows["data_fraction"] = _num(rows.data_fraction)
    steps = _num(rows["max_steps"]) if "max_steps" in rows else pd.Series(0.0, rows.index)
    rows["max_steps"] = steps.fillna(0).where(rows.recipe.fillna("none") != "none", 0).astype(int)
    scale = rows.benchmark.map(metrics.PAPER_SCALE)
    rows["se"] = stats.se_from_ci(_num(rows.ci_low), _num(rows.ci_high)) / scale
    keys = ["study", "run_id", *CONDITION, "seed"]
    out = []
    for key, g in rows.groupby(keys, dropna=False, sort=False):
        scores = dict(zip(g.benchmark, _num(g.value), strict=False))
        if not all(b in scores for b in BENCHMARKS):
            continue
        se = dict(zip(g.benchmark, g.se, strict=False))
        rec = dict(zip(keys, key, strict=True))
        rec.update({b: scores[b] for b in BENCHMARKS})
        rec["AVG"] = metrics.average(scores)
        rec["se_AVG"] = math.sqrt(sum(np.nan_to_num(se[b]) ** 2 for b in BENCHMARKS)) / len(
            BENCHMARKS)
        rec["limit"] = g["limit"].iloc[0]
        achieved = _num(g.ratio_achieved).dropna()
        rec["ratio_achieved"] = float(achieved.mean()) if len(achieved) else (
            0.0 if rec["method"] == "none" else np.nan)
        rec["timestamp"] = g["timestamp"].max()
        cells = g["cell"].dropna()
        rec["cell"] = cells.iloc[0] if len(cells) else None  # the grid cell with its items
        out.append(rec)
    ev = pd.DataFrame(out)
    if ev.empty:
        return pd.DataFrame(columns=cols)
    ev = _attach_teacher(ev)
    return (dedupe_evaluations(ev) if dedupe else ev.reset_index(drop=True))[cols]


def dedupe_evaluations(ev: pd.DataFrame) -> pd.DataFrame:
    """One evaluation per condition and seed: the larger benchmark subset, then the newest."""
    return (ev.sort_values(["limit", "timestamp"], na_position="first")
            .drop_duplicates([*CONDITION, "seed"], keep="last").reset_index(drop=True))


def _attach_teacher(ev: pd.DataFrame) -> pd.DataFrame:
    """AVG-% against the unpruned model (method "none") of the same run; a run without one
    borrows the newest teacher of the same architecture scored on the same subset size."""
    teachers = ev[ev.method == "none"].sort_values("timestamp")
    by_run = teachers.groupby("run_id").tail(1).set_index("run_id")
    by_arch = teachers.groupby(["arch", "limit"], dropna=False).tail(1).set_index(
        ["arch", "limit"])
    t_avg, t_cell, t_scores = [], [], {b: [] for b in BENCHMARKS}
    for r in ev.itertuples(index=False):
        if r.run_id in by_run.index:
            t = by_run.loc[r.run_id]
        elif (r.arch, r.limit) in by_arch.index:
            t = by_arch.loc[(r.arch, r.limit)]
        else:
            t = None
        t_avg.append(np.nan if t is None else float(t.AVG))
        t_cell.append(None if t is None else t.cell)
        for b in BENCHMARKS:
            t_scores[b].append(np.nan if t is None else float(t[b]))
    ev = ev.copy()
    ev["teacher_AVG"] = t_avg
    ev["teacher_cell"] = t_cell
    for b in BENCHMARKS:
        ev[f"teacher_{b}"] = t_scores[b]
    ev["AVG_pct"] = metrics.pct_of_teacher(ev.AVG, ev.teacher_AVG)
    ev["se_pct"] = metrics.pct_of_teacher(ev.se_AVG, ev.teacher_AVG)
    return ev


def retention(ev: pd.DataFrame) -> pd.DataFrame:
    """Per-benchmark retention: 100 * score / the teacher's score on that benchmark."""
    out = ev.copy()
    for b in BENCHMARKS:
        out[b] = metrics.pct_of_teacher(out[b], out[f"teacher_{b}"].replace(0, np.nan))
    return out


# --- statistics ----------------------------------------------------------------------------


def summary(ev: pd.DataFrame, by: Sequence[str] = CONDITION) -> pd.DataFrame:
    """AVG-% per condition: mean over seeds, seeds, 95% CI (`stats.RULE`)."""
    by = list(by)
    if ev.empty:
        return pd.DataFrame(columns=[*by, "seeds", "AVG_pct", "ci_low", "ci_high", "AVG"])
    rows = []
    for key, g in ev.groupby(by, dropna=False, sort=False):
        vals = g.AVG_pct.dropna()
        n = len(vals)
        mean = float(vals.mean()) if n else np.nan
        half = stats.halfwidth(float(vals.std(ddof=1)) if n > 1 else np.nan, n,
                               float(g.se_pct.mean()))
        rows.append({**dict(zip(by, key if isinstance(key, tuple) else (key,), strict=True)),
                     "seeds": n, "AVG_pct": mean, "ci_low": mean - half, "ci_high": mean + half,
                     "AVG": float(g.AVG.mean())})
    return pd.DataFrame(rows)


def select(ev: pd.DataFrame, **where: Any) -> pd.DataFrame:
    """Rows of `ev` matching every key=value (None matches a missing data_fraction)."""
    mask = pd.Series(True, index=ev.index)
    for key, value in where.items():
        col = ev[key]
        if value is None:
            mask &= col.isna()
        elif isinstance(value, float):
            mask &= np.isclose(_num(col), value, atol=1e-6)
        else:
            mask &= col == value
    return ev[mask]


def compare(a: pd.DataFrame, b: pd.DataFrame | None = None, scale: float = 1.0,
            threshold: float = 0.0, noise=None) -> dict[str, Any] | None:
    """d = mean(AVG-% of a) - scale * mean(AVG-% of b) - threshold, its 95% CI and p-value.

    `b=None` compares `a` with the constant `threshold`. Seeds present on both sides are
    paired (a seed is the same calibration sample and data subset on both). The evaluation
    noise is paired too when `noise` (`analysis.paired.PairedNoise`) can read every row's
    items: both sides, and their teachers, resampled on the same items (`paired` True in
    the result). Otherwise the two sides' noises add as for independent models, which is
    conservative for models scored on the same items. Returns None when either side has no
    evaluation.
    """
    a = a.dropna(subset=["AVG_pct"])
    if a.empty or (b is not None and b.dropna(subset=["AVG_pct"]).empty):
        return None
    sa = a.groupby("seed", dropna=False).agg(v=("AVG_pct", "mean"), se=("se_pct", "mean"))
    if b is None:
        diffs, se_eval, vb = sa.v - threshold, float(np.nan_to_num(sa.se.mean())), threshold
    else:
        b = b.dropna(subset=["AVG_pct"])
        sb = b.groupby("seed", dropna=False).agg(v=("AVG_pct", "mean"), se=("se_pct", "mean"))
        se_eval = math.sqrt(np.nan_to_num(sa.se.mean()) ** 2
                            + (scale * np.nan_to_num(sb.se.mean())) ** 2)
        common = sa.index.intersection(sb.index)
        vb = float(sb.v.mean())
        diffs = sa.v[common] - scale * sb.v[common] - threshold
    if len(diffs):
        n = len(diffs)
        d = float(diffs.mean())
        se_seeds = float(diffs.std(ddof=1)) / math.sqrt(n) if n > 1 else math.nan
    else:  # no shared seed: the seed part is that of a difference of two independent means
        na, nb = len(sa), len(sb)
        n = min(na, nb)
        d = float(sa.v.mean() - scale * sb.v.mean() - threshold)
        se_seeds = (math.sqrt(sa.v.var(ddof=1) / na + scale ** 2 * sb.v.var(ddof=1) / nb)
                    if n > 1 else math.nan)
    paired = None
    if noise is not None:  # on the rows the point estimate pairs: the shared seeds
        on = (lambda rows: rows[rows.seed.isin(diffs.index)]) if b is not None and len(diffs) \
            else (lambda rows: rows)
        paired = noise.se(on(a), None if b is None else on(b), scale)
    if paired is not None:
        se_eval = paired
    half = stats.combine(se_seeds, n - 1, se_eval)
    return {"d": d, "lo": d - half, "hi": d + half, "seeds": n, "a": float(sa.v.mean()),
            "b": vb, "p": stats.p_value(d, se_seeds, n - 1, se_eval),
            "se_seeds": se_seeds, "se_eval": se_eval, "paired": paired is not None}


def matched(e: pd.DataFrame, method: str, at: pd.DataFrame) -> tuple[pd.DataFrame, str]:
    """`method`'s evaluations at the achieved ratio of `at` (another method's rows at one
    requested ratio), per seed: as measured when some ratio of `method` achieved it within
    MATCH_TOL, else linearly interpolated between the two measured ratios around it (the
    unpruned model, 100% at ratio 0, is the lower end). The note says which. Beyond the
    widest ratio `method` measured there is no match: no rows (on 6-layer teachers a requested
    60% removes 4 layers, 66.7%, and a width model pruned 60% would be compared with a layer
    model pruned 6.7 points more, a tilt toward width)."""
    target = float(at.ratio_achieved.mean())
    own = e[e.method == method].dropna(subset=["ratio_achieved"])
    if own.empty or not np.isfinite(target):
        return own.iloc[0:0], ""
    close = own[np.isclose(own.ratio_achieved, target, atol=MATCH_TOL)]
    if not close.empty:
        return close, f"at achieved {target:.3f}"
    out = []
    for seed, g in own.groupby("seed"):
        pts = g.groupby("ratio_achieved").agg(v=("AVG_pct", "mean"), se=("se_pct", "mean"))
        x = np.r_[0.0, pts.index.to_numpy()]
        if not x[0] <= target <= x[-1]:
            continue
        v, se = np.r_[100.0, pts.v.to_numpy()], np.r_[0.0, np.nan_to_num(pts.se.to_numpy())]
        hi = int(np.searchsorted(x, target))
        w = (target - x[hi - 1]) / (x[hi] - x[hi - 1])
        out.append({"seed": seed, "AVG_pct": (1 - w) * v[hi - 1] + w * v[hi],
                    "se_pct": float(np.hypot((1 - w) * se[hi - 1], w * se[hi]))})
    if not out:  # outside the measured range: no comparison at a matched budget
        return own.iloc[0:0], (f"not matched: achieved {target:.3f}, beyond {method}'s "
                               f"widest {float(own.ratio_achieved.max()):.3f}")
    return pd.DataFrame(out), f"{method} interpolated to achieved {target:.3f}"


def ci_side(result: dict[str, Any]) -> str:
    """Where one comparison's unadjusted 95% CI lies: "supported" (above 0), "contradicted"
    (below) or "tie". Descriptive only: the findings' verdicts use Holm-adjusted p-values."""
    if result["lo"] > 0:
        return "supported"
    return "contradicted" if result["hi"] < 0 else "tie"


# --- what the table says -------------------------------------------------------------------


def headline(ev: pd.DataFrame) -> pd.DataFrame:
    """Per architecture and ratio: AVG-% pruned only (best method) and recovered (best
    setting), the issue's headline retained-performance numbers."""
    # the unpruned teacher and chapter 01's random-importance baselines are not candidates
    e = ev[(ev.method != "none") & ~ev.method.str.endswith("-random")].dropna(subset=["AVG_pct"])
    if e.empty:
        return pd.DataFrame(columns=["arch", "ratio", "pruned only", "recovered", "setting"])
    s = summary(e)
    rows = []
    for (arch, r), g in s.groupby(["arch", "ratio"]):
        only = g[g.recipe == "none"].sort_values("AVG_pct").tail(1)
        rec = g[g.recipe != "none"].sort_values("AVG_pct").tail(1)
        rows.append({"arch": arch, "ratio": r,
                     "pruned only": only.AVG_pct.iloc[0] if len(only) else np.nan,
                     "pruned only (method)": only.method.iloc[0] if len(only) else "",
                     "recovered": rec.AVG_pct.iloc[0] if len(rec) else np.nan,
                     "recovered (setting)": (f"{rec.method.iloc[0]}+{rec.recipe.iloc[0]}"
                                             if len(rec) else "")})
    return pd.DataFrame(rows)


def coverage(df: pd.DataFrame) -> pd.DataFrame:
    """What the results table holds: evaluations per study and architecture."""
    ev = evaluations(df, dedupe=False)
    if ev.empty:
        return pd.DataFrame(columns=["study", "arch", "evaluations", "seeds", "ratios",
                                     "recipes"])
    return (ev.groupby(["study", "arch"])
            .agg(evaluations=("AVG", "size"), seeds=("seed", "nunique"),
                 ratios=("ratio", lambda x: ", ".join(f"{v:g}" for v in sorted(set(x)))),
                 recipes=("recipe", lambda x: ", ".join(sorted(set(map(str, x))))))
            .reset_index())
