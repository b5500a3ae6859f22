"""`studylib advise`: which pruning + recovery pipeline to use, read off the results table.

The paper's Figure 1 is a decision flow: from the resources you have (can you train at all,
and what) and the compression ratio you need, to a pruning method and a recovery recipe.
This module answers the same question from *our* measurements instead of the paper's
prose. Per architecture it takes the conditions the budget allows (a budget is a ceiling:
a cheaper recipe that measured better is a valid answer), moves to the measured ratio
closest to the asked one (then the closest data fraction), and recommends the condition
with the highest retained performance (AVG-%, 95% CI by `stats.RULE`), beside the
runner-up and the paper's own choice.

An answer read off a table is only as good as the rows under it, so every answer says how
far the measured setting is from the asked one and raises an explicit "evidence is thin"
when it rests on one seed, when the 95% CI of its lead over the runner-up includes zero,
when the closest measured ratio is more than `FAR_RATIO` away (or the data fraction more
than `FAR_FRACTION`-fold off), or when nothing within the budget was measured.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np
import pandas as pd

from studylib.analysis import evidence, paper
from studylib.compress import recipes
from studylib.errors import StudyError, check_fraction, check_ratio

# What each budget lets you train; budgets are ordered, each includes the cheaper ones.
BUDGETS = {
    "none": "prune only, no training",
    "projector": "finetune the projector only, sft-mm style",
    "full": "projector + LoRA on the LLM, SFT and/or distillation",
}
_RANK = {name: i for i, name in enumerate(BUDGETS)}
FAR_RATIO = 0.1  # a measured ratio further than this from the asked one is thin evidence
FAR_FRACTION = 2.0  # ... and a measured data fraction more than 2x off the asked one
GRID_RATIOS = (0.15, 0.3, 0.45, 0.6)  # the paper's ratios, for the book's decision table
COLUMNS = ["arch", "budget", "ratio", "data_fraction", "method", "recipe", "trains",
           "measured_ratio", "ratio_distance", "measured_fraction", "fraction_distance",
           "AVG_pct", "ci_low", "ci_high", "seeds", "runner_up", "runner_up_AVG_pct",
           "lead_ci_low", "lead_ci_high", "paper", "agrees_with_paper", "thin", "why_thin"]
_METHOD_WORDS = {"layer": "layerwise pruning (Block Influence)",
                 "width": "widthwise pruning (Taylor importance)"}


def training(recipe: Any) -> str:
    """The budget a recipe needs: "none" (prune only), "projector" (the projector alone
    trains) or "full" (projector + LoRA on the LLM). Recipes that are not presets are
    judged by name (`*-mm` = projector only) and otherwise assumed to train the LLM."""
    if recipe is None or (isinstance(recipe, float) and math.isnan(recipe)) or recipe == "none":
        return "none"
    preset = recipes.PRESETS.get(str(recipe))
    if preset is not None:
        return "projector" if preset.train == "mm" else "full"
    return "projector" if str(recipe).endswith("-mm") else "full"


def paper_choice(ratio: float, budget: str) -> tuple[str, str, str]:
    """(method, recipe, source): what the paper's decision flow picks for this ratio and
    budget. No training: widthwise (finding 1). Training: Table 3's method (layerwise up to
    30%, widthwise above) with projector-only SFT (finding 3) or SFT + L2 (finding 4)."""
    if budget == "none":
        return "width", "none", "finding 1"
    method = paper.prescribed_method(ratio)
    if budget == "projector":
        return method, "sft-mm", "Table 3 method, finding 3"
    return method, paper.PRESCRIBED_RECIPE, "Table 3"


def check_query(ratio: Any, data_fraction: Any = None, budget: str = "full") -> tuple:
    """(ratio, data_fraction, budget) validated: 0 < ratio < 1, 0 < fraction <= 1."""
    r = check_ratio(ratio)
    f = None if data_fraction is None else check_fraction(data_fraction)
    if budget not in BUDGETS:
        raise StudyError(f"unknown budget {budget!r}; choose from {', '.join(BUDGETS)}")
    return r, f, budget


def candidates(ev: pd.DataFrame) -> pd.DataFrame:
    """Evaluations a recommendation may pick: pruned models with an AVG-%, without the
    unpruned teacher and chapter 01's random-importance baselines (as `evidence.headline`)."""
    if ev.empty:
        return ev
    keep = (ev.method != "none") & ~ev.method.astype(str).str.endswith("-random")
    return ev[keep].dropna(subset=["AVG_pct"])


def _closest(values: Sequence[float], target: float, prefer_high: bool) -> float:
    # ties go to the higher ratio (a lower bound on what the asked ratio keeps) and to the
    # smaller data fraction (no more data than asked for)
    return min(values, key=lambda v: (round(abs(v - target), 9), -v if prefer_high else v))


def _frac(value: Any) -> float | None:
    return None if value is None or pd.isna(value) else float(value)


def _setting(row: Any) -> str:
    frac = _frac(row.data_fraction)
    return f"{row.method} + {row.recipe}" + ("" if frac is None else f", {frac:.0%} data")


def _advise_arch(arch: str, e: pd.DataFrame, ratio: float, fraction: float | None,
                 budget: str) -> dict[str, Any]:
    p_method, p_recipe, p_source = paper_choice(ratio, budget)
    out: dict[str, Any] = dict.fromkeys(COLUMNS, np.nan)
    out.update({"arch": arch, "budget": budget, "ratio": ratio, "data_fraction": fraction,
                "method": "", "recipe": "", "trains": "", "runner_up": "",
                "paper": f"{p_method} + {p_recipe} ({p_source})", "agrees_with_paper": False,
                "thin": True, "seeds": 0})
    allowed = e[e.recipe.map(training).map(_RANK) <= _RANK[budget]]
    if allowed.empty:
        measured = ", ".join(sorted(set(map(str, e.recipe))))
        out["why_thin"] = f"nothing measured within budget {budget!r} (measured recipes: {measured})"
        return out
    measured_ratio = _closest(sorted(set(allowed.ratio)), ratio, prefer_high=True)
    at = allowed[np.isclose(allowed.ratio, measured_ratio)]
    measured_fraction = None
    trained = at[at.data_fraction.notna()]
    if fraction is not None and not trained.empty:
        measured_fraction = _closest(sorted(set(trained.data_fraction)), fraction,
                                     prefer_high=False)
        at = at[at.data_fraction.isna() | np.isclose(at.data_fraction, measured_fraction)]
    s = evidence.summary(at).sort_values(["AVG_pct", "seeds"], ascending=False)
    best = s.iloc[0]
    others = s[(s.method != best.method) | (s.recipe != best.recipe)]
    runner = others.iloc[0] if len(others) else None
    frac = _frac(best.data_fraction)
    why = []
    if best.seeds < 2:
        why.append(f"only {int(best.seeds)} seed (no seed-to-seed spread in the CI)")
    if abs(measured_ratio - ratio) > FAR_RATIO + 1e-9:
        why.append(f"the closest measured ratio {measured_ratio:g} is "
                   f"{abs(measured_ratio - ratio):.2f} from the asked {ratio:g}")
    if fraction is not None and frac is not None and max(frac / fraction,
                                                         fraction / frac) > FAR_FRACTION:
        why.append(f"the closest measured data fraction {frac:.0%} is far from the asked "
                   f"{fraction:.0%}")
    out.update({"method": best.method, "recipe": best.recipe, "trains": training(best.recipe),
                "measured_ratio": measured_ratio,
                "ratio_distance": round(abs(measured_ratio - ratio), 4),
                "measured_fraction": frac,
                "fraction_distance": (round(abs(frac - fraction), 4)
                                      if frac is not None and fraction is not None else np.nan),
                "AVG_pct": best.AVG_pct, "ci_low": best.ci_low, "ci_high": best.ci_high,
                "seeds": int(best.seeds),
                "agrees_with_paper": bool(str(best.method).startswith(p_method)
                                          and best.recipe == p_recipe)})
    if runner is None:
        why.append(f"nothing else within budget was measured at ratio {measured_ratio:g} "
                   "to compare it with")
    else:
        def rows(r):
            return evidence.select(at, method=r.method, recipe=r.recipe,
                                   data_fraction=_frac(r.data_fraction))

        lead = evidence.compare(rows(best), rows(runner))
        out.update({"runner_up": _setting(runner), "runner_up_AVG_pct": runner.AVG_pct,
                    "lead_ci_low": lead["lo"], "lead_ci_high": lead["hi"]})
        if evidence.ci_side(lead) != "supported":
            why.append(f"the 95% CI of its lead over the runner-up ({_setting(runner)}, "
                       f"{runner.AVG_pct:.1f}%) includes 0: [{lead['lo']:+.1f}, "
                       f"{lead['hi']:+.1f}]")
    out["thin"] = bool(why)
    out["why_thin"] = "; ".join(why)
    return out


def recommend(ev: pd.DataFrame, ratio: float, data_fraction: float | None = None,
              budget: str = "full", archs: Sequence[str] | None = None) -> pd.DataFrame:
    """One recommendation per architecture (columns `COLUMNS`) from `evidence.evaluations`
    rows; an empty frame when no pruned model was evaluated. Bad queries raise StudyError."""
    ratio, data_fraction, budget = check_query(ratio, data_fraction, budget)
    e = candidates(ev)
    if archs:
        e = e[e.arch.isin(list(archs))]
    rows = [_advise_arch(arch, g, ratio, data_fraction, budget)
            for arch, g in e.groupby("arch", sort=True)] if not e.empty else []
    return pd.DataFrame(rows, columns=COLUMNS)


def advise(df: pd.DataFrame, ratio: float, data_fraction: float | None = None,
           budget: str = "full", arch: str | None = None,
           studies: Sequence[str] | None = None) -> pd.DataFrame:
    """The recommended pipeline per architecture, read from results-table rows `df` (see
    `recommend`). Raises StudyError when the table holds nothing to advise from."""
    check_query(ratio, data_fraction, budget)
    if df is None or df.empty:
        raise StudyError("the results table is empty: run the study first (`studylib study`)")
    ev = candidates(evidence.evaluations(df, studies=studies))
    if ev.empty:
        raise StudyError("the results table has no evaluated pruned models (method layer or "
                         "width with a teacher to compare with): run chapters 01-04 first")
    if arch and arch not in set(ev.arch):
        raise StudyError(f"no evaluations of architecture {arch!r} in the results table; "
                         f"it has {', '.join(sorted(set(ev.arch)))}")
    return recommend(ev, ratio, data_fraction, budget, archs=[arch] if arch else None)


def advice_table(ev: pd.DataFrame, ratios: Sequence[float] = GRID_RATIOS,
                 budgets: Sequence[str] = tuple(BUDGETS),
                 data_fraction: float | None = None) -> pd.DataFrame:
    """`recommend` over a grid of ratios x budgets: the book's decision table (paper Fig. 1
    as measured). Empty, not an error, before any chapter has run."""
    parts = [recommend(ev, r, data_fraction, b) for b in budgets for r in ratios]
    if not parts:
        return pd.DataFrame(columns=COLUMNS)
    return pd.concat(parts).sort_values("arch", kind="stable").reset_index(drop=True)


def decision_table(adv: pd.DataFrame) -> pd.DataFrame:
    """The readable view of `advice_table`: one row per architecture, budget and ratio."""
    rows = []
    for r in adv.itertuples(index=False):
        frac = _frac(r.measured_fraction)
        rows.append({"arch": r.arch, "budget": r.budget, "ratio": r.ratio,
                     "use": "" if not r.method else _setting(r),
                     "measured at": "" if not r.method else (
                         f"ratio {r.measured_ratio:g}" + ("" if frac is None else
                                                          f", {frac:.0%} data")),
                     "AVG-%": r.AVG_pct,
                     "95% CI": "" if not r.method else f"[{r.ci_low:.1f}, {r.ci_high:.1f}]",
                     "seeds": r.seeds, "paper": r.paper,
                     "evidence": ("thin: " + r.why_thin) if r.thin else "ok"})
    return pd.DataFrame(rows, columns=["arch", "budget", "ratio", "use", "measured at", "AVG-%",
                                       "95% CI", "seeds", "paper", "evidence"])


def format_advice(adv: pd.DataFrame) -> str:
    """A short readable answer per architecture (what `studylib advise` prints)."""
    blocks = []
    for r in adv.itertuples(index=False):
        asked = f"ratio {r.ratio:g}" + ("" if _frac(r.data_fraction) is None
                                        else f", {r.data_fraction:.0%} of the data")
        head = f"{r.arch}: {asked}, budget {r.budget} ({BUDGETS[r.budget]})"
        if not r.method:
            blocks.append(f"{head}\n  no answer: {r.why_thin}\n  paper:     {r.paper}")
            continue
        frac = _frac(r.measured_fraction)
        method = next((w for k, w in _METHOD_WORDS.items() if str(r.method).startswith(k)),
                      r.method)
        train = {"projector": "projector only", "full": "projector + LoRA"}.get(r.trains)
        use = f"{method} + {r.recipe} ({train})" if train else f"{method}, no recovery"
        lines = [head, f"  use:       {use}" + ("" if frac is None else f", {frac:.0%} data")]
        where = f"ratio {r.measured_ratio:g} (off by {r.ratio_distance:.2f})"
        if frac is not None:
            where += f", data {frac:.0%}" + ("" if pd.isna(r.fraction_distance)
                                             else f" (off by {r.fraction_distance:.2f})")
        lines.append(f"  measured:  AVG-% {r.AVG_pct:.1f}, 95% CI [{r.ci_low:.1f}, "
                     f"{r.ci_high:.1f}], {r.seeds} seed{'s' * (r.seeds != 1)}, at {where}")
        if r.runner_up:
            lines.append(f"  runner-up: {r.runner_up}: AVG-% {r.runner_up_AVG_pct:.1f}; lead "
                         f"95% CI [{r.lead_ci_low:+.1f}, {r.lead_ci_high:+.1f}]")
        lines.append(f"  paper:     {r.paper}: "
                     f"{'same choice' if r.agrees_with_paper else 'differs'}")
        ok = (f"ok ({r.seeds} seeds, the lead's 95% CI excludes 0, ratio within "
              f"{FAR_RATIO:g})")
        lines.append(f"  evidence:  {'THIN: ' + r.why_thin if r.thin else ok}")
        blocks.append("\n".join(lines))
    return "\n\n".join(blocks)
