"""From results-table rows to AVG-%, confidence intervals and the paper's five findings.

Every number here is read from the tidy results table (`studylib.results`); nothing is
trained. Three steps:

1. `evaluations(df)`: one row per evaluated model (a run's condition and training seed)
   with its six benchmark scores, the paper's AVG, and **AVG-%** = 100 * AVG / AVG of the
   unpruned teacher measured in the same run (same items, same seed), plus the evaluation
   standard error of AVG-% derived from the per-benchmark 95% bootstrap CIs.
2. `compare(ev, a, b)`: the difference of two conditions' AVG-% with a 95% CI that adds the
   two sources of noise we can estimate (`RULE`).
3. `claims(ev)` / `verdicts(claims)`: each finding of the paper as a list of directed
   comparisons, each supported / contradicted / tied by that CI, and a verdict per toy
   architecture. A finding with no data is "not measured", never an error: a chapter whose
   rows are missing simply contributes no claims.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import pandas as pd

from studylib.evaluation import metrics

BENCHMARKS = metrics.PAPER_KEYS
CONDITION = ("arch", "method", "ratio", "recipe", "data_fraction")
Z = 1.96
# Two-sided 95% Student t quantiles by degrees of freedom (no scipy in the environment).
_T975 = (12.706, 4.303, 3.182, 2.776, 2.571, 2.447, 2.365, 2.306, 2.262, 2.228, 2.201, 2.179,
         2.160, 2.145, 2.131, 2.120, 2.110, 2.101, 2.093, 2.086, 2.080, 2.074, 2.069, 2.064,
         2.060, 2.056, 2.052, 2.048, 2.045, 2.042)

RULE = (
    "A claim compares two conditions' AVG-% (or one condition with a threshold). Its 95% CI "
    "half-width is sqrt(S^2 + E^2): S = t(n-1) * sd / sqrt(n) over the n training seeds "
    "(differences paired by seed when both sides share seeds; S = 0 with one seed), and "
    "E = 1.96 * sqrt(se_a^2 + se_b^2), the evaluation noise of the fixed benchmark subset "
    "(each se from the per-benchmark bootstrap CIs, combined as for AVG, treating the two "
    "models as independent, which is conservative for models scored on the same items). "
    "A claim is *supported* when the CI lies entirely on the paper's side, *contradicted* "
    "when it lies entirely on the other side, a *tie* otherwise. A finding is **replicated** "
    "when some claims are supported, none contradicted and supports >= ties; **not "
    "replicated** when some are contradicted, none supported and contradictions >= ties; "
    "**mixed** when claims are both supported and contradicted; **inconclusive** when ties "
    "dominate; **not measured** when the results table has no rows for any of its claims."
)

FINDINGS = {
    1: "Without recovery, widthwise pruning keeps more performance than layerwise.",
    2: "With recovery, layerwise is better below ~30-40%, widthwise above ~40%.",
    3: "At small ratios (~15%), finetuning only the projector recovers >= 95%.",
    4: "SFT + L2 is the best recovery; distillation alone falls behind (collapses at high "
       "ratios); reverse KL beats forward KL.",
    5: "Below ~50%, 5% of the data gives >= 95% of the full-data result; above, more data "
       "is needed.",
}
# The evidence the paper gives for each finding (its own tables and figures).
PAPER_EVIDENCE = {
    1: "Table 6: 15% width/layer 95.5/91.5 (Bunny), 92.8/74.0 (LLaVA)",
    2: "Fig. 2",
    3: "Fig. 2, Tables 10-11",
    4: "Table 2, Figs. 3, 5-7: RKL alone 12.6% at 60%",
    5: "Fig. 4",
}
LABELS = ("replicated", "not replicated", "mixed", "inconclusive", "not measured")
# The paper's best practice (Table 3): layerwise + FT + L2 up to 30%, widthwise above.
PRESCRIBED_RECIPE = "sft+l2"


def t975(dof: int) -> float:
    """The two-sided 95% t quantile (1.96 beyond 30 degrees of freedom)."""
    if dof < 1:
        return float("nan")
    return _T975[dof - 1] if dof <= len(_T975) else Z


# --- from rows to evaluations -------------------------------------------------------------


def latest_runs(df: pd.DataFrame) -> pd.DataFrame:
    """Keep, per executed notebook (study, model, key), only its newest run: a rerun with
    new parameters or a retrained teacher replaces the old rows instead of mixing with them."""
    if df.empty or not {"study", "model", "key", "timestamp", "run_id"} <= set(df.columns):
        return df
    runs = df.groupby("run_id", sort=False).agg(study=("study", "first"),
                                                model=("model", "first"),
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
    cols = ["study", "run_id", *CONDITION, "seed", "limit", "timestamp", *BENCHMARKS, "AVG",
            "se_AVG", "teacher_AVG", "AVG_pct", "se_pct",
            *(f"teacher_{b}" for b in BENCHMARKS)]
    need = {"run_id", "benchmark", "metric", "value", *CONDITION}
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
    for col in ("study", "seed", "limit", "timestamp", "ci_low", "ci_high"):
        if col not in rows:
            rows[col] = np.nan
    rows["ratio"] = _num(rows.ratio).round(4)
    rows["data_fraction"] = _num(rows.data_fraction)
    scale = rows.benchmark.map(metrics.PAPER_SCALE)
    rows["se"] = (_num(rows.ci_high) - _num(rows.ci_low)) / (2 * Z) / scale
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
        rec["timestamp"] = g["timestamp"].max()
        out.append(rec)
    ev = pd.DataFrame(out)
    if ev.empty:
        return pd.DataFrame(columns=cols)
    ev = _attach_teacher(ev)
    if dedupe:
        ev = (ev.sort_values(["limit", "timestamp"], na_position="first")
              .drop_duplicates([*CONDITION, "seed"], keep="last"))
    return ev.reset_index(drop=True)[cols]


def _attach_teacher(ev: pd.DataFrame) -> pd.DataFrame:
    """AVG-% against the unpruned model (method "none") of the same run; a run without one
    borrows the newest teacher of the same architecture scored on the same subset size."""
    teachers = ev[ev.method == "none"].sort_values("timestamp")
    by_run = teachers.groupby("run_id").tail(1).set_index("run_id")
    by_arch = teachers.groupby(["arch", "limit"], dropna=False).tail(1).set_index(
        ["arch", "limit"])
    t_avg, t_scores = [], {b: [] for b in BENCHMARKS}
    for r in ev.itertuples(index=False):
        if r.run_id in by_run.index:
            t = by_run.loc[r.run_id]
        elif (r.arch, r.limit) in by_arch.index:
            t = by_arch.loc[(r.arch, r.limit)]
        else:
            t = None
        t_avg.append(np.nan if t is None else float(t.AVG))
        for b in BENCHMARKS:
            t_scores[b].append(np.nan if t is None else float(t[b]))
    ev = ev.copy()
    ev["teacher_AVG"] = t_avg
    for b in BENCHMARKS:
        ev[f"teacher_{b}"] = t_scores[b]
    ev["AVG_pct"] = 100 * ev.AVG / ev.teacher_AVG
    ev["se_pct"] = 100 * ev.se_AVG / ev.teacher_AVG
    return ev


def retention(ev: pd.DataFrame) -> pd.DataFrame:
    """Per-benchmark retention: 100 * score / the teacher's score on that benchmark."""
    out = ev.copy()
    for b in BENCHMARKS:
        out[b] = 100 * out[b] / out[f"teacher_{b}"].replace(0, np.nan)
    return out


# --- statistics ----------------------------------------------------------------------------


def halfwidth(sd: float, n: int, se_eval: float) -> float:
    """95% CI half-width of a mean over n seeds plus the evaluation noise (see RULE)."""
    seed_part = t975(n - 1) * sd / math.sqrt(n) if n >= 2 and np.isfinite(sd) else 0.0
    return math.sqrt(seed_part ** 2 + (Z * np.nan_to_num(se_eval)) ** 2)


def summary(ev: pd.DataFrame, by: Sequence[str] = CONDITION) -> pd.DataFrame:
    """AVG-% per condition: mean over seeds, seeds, 95% CI (`RULE`)."""
    by = list(by)
    if ev.empty:
        return pd.DataFrame(columns=[*by, "seeds", "AVG_pct", "ci_low", "ci_high", "AVG"])
    rows = []
    for key, g in ev.groupby(by, dropna=False, sort=False):
        vals = g.AVG_pct.dropna()
        n = len(vals)
        mean = float(vals.mean()) if n else np.nan
        half = halfwidth(float(vals.std(ddof=1)) if n > 1 else np.nan, n,
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
            threshold: float = 0.0) -> dict[str, Any] | None:
    """d = mean(AVG-% of a) - scale * mean(AVG-% of b) - threshold, with its 95% CI.

    `b=None` compares `a` with the constant `threshold`. Seeds present on both sides are
    paired. Returns None when either side has no evaluation.
    """
    a = a.dropna(subset=["AVG_pct"])
    if a.empty or (b is not None and b.dropna(subset=["AVG_pct"]).empty):
        return None
    sa = a.groupby("seed", dropna=False).agg(v=("AVG_pct", "mean"), se=("se_pct", "mean"))
    if b is None:
        diffs = sa.v - threshold
        n = len(diffs)
        sd = float(diffs.std(ddof=1)) if n > 1 else np.nan
        half = halfwidth(sd, n, float(sa.se.mean()))
        d = float(diffs.mean())
        return {"d": d, "lo": d - half, "hi": d + half, "seeds": n, "a": float(sa.v.mean()),
                "b": threshold}
    b = b.dropna(subset=["AVG_pct"])
    sb = b.groupby("seed", dropna=False).agg(v=("AVG_pct", "mean"), se=("se_pct", "mean"))
    common = sa.index.intersection(sb.index)
    e = Z * math.sqrt(np.nan_to_num(sa.se.mean()) ** 2
                      + (scale * np.nan_to_num(sb.se.mean())) ** 2)
    if len(common) >= 1:
        diffs = sa.v[common] - scale * sb.v[common] - threshold
        n = len(diffs)
        s = t975(n - 1) * float(diffs.std(ddof=1)) / math.sqrt(n) if n > 1 else 0.0
        d = float(diffs.mean())
    else:
        na, nb = len(sa), len(sb)
        n = min(na, nb)
        d = float(sa.v.mean() - scale * sb.v.mean() - threshold)
        s = (t975(n - 1) * math.sqrt(sa.v.var(ddof=1) / na + scale ** 2 * sb.v.var(ddof=1) / nb)
             if n > 1 else 0.0)
    half = math.sqrt(s ** 2 + e ** 2)
    return {"d": d, "lo": d - half, "hi": d + half, "seeds": n, "a": float(sa.v.mean()),
            "b": float(sb.v.mean())}


def outcome(result: Mapping[str, Any], direction: int = 1) -> str:
    """supported / contradicted / tie for a claim that direction * d > 0."""
    lo, hi = (result["lo"], result["hi"]) if direction > 0 else (-result["hi"], -result["lo"])
    if lo > 0:
        return "supported"
    if hi < 0:
        return "contradicted"
    return "tie"


# --- the findings as claims ---------------------------------------------------------------


def _fmt_setting(**kw: Any) -> str:
    parts = []
    for k, v in kw.items():
        if v is None or (isinstance(v, float) and np.isnan(v)):
            continue
        parts.append(f"{k} {v:g}" if isinstance(v, float) else f"{k} {v}")
    return ", ".join(parts)


def _claim(rows: list, finding: int, arch: str, text: str, setting: str,
           result: dict[str, Any] | None, direction: int = 1) -> None:
    if result is None:
        return
    rows.append({"finding": finding, "arch": arch, "claim": text, "setting": setting,
                 "a": result["a"], "b": result["b"],
                 "d": direction * result["d"],
                 "ci_low": direction * (result["lo"] if direction > 0 else result["hi"]),
                 "ci_high": direction * (result["hi"] if direction > 0 else result["lo"]),
                 "seeds": result["seeds"], "outcome": outcome(result, direction)})


def _fractions(ev: pd.DataFrame) -> list[float | None]:
    fr = sorted({float(f) for f in ev.data_fraction.dropna()})
    return fr if fr else [None]


def claims(ev: pd.DataFrame) -> pd.DataFrame:
    """Every claim of the five findings that the evaluations allow, per architecture.

    `d` is oriented so that d > 0 is the paper's side; `a` and `b` are the two AVG-% (or
    the AVG-% and the threshold) being compared.
    """
    rows: list[dict[str, Any]] = []
    ev = ev[ev.method != "none"].dropna(subset=["AVG_pct"])
    for arch, e in ev.groupby("arch", sort=True):
        _finding1(rows, arch, e)
        _finding2(rows, arch, e)
        _finding3(rows, arch, e)
        _finding4(rows, arch, e)
        _finding5(rows, arch, e)
    cols = ["finding", "arch", "claim", "setting", "a", "b", "d", "ci_low", "ci_high", "seeds",
            "outcome"]
    return pd.DataFrame(rows, columns=cols)


def _finding1(rows, arch, e):
    # Prune only, ratios below 45% (where the paper's Table 6 shows it on both models).
    p = e[e.recipe == "none"]
    for r in sorted(set(p.ratio)):
        if r >= 0.45:
            continue
        res = compare(select(p, method="width", ratio=r), select(p, method="layer", ratio=r))
        _claim(rows, 1, arch, "width > layer (prune only)", _fmt_setting(ratio=r), res)


def _finding2(rows, arch, e):
    # After recovery: the paper's Fig. 2 recipe (FT projector + LLM = "sft"), else sft+l2.
    rec = e[e.recipe != "none"]
    for r in sorted(set(rec.ratio)):
        if 0.3 < r < 0.45:
            continue
        for recipe in ("sft", "sft+l2"):
            at = select(rec, ratio=r, recipe=recipe)
            fr = [f for f in _fractions(at)
                  if not select(at, method="layer", data_fraction=f).empty
                  and not select(at, method="width", data_fraction=f).empty]
            if not fr:
                continue
            f = fr[-1]
            layer, width = (select(at, method=m, data_fraction=f) for m in ("layer", "width"))
            setting = _fmt_setting(ratio=r, recipe=recipe, data=f)
            if r <= 0.3:
                _claim(rows, 2, arch, "layer > width (recovered)", setting,
                       compare(layer, width))
            else:
                _claim(rows, 2, arch, "width > layer (recovered)", setting,
                       compare(width, layer))
            break


def _finding3(rows, arch, e):
    mm = e[(e.recipe == "sft-mm") & (e.ratio <= 0.2)]
    for (method, r), g in mm.groupby(["method", "ratio"]):
        for f in _fractions(g)[-1:]:
            sub = select(g, data_fraction=f)
            _claim(rows, 3, arch, "projector-only SFT >= 95%",
                   _fmt_setting(method=method, ratio=r, data=f), compare(sub, threshold=95.0))


_F4 = (
    ("sft+l2", "sft", "SFT+L2 > SFT"),
    ("sft+l2", "sft+kl", "SFT+L2 > SFT+KL"),
    ("sft+l2", "sft+rkl", "SFT+L2 > SFT+RKL"),
    ("sft+l2", "sft+rkl+l2", "SFT+L2 > SFT+RKL+L2"),
    ("sft+l2", "l2", "with SFT > without: L2"),
    ("sft+rkl", "rkl", "with SFT > without: RKL"),
    ("sft+kl", "kl", "with SFT > without: KL"),
    ("rkl", "kl", "RKL > KL"),
    ("sft+rkl", "sft+kl", "SFT+RKL > SFT+KL"),
)


def _finding4(rows, arch, e):
    rec = e[e.recipe != "none"]
    for (method, r), g in rec.groupby(["method", "ratio"]):
        for f in _fractions(g):
            sub = select(g, data_fraction=f)
            for a, b, text in _F4:
                res = compare(sub[sub.recipe == a], sub[sub.recipe == b])
                _claim(rows, 4, arch, text, _fmt_setting(method=method, ratio=r, data=f), res)


def _finding5(rows, arch, e):
    # The paper's 5% vs 100%: the smallest fraction <= 10% (5% when measured) against the
    # largest, which must be at least half of the data to stand in for "full data".
    rec = e[(e.recipe != "none") & e.data_fraction.notna()]
    for (method, r, recipe), g in rec.groupby(["method", "ratio", "recipe"]):
        fr = _fractions(g)
        small = 0.05 if any(np.isclose(fr, 0.05)) else fr[0]
        big = fr[-1]
        if small > 0.1 or big < 0.5:
            continue
        res = compare(select(g, data_fraction=small), select(g, data_fraction=big), scale=0.95)
        setting = _fmt_setting(method=method, ratio=r, recipe=recipe)
        if r < 0.5:
            _claim(rows, 5, arch, f"{small:.0%} data >= 95% of {big:.0%}", setting, res)
        else:
            _claim(rows, 5, arch, f"{small:.0%} data < 95% of {big:.0%}", setting, res,
                   direction=-1)


def verdict(outcomes: Sequence[str]) -> str:
    """The finding-level label from its claims' outcomes (`RULE`)."""
    s = sum(o == "supported" for o in outcomes)
    c = sum(o == "contradicted" for o in outcomes)
    t = sum(o == "tie" for o in outcomes)
    if not outcomes:
        return "not measured"
    if s and c:
        return "mixed"
    if s and s >= t:
        return "replicated"
    if c and c >= t:
        return "not replicated"
    return "inconclusive"


def verdicts(claim_table: pd.DataFrame, archs: Sequence[str]) -> pd.DataFrame:
    """One row per finding and architecture: label, counts, seeds. Without any
    architecture (an empty table) every finding is "not measured" under arch "any"."""
    rows = []
    for i, text in FINDINGS.items():
        for arch in archs or ["any"]:
            c = claim_table[(claim_table.finding == i) & (claim_table.arch == arch)]
            label = verdict(list(c.outcome))
            seeds = sorted(set(int(s) for s in c.seeds)) if len(c) else []
            rows.append({"finding": i, "statement": text, "arch": arch, "verdict": label,
                         "claims": len(c),
                         "supported": int((c.outcome == "supported").sum()),
                         "contradicted": int((c.outcome == "contradicted").sum()),
                         "ties": int((c.outcome == "tie").sum()),
                         "seeds": (f"{seeds[0]}" if len(seeds) == 1 else
                                   f"{seeds[0]}-{seeds[-1]}" if seeds else "")})
    return pd.DataFrame(rows)


def verdict_table(v: pd.DataFrame) -> pd.DataFrame:
    """Wide: one row per finding, one column per architecture ("replicated (3/4 claims, 3
    seeds)"), beside the paper's statement and evidence."""
    if v.empty:
        return pd.DataFrame(columns=["finding", "the paper", "paper evidence"])
    cells = {}
    for r in v.itertuples(index=False):
        if r.verdict == "not measured":
            text = "not measured"
        else:
            seeds = f"seeds {r.seeds}" if r.seeds else ""
            text = (f"{r.verdict} ({r.supported}+ / {r.contradicted}- / {r.ties}= of "
                    f"{r.claims}; {seeds})")
        cells.setdefault(r.finding, {})[r.arch] = text
    return pd.DataFrame([{"finding": i, "the paper": FINDINGS[i],
                          "paper evidence": PAPER_EVIDENCE[i], **cells.get(i, {})}
                         for i in FINDINGS])


def verdict_rows(v: pd.DataFrame) -> list[dict[str, Any]]:
    """Results-table rows for the verdicts (value = (supported - contradicted) / claims)."""
    out = []
    for r in v.itertuples(index=False):
        out.append({"model": "findings", "arch": r.arch, "benchmark": f"finding {r.finding}",
                    "metric": "verdict", "verdict": r.verdict,
                    "value": (r.supported - r.contradicted) / r.claims if r.claims else None,
                    "n": r.claims, "supported": r.supported, "contradicted": r.contradicted,
                    "ties": r.ties, "seeds": r.seeds})
    return out


# --- the best-practice table (paper Table 3) ------------------------------------------------


def prescribed_method(ratio: float) -> str:
    """The paper's Table 3 choice: layerwise up to 30%, widthwise from 45%."""
    return "layer" if ratio <= 0.3 + 1e-9 else "width"


def best_practice(ev: pd.DataFrame, arch: str, paper_model: str | None,
                  paper: pd.DataFrame | None) -> pd.DataFrame:
    """Paper Table 3 beside ours, per ratio: the paper's prescription (method + FT + L2)
    applied to our model, the best recovered setting we measured, and the paper's row."""
    e = ev[(ev.arch == arch) & (ev.method != "none")].dropna(subset=["AVG_pct"])
    rec = e[e.recipe != "none"]
    s = summary(rec, by=[*CONDITION])
    rows = []
    ratios = sorted(set(rec.ratio))
    for r in ratios:
        at = s[np.isclose(s.ratio, r)].sort_values(["AVG_pct"])
        presc = at[(at.method == prescribed_method(r)) & (at.recipe == PRESCRIBED_RECIPE)]
        picks = []
        if not presc.empty:  # the largest data fraction measured for the prescription
            picks.append(["ours: paper's prescription",
                          presc.sort_values("data_fraction").iloc[-1]])
        best = at.iloc[-1]
        if picks and picks[0][1].name == best.name:
            picks[0][0] = "ours: paper's prescription (= best measured)"
        else:
            picks.append(["ours: best measured", best])
        for source, pick in picks:
            frac = None if pd.isna(pick.data_fraction) else float(pick.data_fraction)
            g = select(rec, method=pick.method, ratio=float(r), recipe=pick.recipe,
                       data_fraction=frac)
            rows.append({"source": source, "model": arch,
                         "setting": f"{pick.method}+{pick.recipe}"
                                    + ("" if frac is None else f" ({frac:.0%} data)"),
                         "ratio": r, **{b: g[b].mean() for b in BENCHMARKS},
                         "AVG": g.AVG.mean(), "AVG-%": g.AVG_pct.mean(),
                         "95% CI": f"[{pick.ci_low:.1f}, {pick.ci_high:.1f}]",
                         "seeds": int(pick.seeds)})
        if paper is not None and paper_model:
            prow = paper[(paper.model == paper_model) & np.isclose(paper.ratio, r)]
            for _, p in prow.iterrows():
                rows.append({"source": "paper", "model": paper_model, "setting": p.recipe,
                             "ratio": r, **{b: p[b] for b in BENCHMARKS},
                             "AVG": p.AVG, "AVG-%": p.AVG_pct, "95% CI": "", "seeds": ""})
    cols = ["source", "model", "setting", "ratio", *BENCHMARKS, "AVG", "AVG-%", "95% CI",
            "seeds"]
    return pd.DataFrame(rows, columns=cols)


def paper_retention(paper: pd.DataFrame, model: str) -> pd.DataFrame:
    """Per-benchmark retention of the paper's Table 3 rows (score / unpruned score)."""
    t = paper[paper.model == model]
    base = t[t.ratio == 0]
    if base.empty:
        return pd.DataFrame()
    base = base.iloc[0]
    out = t[t.ratio > 0].copy()
    for b in BENCHMARKS:
        out[b] = 100 * out[b] / base[b]
    return out


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
