"""The paper's best practice (its Table 3) beside ours: the prescription applied to our
models, the best recovered setting we measured, and the paper's rows."""

from __future__ import annotations

import numpy as np
import pandas as pd

from studylib.analysis.evidence import BENCHMARKS, CONDITION, select, summary
from studylib.analysis.paper import PRESCRIBED_RECIPE, prescribed_method
from studylib.evaluation import metrics


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
        out[b] = metrics.pct_of_teacher(out[b], base[b])
    return out


