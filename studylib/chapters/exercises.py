"""The measured answers to the chapters' exercises, one sentence each, read from the run.

Chapters 01-08 end with exercises (sphinx-exercise blocks in the notebook): a prediction to
make, the command that tests it, and a folded solution. The solution cites one sentence per
exercise, glued from the chapter's own run (`glue_answers`, called by the notebook): the
numbers are computed here from the rows, never typed. Where the run lacks the rows (the smoke
profile measures one ratio, one seed), the sentence says so and names the profile that has
them. The runs that answer the exercises are the chapters' `default` profile, what
`make book` executes.

Each sentence gives the means over seeds and, for a difference, d with its 95% CI by the
book's rule (`analysis.evidence.compare`: seeds paired, evaluation noise unpaired).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from typing import Any

import pandas as pd

from studylib.analysis import evidence
from studylib.chapters import show

MISSING = "not measured in this run (it is in the default profile, what `make book` runs)"


def _pct(x: float) -> str:
    return f"{x:.1f}%"


def _d(r: Mapping[str, Any]) -> str:
    """"d = +3.1 points [95% CI -0.4, +6.6], 3 seeds"."""
    return (f"d = {show.interval(r['d'], r['lo'], r['hi'], signed=True).replace(' [', ' points [95% CI ')}"
            f", {r['seeds']} seed{'s' if r['seeds'] != 1 else ''}")


def retained(ev: pd.DataFrame, a: Mapping[str, Any], b: Mapping[str, Any], a_name: str,
             b_name: str) -> str:
    """"<a> keeps X% of the teacher's AVG, <b> Y%: d = ..." for two conditions of `ev`."""
    r = evidence.compare(evidence.select(ev, **a), evidence.select(ev, **b))
    if r is None:
        return f"{a_name} against {b_name}: {MISSING}"
    return (f"{a_name} keeps {_pct(r['a'])} of the teacher's AVG and {b_name} {_pct(r['b'])}: "
            f"{_d(r)}")


def against(ev: pd.DataFrame, a: Mapping[str, Any], a_name: str, threshold: float) -> str:
    """"<a> keeps X% of the teacher's AVG: d = X - threshold ..." (above or below a bar)."""
    r = evidence.compare(evidence.select(ev, **a), threshold=threshold)
    if r is None:
        return f"{a_name}: {MISSING}"
    side = "above" if r["lo"] > 0 else "below" if r["hi"] < 0 else "not clearly above or below"
    return (f"{a_name} keeps {_pct(r['a'])} of the teacher's AVG, {side} {threshold:g}% "
            f"({_d(r)})")


def first_drop(ev: pd.DataFrame, benchmark: str, points: float, where: Mapping[str, Any],
               name: str) -> str:
    """At which ratio `benchmark` first falls `points` below the teacher (means over seeds)."""
    rows = evidence.select(ev, **where).dropna(subset=[benchmark])
    if rows.empty:
        return f"{name}: {MISSING}"
    drops = (rows[f"teacher_{benchmark}"] - rows[benchmark]).groupby(rows.ratio).mean()
    drops = drops.sort_index()
    teacher = float(rows[f"teacher_{benchmark}"].mean())
    fell = [(r, d) for r, d in drops.items() if d >= points]
    head = f"{name}: the teacher's {benchmark} is {teacher:.1f}; "
    if not fell:
        worst = (f"it falls at most {drops.max():.1f} points" if drops.max() > 0
                 else "it never falls below the teacher's")
        return head + (f"it stays within {points:g} points at every ratio measured, up to "
                       f"{max(drops.index):.0%} ({worst})")
    r, d = fell[0]
    held = [x for x in drops.index if x < r]
    before = f"it stays within {points:g} points up to {max(held):.0%} and " if held else "it "
    return head + f"{before}first falls {d:.1f} points at {r:.0%}"


def value(run: pd.DataFrame, metric: str, **where: Any) -> float:
    """The mean of `metric` over the run's rows matching `where` (nan when none)."""
    if not {"metric", "value", *where} <= set(run.columns):
        return math.nan
    rows = evidence.select(run[run.metric == metric], **where)
    return float(pd.to_numeric(rows.value, errors="coerce").mean()) if len(rows) else math.nan


# --- the chapters' exercises --------------------------------------------------------------


def _01(run: pd.DataFrame, ev: pd.DataFrame) -> dict[str, str]:
    return {
        "ex_bi_vs_random": retained(ev, dict(method="layer", ratio=0.3, recipe="none"),
                                    dict(method="layer-random", ratio=0.3, recipe="none"),
                                    "Block Influence at 30%", "random layers"),
        "ex_pope_layers": first_drop(ev, "POPE", 10.0, dict(method="layer", recipe="none"),
                                     "layerwise pruning"),
    }


def _02(run: pd.DataFrame, ev: pd.DataFrame) -> dict[str, str]:
    return {
        "ex_projector15": "; ".join(
            against(ev, dict(method=m, ratio=0.15, recipe="sft-mm"),
                    f"after {m} pruning at 15%, the projector alone", 95.0)
            for m in ("layer", "width")),
        "ex_lora45": "; ".join(
            retained(ev, dict(method=m, ratio=0.45, recipe="sft"),
                     dict(method=m, ratio=0.45, recipe="sft-mm"),
                     f"after {m} pruning at 45%, projector + LoRA", "the projector alone")
            for m in ("layer", "width")),
    }


def _03(run: pd.DataFrame, ev: pd.DataFrame) -> dict[str, str]:
    # layerwise 30%: in both of the chapter's runs per architecture (ratio30 and table2)
    return {
        "ex_rkl_sft": retained(ev, dict(method="layer", ratio=0.3, recipe="rkl"),
                               dict(method="layer", ratio=0.3, recipe="sft"),
                               "reverse KL alone (layer 30%)", "SFT alone"),
        "ex_l2": retained(ev, dict(method="layer", ratio=0.3, recipe="sft+l2"),
                          dict(method="layer", ratio=0.3, recipe="sft"),
                          "SFT + L2 (layer 30%)", "SFT alone"),
    }


def _04(run: pd.DataFrame, ev: pd.DataFrame) -> dict[str, str]:
    return {
        "ex_20_vs_5": retained(ev, dict(method="width", ratio=0.6, recipe="sft+l2",
                                        data_fraction=0.2),
                               dict(method="width", ratio=0.6, recipe="sft+l2",
                                    data_fraction=0.05),
                               "20% of the data (width 60%)", "5%"),
        "ex_5_vs_all": retained(ev, dict(method="width", ratio=0.3, recipe="sft+l2",
                                         data_fraction=0.05),
                                dict(method="width", ratio=0.3, recipe="sft+l2",
                                     data_fraction=1.0),
                                "5% of the data (width 30%)", "all of it"),
    }


def _06(run: pd.DataFrame, ev: pd.DataFrame) -> dict[str, str]:
    return {
        "ex_layer_width": retained(ev, dict(method="layer", ratio=0.3, recipe="none"),
                                   dict(method="width", ratio=0.3, recipe="none"),
                                   "layerwise at 30% (no recovery)", "widthwise"),
        "ex_l2": retained(ev, dict(method="width", ratio=0.3, recipe="sft+l2"),
                          dict(method="width", ratio=0.3, recipe="sft"),
                          "SFT + L2 (width 30%)", "SFT alone"),
    }


def _07(run: pd.DataFrame, ev: pd.DataFrame) -> dict[str, str]:
    cost = "; ".join(
        retained(ev, dict(method=f"{m}-int8", ratio=r, recipe=rec),
                 dict(method=m, ratio=r, recipe=rec), f"{name} in int8", "in float32")
        for m, r, rec, name in (("none", 0.0, "none", "the teacher"),
                                ("width", 0.3, "sft+l2", "the width-30% student")))
    fp32 = value(run, "weights_mib", method="width", ratio=0.3)
    int8 = value(run, "weights_mib", method="width-int8", ratio=0.3)
    memory = (f"the width-30% student's weights take {fp32:.2f} MiB in float32 and "
              f"{int8:.2f} MiB in int8 ({100 * (1 - int8 / fp32):.0f}% less)"
              if math.isfinite(fp32) and math.isfinite(int8)
              else f"the width-30% student's weight memory: {MISSING}")
    return {"ex_int8_cost": cost, "ex_int8_memory": memory}


def _08(run: pd.DataFrame, ev: pd.DataFrame) -> dict[str, str]:
    times = []
    for m in ("layer", "width"):
        t = value(run, "prefill_paired_ratio", method=m, ratio=0.3, batch=1.0, arch="toy-llava")
        times.append(f"{m} {t:.2f}x the teacher's time" if math.isfinite(t)
                     else f"{m}: {MISSING}")
    full = value(run, "params", method="none", arch="llava-1.5-7b")
    cut = value(run, "params", method="width", ratio=0.3, arch="llava-1.5-7b")
    params = (f"widthwise pruning at 30% leaves real LLaVA-1.5-7B {cut / 1e9:.2f} B of its "
              f"{full / 1e9:.2f} B parameters: it removes {100 * (1 - cut / full):.1f}% of "
              "the whole model" if math.isfinite(full) and math.isfinite(cut)
              else f"real LLaVA-1.5-7B's parameters: {MISSING}")
    return {"ex_prefill": "batch-1 prefill of toy-llava pruned by 30%: " + ", ".join(times),
            "ex_params7b": params}


def _05(verdicts: pd.DataFrame, paired: pd.DataFrame, unpaired: pd.DataFrame) -> dict[str, str]:
    significant = {"supported", "contradicted"}
    n_paired = int(paired.outcome.isin(significant).sum()) if len(paired) else 0
    n_unpaired = int(unpaired.outcome.isin(significant).sum()) if len(unpaired) else 0
    per_arch = "; ".join(
        f"{arch}: " + ", ".join(f"finding {int(r.finding)} {r.on_arch}" for r in g.itertuples())
        for arch, g in verdicts.groupby("arch", sort=False)) if len(verdicts) else MISSING
    return {"ex_pairing": (f"{n_paired} of {len(paired)} claims are significant with the "
                           f"evaluation noise paired by item, {n_unpaired} with it unpaired"
                           if len(paired) else f"the claims: {MISSING}"),
            "ex_per_arch": f"per architecture: {per_arch}"}


ANSWERS: dict[str, Callable[[pd.DataFrame, pd.DataFrame], dict[str, str]]] = {
    "01_pruning_comparison": _01, "02_sft_recovery": _02, "03_kd_ablation": _03,
    "04_data_efficiency": _04, "06_generalization": _06, "07_quantization": _07,
    "08_resources": _08,
}


def glue_answers(study: str, run: pd.DataFrame) -> dict[str, str]:
    """Glue the study's exercise answers (each a sentence) from its run's rows, for the
    solutions to cite as ``{glue:text}`ex_...` ``."""
    answers = ANSWERS[study](run, evidence.evaluations(run))
    for name, sentence in answers.items():
        show.glue(name, sentence)
    return answers


def glue_verdict_answers(verdicts: pd.DataFrame, paired: pd.DataFrame,
                         unpaired: pd.DataFrame) -> dict[str, str]:
    """Chapter 05's: it judges the other chapters' claims, so its answers come from them."""
    answers = _05(verdicts, paired, unpaired)
    for name, sentence in answers.items():
        show.glue(name, sentence)
    return answers
