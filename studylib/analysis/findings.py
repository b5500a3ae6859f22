"""The paper's five findings and its best practice, judged on our evaluations.

Every finding of the paper (`paper.FINDINGS`) becomes a list of directed comparisons of
AVG-% (`claims`), each supported / contradicted / tied by its 95% CI (`evidence.compare`,
the study's one CI rule in `stats`), and a verdict per toy architecture (`verdicts`). A
finding with no data is "not measured", never an error: a chapter whose rows are missing
simply contributes no claims. `best_practice` sets the paper's Table 3 beside ours.

`evaluations`, `coverage` and `headline` live in `studylib.analysis.evidence`; they are
re-exported here because the notebooks call them as `findings.<name>`.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import pandas as pd

from studylib.analysis import stats
from studylib.analysis.evidence import (
    BENCHMARKS,
    CONDITION,
    compare,
    coverage,  # noqa: F401  (re-exported for the notebooks)
    evaluations,  # noqa: F401  (re-exported for the notebooks)
    headline,  # noqa: F401  (re-exported for the notebooks)
    select,
    summary,
)
from studylib.analysis.paper import (
    FINDINGS,
    PAPER_EVIDENCE,
    PRESCRIBED_RECIPE,
    prescribed_method,
)
from studylib.evaluation import metrics

RULE = (
    "A claim compares two conditions' AVG-% (or one condition with a threshold). "
    + stats.RULE
    + " In a comparison, differences are paired by seed when both sides share seeds, and "
    "se_eval = sqrt(se_a^2 + se_b^2), treating the two models as independent, which is "
    "conservative for models scored on the same items. "
    "A claim is *supported* when the CI lies entirely on the paper's side, *contradicted* "
    "when it lies entirely on the other side, a *tie* otherwise. A finding is **replicated** "
    "when some claims are supported, none contradicted and supports >= ties; **not "
    "replicated** when some are contradicted, none supported and contradictions >= ties; "
    "**mixed** when claims are both supported and contradicted; **inconclusive** when ties "
    "dominate; **not measured** when the results table has no rows for any of its claims."
)

LABELS = ("replicated", "not replicated", "mixed", "inconclusive", "not measured")


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


