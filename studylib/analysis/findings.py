"""The paper's five findings, and two beyond it, judged on our evaluations.

Every finding of the paper (`paper.FINDINGS`), and the two claims beyond it
(`analysis.beyond`, findings 6 and 7), becomes a list of directed comparisons of
AVG-% (`claims`), each supported / contradicted / tied by its 95% CI (`evidence.compare`,
the study's one CI rule in `stats`), and a verdict per toy architecture (`verdicts`). A
finding with no data is "not measured", never an error: a chapter whose rows are missing
simply contributes no claims. The paper's findings are judged on the paper's two pruning
methods only (`PAPER_METHODS`). `analysis.table3` sets the paper's Table 3 beside ours.

`evaluations`, `coverage` and `headline` live in `studylib.analysis.evidence`; they are
re-exported here because the notebooks call them as `findings.<name>`.
"""

from __future__ import annotations

import functools
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import pandas as pd

from studylib.analysis import beyond, stats
from studylib.analysis.evidence import (
    compare,
    coverage,  # noqa: F401  (re-exported for the notebooks)
    evaluations,  # noqa: F401  (re-exported for the notebooks)
    headline,  # noqa: F401  (re-exported for the notebooks)
    matched,
    select,
)
from studylib.analysis.paper import (
    FINDINGS,
    PAPER_EVIDENCE,
)

ALPHA = 0.05  # family-wise error rate of each finding's claims (Holm)
MIN_SEEDS = 2  # a claim on fewer paired seeds has no estimate of training variance
PAPER_METHODS = ("layer", "width")  # the paper's findings compare these (depth+width: 6)
ALL_FINDINGS = {**FINDINGS, **beyond.STATEMENTS}  # the paper's five, then beyond it
EVIDENCE = {**PAPER_EVIDENCE, **beyond.EVIDENCE}

# The depth check (chapter 00's layer-60 check): with LAYER_CHECK_RATIO of their layers
# removed by Block Influence and no recovery, the paper's models keep 6.9% (LLaVA) and 13.0%
# (Bunny) of their AVG (Table 6). A teacher that keeps LAYER_CHECK_MAX_PCT% or more computes
# its answers in its first layers and barely uses the late ones (docs/testbed-recipe-search.md,
# "Depth"), so removing layers costs it little for a reason the paper's models do not share.
# On such a teacher the findings that set layer against width pruning (DEPTH_FINDINGS)
# measure the toy's depth, not the methods.
LAYER_CHECK_RATIO = 0.6
LAYER_CHECK_MAX_PCT = 70.0
DEPTH_FINDINGS = (1, 2)
DEPTH_RULE = (
    f"Findings {DEPTH_FINDINGS[0]} and {DEPTH_FINDINGS[1]} set layerwise against widthwise "
    "pruning. On an architecture whose teacher keeps "
    f"{LAYER_CHECK_MAX_PCT:g}% or more of its AVG with {LAYER_CHECK_RATIO:.0%} of its layers "
    "removed (Block Influence, no recovery; the paper's models keep 7-13%), the late layers "
    "do little, and layer pruning costs little for that reason: its claims on those findings "
    "are shown but marked *testbed-limited* and do not count, and a finding left without "
    "another architecture is **testbed-limited**."
)


RULE = (
    "A claim compares two conditions' AVG-% (or one condition with a threshold) at the same "
    "achieved compression ratio. " + stats.RULE + " Differences are paired by seed (a seed "
    "is the same calibration sample, data subset and training order on both sides), and "
    "their evaluation noise is paired by item: a bootstrap draw of the benchmark items is "
    "applied to every model of the claim and to their teachers, 1,000 draws, and se_eval is "
    "the part of the per-seed differences' variance over the draws that the seeds share "
    "(the rest is already in the seed spread). Where a claim's items cannot be read (a ratio interpolated "
    "between two measured ones), the two sides' evaluation noises add as for independent "
    "models, which is conservative for models scored on the same items. A claim measured "
    "on fewer than "
    f"{MIN_SEEDS} seeds is *untested*. The tested claims of a finding (every architecture "
    "and setting) are one family: they pool their seed variances, and their p-values are "
    "adjusted together by Holm's method; a claim is "
    f"*supported* when its adjusted p < {ALPHA} and d > 0 (the paper's side), "
    f"*contradicted* when its adjusted p < {ALPHA} and d < 0, a *tie* otherwise. On one "
    "architecture a finding *holds* when at least half of its claims are supported and "
    "none is contradicted. A finding is **replicated** when it holds on every architecture "
    "that has claims, and there are at least two of them; **not replicated** when any of "
    "its claims is contradicted (the opposite is significant); **inconclusive** otherwise; "
    "**not measured** when the results table has no rows for any of its claims. "
    + DEPTH_RULE
)

LABELS = ("replicated", "not replicated", "inconclusive", "testbed-limited", "not measured")


def outcome(d: float, p_adjusted: float, seeds: int) -> str:
    """supported / contradicted / tie / untested for a claim oriented so that d > 0 is the
    paper's side, from its Holm-adjusted p-value (`RULE`)."""
    if seeds < MIN_SEEDS or not np.isfinite(p_adjusted):
        return "untested"
    if p_adjusted < ALPHA:
        return "supported" if d > 0 else "contradicted"
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
    lo, hi = (result["lo"], result["hi"]) if direction > 0 else (-result["hi"], -result["lo"])
    rows.append({"finding": finding, "arch": arch, "claim": text, "setting": setting,
                 "a": result["a"], "b": result["b"], "d": direction * result["d"],
                 "ci_low": lo, "ci_high": hi, "seeds": result["seeds"], "p": result["p"],
                 "se_seeds": result["se_seeds"], "se_eval": result["se_eval"],
                 "paired": result.get("paired", False)})


def _fractions(ev: pd.DataFrame) -> list[float | None]:
    fr = sorted({float(f) for f in ev.data_fraction.dropna()})
    return fr if fr else [None]


def claims(ev: pd.DataFrame, noise=None) -> pd.DataFrame:
    """Every claim of the seven findings that the evaluations allow, per architecture, with
    its Holm-adjusted p-value (`p_holm`, over the finding's claims) and outcome (`RULE`).

    `d` is oriented so that d > 0 is the paper's side; `a` and `b` are the two AVG-% (or
    the AVG-% and the threshold) being compared. The CI and p of a tested claim are the
    rule's on its finding's family, the seed variances pooled (`stats.family`); `se_seeds`
    stays the claim's own. With `noise` (`analysis.paired.PairedNoise`)
    the evaluation noise of each claim is paired where its rows' items can be read
    (`paired`), as for independent models elsewhere.
    """
    rows: list[dict[str, Any]] = []
    cmp = functools.partial(compare, noise=noise)
    ev = ev[ev.method != "none"].dropna(subset=["AVG_pct"])
    for arch, e in ev.groupby("arch", sort=True):
        paper_e = e[e.method.isin(PAPER_METHODS)]
        _finding1(rows, arch, paper_e, cmp)
        _finding2(rows, arch, paper_e, cmp)
        _finding3(rows, arch, paper_e, cmp)
        _finding4(rows, arch, paper_e, cmp)
        _finding5(rows, arch, paper_e, cmp)
        beyond.claims(functools.partial(_claim, rows), arch, e, cmp)
    cols = ["finding", "arch", "claim", "setting", "a", "b", "d", "ci_low", "ci_high", "seeds",
            "p", "p_holm", "outcome", "se_seeds", "se_eval", "paired"]
    out = pd.DataFrame(rows, columns=[c for c in cols if c not in ("p_holm", "outcome")])
    out["p_holm"] = np.nan
    tested = out.seeds >= MIN_SEEDS
    for _, g in out[tested].groupby("finding"):  # one family: pooled seed variance, Holm
        judged = stats.family(g.d, g.se_seeds, g.seeds, g.se_eval)
        out.loc[g.index, ["ci_low", "ci_high", "p"]] = np.c_[g.d - judged["half"],
                                                              g.d + judged["half"], judged["p"]]
        out.loc[g.index, "p_holm"] = stats.holm(list(judged["p"]))
    out["outcome"] = [outcome(d, p, n) for d, p, n in zip(out.d, out.p_holm, out.seeds,
                                                          strict=True)]
    return out[cols]


def noise_budget(claim_table: pd.DataFrame) -> pd.DataFrame:
    """Per finding: the median standard error of its claims' d from the seeds and from the
    evaluation subset, in AVG-% points, and the median 95% half-width they give. The
    evaluation part shrinks as 1/sqrt(items per benchmark), the seed part as 1/sqrt(seeds)."""
    c = claim_table[claim_table.seeds >= MIN_SEEDS]
    if c.empty:
        return pd.DataFrame(columns=["finding", "claims", "se from seeds", "se from evaluation",
                                     "95% half-width", "median |d|"])
    return (c.assign(half=(c.ci_high - c.ci_low) / 2, absd=c.d.abs())
            .groupby("finding")
            .agg(claims=("d", "size"), **{"se from seeds": ("se_seeds", "median"),
                                          "se from evaluation": ("se_eval", "median"),
                                          "95% half-width": ("half", "median"),
                                          "median |d|": ("absd", "median")})
            .reset_index())


def _finding1(rows, arch, e, compare):
    # Prune only, ratios below 45% (where the paper's Table 6 shows it on both models),
    # width at layer's achieved ratio.
    p = e[e.recipe == "none"]
    for r in sorted(set(p.ratio)):
        layer = select(p, method="layer", ratio=r)
        if r >= 0.45 or layer.empty:
            continue
        width, note = matched(p, "width", layer)
        _claim(rows, 1, arch, "width > layer (prune only)", _fmt_setting(ratio=r) + f", {note}",
               compare(width, layer) if len(width) else None)


def _finding2(rows, arch, e, compare):
    # After recovery: the paper's Fig. 2 recipe (FT projector + LLM = "sft"), else sft+l2;
    # width at layer's achieved ratio.
    rec = e[e.recipe != "none"]
    for r in sorted(set(rec.ratio)):
        if 0.3 < r < 0.45:
            continue
        for recipe in ("sft", "sft+l2"):
            at = rec[rec.recipe == recipe]
            fr = [f for f in _fractions(at)
                  if not select(at, method="layer", ratio=r, data_fraction=f).empty
                  and not select(at, method="width", data_fraction=f).empty]
            if not fr:
                continue
            f = fr[-1]
            layer = select(at, method="layer", ratio=r, data_fraction=f)
            width, note = matched(select(at, data_fraction=f), "width", layer)
            if width.empty:
                continue
            setting = _fmt_setting(ratio=r, recipe=recipe, data=f) + f", {note}"
            if r <= 0.3:
                _claim(rows, 2, arch, "layer > width (recovered)", setting,
                       compare(layer, width))
            else:
                _claim(rows, 2, arch, "width > layer (recovered)", setting,
                       compare(width, layer))
            break


def _finding3(rows, arch, e, compare):
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


def _finding4(rows, arch, e, compare):
    rec = e[e.recipe != "none"]
    for (method, r), g in rec.groupby(["method", "ratio"]):
        for f in _fractions(g):
            sub = select(g, data_fraction=f)
            for a, b, text in _F4:
                res = compare(sub[sub.recipe == a], sub[sub.recipe == b])
                _claim(rows, 4, arch, text, _fmt_setting(method=method, ratio=r, data=f), res)


def _finding5(rows, arch, e, compare):
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


def arch_result(outcomes: Sequence[str]) -> str:
    """On one architecture: holds / opposite / open / not measured (`RULE`)."""
    if not outcomes:
        return "not measured"
    s = sum(o == "supported" for o in outcomes)
    if any(o == "contradicted" for o in outcomes):
        return "opposite"
    return "holds" if s and 2 * s >= len(outcomes) else "open"


def depth_caveat(pct: float) -> str:
    """What a teacher that fails the depth check keeps (`DEPTH_RULE`), for the pages."""
    return (f"keeps {pct:.0f}% of its AVG with {LAYER_CHECK_RATIO:.0%} of its layers removed "
            "(the paper's models 7-13%)")


def idle_depth(ev: pd.DataFrame) -> dict[str, float]:
    """Architecture -> AVG-% (mean over seeds) of its Block-Influence layer-pruned,
    unrecovered models at `LAYER_CHECK_RATIO`, for every architecture in `ev` whose teacher
    fails the depth check (`DEPTH_RULE`); an architecture not measured there is not in it."""
    at = ev[(ev.method == "layer") & (ev.recipe.fillna("none") == "none")
            & ((ev.ratio.astype(float) - LAYER_CHECK_RATIO).abs() < 0.005)]
    pct = at.groupby("arch").AVG_pct.mean()
    return {str(a): float(v) for a, v in pct.items() if v >= LAYER_CHECK_MAX_PCT}


def verdict(by_arch: Mapping[str, Sequence[str]], limited: Sequence[str] = ()) -> str:
    """The finding-level label from its claims' outcomes on each architecture (`RULE`); the
    architectures in `limited` (`DEPTH_RULE`) do not count."""
    results = [arch_result(o) for a, o in by_arch.items() if len(o) and a not in limited]
    if not results:
        return "testbed-limited" if any(len(by_arch[a]) for a in limited if a in by_arch) \
            else "not measured"
    if "opposite" in results:
        return "not replicated"
    if len(results) >= 2 and all(r == "holds" for r in results):
        return "replicated"
    return "inconclusive"


def verdicts(claim_table: pd.DataFrame, archs: Sequence[str],
             idle: Mapping[str, float] | None = None) -> pd.DataFrame:
    """One row per finding and architecture: the finding's verdict (the same on every row
    of a finding), what it is on this architecture, counts, the median d, the claim with the
    largest |d| (`largest_d`), the seeds per claim and a `caveat`. `idle` (`idle_depth`) marks
    the architectures whose teachers fail the depth check: on `DEPTH_FINDINGS` they are
    "testbed-limited" and do not count (`DEPTH_RULE`). Without any architecture (an empty
    table) every finding is "not measured" under arch "any"."""
    idle = dict(idle or {})
    rows = []
    for i, text in ALL_FINDINGS.items():
        mine = claim_table[claim_table.finding == i]
        limited = [a for a in archs if a in idle] if i in DEPTH_FINDINGS else []
        label = verdict({a: list(mine[mine.arch == a].outcome) for a in archs}, limited)
        for arch in archs or ["any"]:
            c = mine[mine.arch == arch]
            seeds = sorted(set(int(s) for s in c.seeds)) if len(c) else []
            strongest = c.loc[c.d.abs().idxmax()] if len(c) else None
            on_arch = "testbed-limited" if arch in limited and len(c) else arch_result(
                list(c.outcome))
            caveat = depth_caveat(idle[arch]) if arch in limited else ""
            rows.append({"finding": i, "statement": text, "arch": arch, "verdict": label,
                         "on_arch": on_arch, "caveat": caveat, "claims": len(c),
                         "supported": int((c.outcome == "supported").sum()),
                         "contradicted": int((c.outcome == "contradicted").sum()),
                         "ties": int((c.outcome == "tie").sum()),
                         "untested": int((c.outcome == "untested").sum()),
                         "median_d": float(c.d.median()) if len(c) else np.nan,
                         "largest_d": (f"{strongest.d:+.1f} [{strongest.ci_low:+.1f}, "
                                       f"{strongest.ci_high:+.1f}] {strongest.claim}, "
                                       f"{strongest.setting}" if strongest is not None else ""),
                         "seeds": (f"{seeds[0]}" if len(seeds) == 1 else
                                   f"{seeds[0]}-{seeds[-1]}" if seeds else "")})
    return pd.DataFrame(rows)


def verdict_table(v: pd.DataFrame) -> pd.DataFrame:
    """Wide: one row per finding with its verdict, one column per architecture ("holds (3+ /
    0- / 1= / 0 untested of 4; median d +2.1; seeds 3": seeds per claim), beside the paper's statement."""
    if v.empty:
        return pd.DataFrame(columns=["finding", "the paper", "paper evidence", "verdict"])
    cells, label = {}, {}
    for r in v.itertuples(index=False):
        label[r.finding] = r.verdict
        if r.claims == 0:
            text = "not measured"
        else:
            text = (f"{r.on_arch} ({r.supported}+ / {r.contradicted}- / {r.ties}= "
                    f"/ {r.untested} untested of {r.claims}; median d {r.median_d:+.1f}; "
                    f"seeds {r.seeds})")
        cells.setdefault(r.finding, {})[r.arch] = text
    return pd.DataFrame([{"finding": i, "the paper": ALL_FINDINGS[i],
                          "paper evidence": EVIDENCE[i], "verdict": label.get(i, ""),
                          **cells.get(i, {})} for i in ALL_FINDINGS])


def verdict_rows(v: pd.DataFrame) -> list[dict[str, Any]]:
    """Results-table rows for the verdicts (value = (supported - contradicted) / claims)."""
    out = []
    for r in v.itertuples(index=False):
        out.append({"model": "findings", "arch": r.arch, "benchmark": f"finding {r.finding}",
                    "metric": "verdict", "verdict": r.verdict,
                    "value": (r.supported - r.contradicted) / r.claims if r.claims else None,
                    "n": r.claims, "supported": r.supported, "contradicted": r.contradicted,
                    "ties": r.ties, "untested": r.untested, "on_arch": r.on_arch,
                    "caveat": r.caveat,
                    "median_d": r.median_d, "seeds": r.seeds})
    return out
