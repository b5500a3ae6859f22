"""Two claims beyond the paper (issue 30), judged with its findings by the same rule.

- **6. Depth and width together.** NVIDIA's Minitron prunes both axes. Half of a 30% budget
  from layers (Block Influence) and half from widths (Taylor), `depth+width@0.5`, against
  each pure method, after the same recovery (the paper's FT of projector + LLM, `sft`, else
  `sft+l2`), at the same requested ratio. Layerwise pruning moves in whole layers, so its
  achieved ratio can be larger than the mix's; the setting says both.
- **7. Skew reverse KL.** DistiLLM's skew reverse KL mixes a share of the teacher into the
  student's distribution, which stabilises reverse KL: `sft+srkl` against `sft+rkl` at every
  pruned setting and data fraction where both ran.

Each is a finding of its own (`STATEMENTS`) with its own Holm family, numbered after the
paper's five; `findings.claims` calls `claims` per architecture. A chapter that did not run
these conditions contributes no claim: the finding is "not measured".
"""

from __future__ import annotations

from collections.abc import Callable

import pandas as pd

from studylib.analysis.evidence import select

MIX = "depth+width@0.5"
MIX_RATIO = 0.3
RECOVERY = ("sft", "sft+l2")  # the recipe judged: the first one measured for all three methods
STATEMENTS = {
    6: "Beyond the paper: a depth+width mix (half the budget each) beats both pure methods "
       "after recovery at 30%.",
    7: "Beyond the paper: skew reverse KL (DistiLLM) recovers at least as well as reverse KL.",
}
EVIDENCE = {
    6: "Minitron (Muralidharan et al. 2024); not in the paper",
    7: "DistiLLM (Ko et al. 2024); not in the paper",
}
CHAPTERS = {6: "03_kd_ablation", 7: "03_kd_ablation"}  # where the conditions are measured


def _achieved(rows: pd.DataFrame) -> str:
    return f"{100 * rows.ratio_achieved.mean():.1f}%"


def claims(claim: Callable[..., None], arch: str, e: pd.DataFrame,
           compare: Callable[..., dict | None]) -> None:
    """Add findings 6 and 7's claims on `arch`'s evaluations `e` through `claim(finding,
    arch, text, setting, result)`."""
    rec = e[e.recipe != "none"]
    at = select(rec, ratio=MIX_RATIO)
    for recipe in RECOVERY:
        sides = {m: select(at, method=m, recipe=recipe) for m in (MIX, "layer", "width")}
        if any(s.empty for s in sides.values()):
            continue
        fractions = set.intersection(*({float(f) for f in s.data_fraction.dropna()}
                                       for s in sides.values()))
        f = max(fractions) if fractions else None
        mix = select(sides[MIX], data_fraction=f)
        for pure in ("layer", "width"):
            other = select(sides[pure], data_fraction=f)
            setting = (f"ratio {MIX_RATIO:g}, recipe {recipe}"
                       + ("" if f is None else f", data {f:g}")
                       + f"; achieved: mix {_achieved(mix)}, {pure} {_achieved(other)}")
            claim(6, arch, f"depth+width@0.5 > {pure} (recovered)", setting,
                  compare(mix, other))
        break
    for (method, r), g in rec.groupby(["method", "ratio"]):
        for f in sorted({float(x) for x in g.data_fraction.dropna()}) or [None]:
            sub = select(g, data_fraction=f)
            srkl, rkl = sub[sub.recipe == "sft+srkl"], sub[sub.recipe == "sft+rkl"]
            if srkl.empty or rkl.empty:
                continue
            setting = f"method {method}, ratio {r:g}" + ("" if f is None else f", data {f:g}")
            claim(7, arch, "SFT+SRKL >= SFT+RKL", setting, compare(srkl, rkl))
