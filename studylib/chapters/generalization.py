"""Chapter 06: do the practices carry over to a third architecture? (paper Tables 10-11)

The paper checks its recipe on Mini-InternVL-Chat-4B-V1-5 (InternViT-300M, pixel-shuffle
MLP projector, Phi-3-mini): layerwise and widthwise pruning at 15% and 30%, recovered by
finetuning the projector only ("SFT mm only"), the projector and the LLM ("SFT mm + LLM")
and SFT plus distillation ("SFT+KD mm + LLM"). Our stand-in is `toy-internvl`
(`studylib.models`), trained like the other teachers; the recipes map to our presets
`sft-mm`, `sft` and `sft+l2` (the paper's best-practice KD is the last-layer L2, Table 3).

Everything here reads the results table's rows (via `studylib.study.grid`) and the paper's CSV
in studylib/analysis/paper_tables/; nothing trains.
"""

from __future__ import annotations

import math

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
from matplotlib.lines import Line2D
from matplotlib.patches import Patch

from studylib.analysis import paper
from studylib.analysis.paper import TABLE10_11_MODEL, TABLE10_11_RECIPES
from studylib.chapters import plotting
from studylib.evaluation import metrics
from studylib.testbed import teachers

RECIPE_ORDER = ("none", "sft-mm", "sft", "sft+l2")
RECIPE_LABELS = {"none": "prune only", "sft-mm": "projector (sft-mm)",
                 "sft": "projector + LoRA (sft)", "sft+l2": "SFT + L2 KD (sft+l2)"}
_COLOR_KEYS = {"none": "prune only", "sft-mm": "sft mm", "sft": "sft mm+llm", "sft+l2": "sft+l2"}


def recipe_color(recipe: str) -> str:
    return plotting.color(_COLOR_KEYS.get(recipe, recipe))


def paper_tables_10_11() -> pd.DataFrame:
    """The paper's Tables 10-11 by our names: method, ratio, recipe, its six benchmarks,
    AVG and AVG-% (recomputed as AVG / AVG(unpruned); it agrees with the printed column)."""
    t = paper.paper_table("table10_11_internvl")
    avg0 = float(t[t.ratio == 0.0].AVG.iloc[0])
    out = t.assign(recipe=t.recipe.map(TABLE10_11_RECIPES),
                   ratio=t.ratio.astype(float).round(4),
                   avg_pct=metrics.pct_of_teacher(t.AVG, avg0))
    return out[["method", "ratio", "recipe", *metrics.PAPER_KEYS, "AVG", "avg_pct"]]


def retention(run: pd.DataFrame, benchmark: str = "GQA") -> pd.DataFrame:
    """Each student's score on one benchmark as a % of the teacher's (mean over seeds).

    AVG-% mixes in the yes/no benchmarks, which our teachers answer with a constant (chapter
    00); GQA is the benchmark they have learned, so its retention is the sharper measure.
    """
    rows = run[(run.benchmark == benchmark) & (run.metric == "score") & (run.model != "chance")]
    teacher = float(rows[rows.method == "none"].value.iloc[0])
    students = rows[rows.method != "none"].assign(recipe=lambda d: d.recipe.fillna("none"))
    students = students.assign(ratio=students.ratio.astype(float).round(4),
                               pct=metrics.pct_of_teacher(students.value.astype(float),
                                                          teacher))
    return (students.groupby(["method", "ratio", "recipe"]).pct.mean()
            .rename(f"{benchmark}-%").reset_index())


def side_by_side(summary: pd.DataFrame, paper: pd.DataFrame,
                 run: pd.DataFrame | None = None) -> pd.DataFrame:
    """One row per (method, ratio, recipe): our AVG-% (mean over seeds, achieved ratio) beside
    the paper's where Tables 10-11 print the cell (NaN where they do not); with `run`, also
    GQA retention (`retention`), ours and the paper's."""
    ours = summary[summary.recipe.isin(RECIPE_ORDER)].copy()
    keys = list(zip(ours.method, ours.ratio, ours.recipe, strict=True))
    p = paper[paper.ratio > 0].set_index(["method", "ratio", "recipe"])
    ours["paper"] = [p.avg_pct.get(k, math.nan) for k in keys]
    ours["ours - paper"] = ours["mean"] - ours["paper"]
    cols = ["method", "ratio", "ratio_achieved", "recipe", "mean", "ci95", "paper",
            "ours - paper"]
    if run is not None:
        gqa = retention(run).set_index(["method", "ratio", "recipe"])["GQA-%"]
        gqa0 = float(paper[paper.ratio == 0].GQA.iloc[0])
        ours["GQA-% ours"] = [gqa.get(k, math.nan) for k in keys]
        ours["GQA-% paper"] = [metrics.pct_of_teacher(p.GQA.get(k, math.nan), gqa0)
                               for k in keys]
        cols += ["GQA-% ours", "GQA-% paper"]
    ours["recipe"] = pd.Categorical(ours.recipe, RECIPE_ORDER, ordered=True)
    out = ours.sort_values(["ratio", "method", "recipe"])[cols]
    out = out.rename(columns={"mean": "AVG-% ours", "ci95": "± ours", "paper": "AVG-% paper",
                              "ratio_achieved": "removed"})
    if out["± ours"].isna().all():
        out = out.drop(columns="± ours")
    values = [c for c in out.columns if c not in ("method", "ratio", "recipe", "removed")]
    out[values] = out[values].round(1)
    return out.assign(removed=out.removed.round(3)).reset_index(drop=True)


def benchmark_table(run: pd.DataFrame) -> pd.DataFrame:
    """Our per-benchmark scores of every model in a run (first seed), on the paper's scale,
    in the column order of Tables 10-11; the teacher's row first."""
    rows = run[(run.metric == "score") & (run.model != "chance")
               & run.benchmark.isin(metrics.PAPER_KEYS)].copy()
    rows = rows[rows.seed.isna() | (rows.seed == rows.seed.min())]
    rows["recipe"] = rows.recipe.fillna("none")
    table = rows.pivot_table(index=["method", "ratio", "recipe"], columns="benchmark",
                             values="value", sort=False)[list(metrics.PAPER_KEYS)]
    table["AVG"] = [metrics.average(dict(zip(metrics.PAPER_KEYS, v, strict=True)))
                    for v in table[list(metrics.PAPER_KEYS)].to_numpy(float)]
    table = table.reset_index()
    table["recipe"] = pd.Categorical(table.recipe, RECIPE_ORDER, ordered=True)
    values = [*metrics.PAPER_KEYS, "AVG"]
    table[values] = table[values].round(1)
    return table.sort_values(["ratio", "method", "recipe"]).reset_index(drop=True)


def fig_tables_10_11(summary: pd.DataFrame, paper: pd.DataFrame, arch: str,
                     chance: float | None = None, gqa: pd.DataFrame | None = None):
    """AVG-% per recovery recipe, one panel per ratio, grouped by pruning method: ours as
    bars (achieved ratio in the group label), the paper's Mini-InternVL as black diamonds
    where Tables 10-11 print the cell. With `gqa` (`retention(run)`), a second row shows
    GQA retention, the benchmark our teachers have learned, on the same layout."""
    ratios = sorted(summary.ratio.unique())
    methods = [m for m in ("layer", "width") if m in set(summary.method)]
    recipes_ = [r for r in RECIPE_ORDER if r in set(summary.recipe)]
    keys = ["method", "ratio", "recipe"]
    pp = paper[paper.ratio > 0].set_index(keys)
    panels = [("AVG-%", summary.set_index(keys)["mean"], summary.set_index(keys).ci95,
               pp.avg_pct, chance)]
    if gqa is not None:
        gqa0 = float(paper[paper.ratio == 0].GQA.iloc[0])
        panels.append(("GQA-%", gqa.set_index(keys)["GQA-%"], None,
                       metrics.pct_of_teacher(pp.GQA, gqa0), None))
    height = 3.3 * len(panels) + 0.8  # inches; the legend takes the last ~0.75
    fig, axes = plt.subplots(len(panels), len(ratios), figsize=(5.0 * len(ratios) + 0.5, height),
                             sharey="row", squeeze=False)
    width = 0.8 / len(recipes_)
    achieved = summary.groupby(["method", "ratio"]).ratio_achieved.mean()
    for row, (name, ours, ci, theirs, floor) in zip(axes, panels, strict=True):
        top = max(110.0, float(ours.max()) + 10,
                  float(floor) + 5 if floor is not None and np.isfinite(floor) else 0.0)
        for ax, ratio in zip(row, ratios, strict=True):
            for i, method in enumerate(methods):
                for j, recipe in enumerate(recipes_):
                    x, key = i + (j - (len(recipes_) - 1) / 2) * width, (method, ratio, recipe)
                    if key in ours.index:
                        err = float(ci[key]) if ci is not None else math.nan
                        ax.bar(x, float(ours[key]), width * 0.92, color=recipe_color(recipe),
                               yerr=err if np.isfinite(err) else None, capsize=2)
                    if key in theirs.index:
                        ax.plot(x, float(theirs[key]), marker="D", ms=6, color="black",
                                ls="none")
            if floor is not None and np.isfinite(floor):
                ax.axhline(floor, color=plotting.color("chance"), ls=":", lw=1)
            ax.axhline(100, color="#555555", lw=0.8)
            ax.set_xticks(range(len(methods)), [
                f"{m}wise\n({100 * achieved.get((m, ratio), ratio):.3g}% removed)"
                for m in methods])
            ax.set_title(f"{name}, {100 * ratio:g}% requested")
            ax.set_ylim(0, top)
        row[0].set_ylabel(f"{name} (unpruned = 100)")
    handles = [Patch(color=recipe_color(r), label=f"{RECIPE_LABELS[r]}, ours ({arch})")
               for r in recipes_]
    handles.append(Line2D([], [], color="black", marker="D", ls="none",
                          label=f"paper ({TABLE10_11_MODEL}, Tables 10-11)"))
    if chance is not None and np.isfinite(chance):
        handles.append(Line2D([], [], color=plotting.color("chance"), ls=":",
                              label="chance (random guesser), AVG-%"))
    fig.legend(handles=handles, loc="lower center", ncol=2, fontsize=8,
               bbox_to_anchor=(0.5, -0.01))
    fig.tight_layout(rect=(0, 0.75 / height, 1, 1))
    return fig


def takeaways(summary: pd.DataFrame, items: int, chance: float = math.nan,
              gqa: pd.DataFrame | None = None) -> list[str]:
    """The paper's InternVL statements, each checked on our rows where the grid has them:
    projector-only recovery >= 95% at 15%; at 30% layerwise, finetuning the LLM adds much
    more than the projector alone; SFT + KD >= SFT. `gqa`: `retention(run)`, for the same
    30% layerwise comparison on GQA alone."""
    s = summary.set_index(["method", "ratio", "recipe"])["mean"]

    def get(method: str, ratio: float, recipe: str) -> float:
        return float(s.get((method, ratio, recipe), math.nan))

    lines = []
    for method in ("layer", "width"):
        v = get(method, 0.15, "sft-mm")
        if np.isfinite(v):
            paper = {"layer": 96.7, "width": 97.4}[method]
            lines.append(f"15% {method}wise, projector only: {v:.1f}% (paper {paper}%; finding 3 "
                         f"expects >= 95%: {'agrees' if v >= 95 else 'disagrees'})")
    mm, full = get("layer", 0.3, "sft-mm"), get("layer", 0.3, "sft")
    if np.isfinite(mm) and np.isfinite(full):
        lines.append(f"30% layerwise: projector only {mm:.1f}%, projector + LoRA {full:.1f}% "
                     f"({full - mm:+.1f} points; paper 60.6% -> 86.6%, +26.1: at 30% the LLM "
                     f"itself needs training -> {'agrees' if full - mm > 5 else 'disagrees'})")
    if gqa is not None:
        g = gqa.set_index(["method", "ratio", "recipe"])["GQA-%"]
        mm, full = (float(g.get(("layer", 0.3, r), math.nan)) for r in ("sft-mm", "sft"))
        if np.isfinite(mm) and np.isfinite(full):
            lines.append(f"30% layerwise, GQA retained: projector only {mm:.1f}%, projector + "
                         f"LoRA {full:.1f}% ({full - mm:+.1f} points; paper 43.8% -> 85.4%, "
                         f"+41.6 -> {'agrees' if full - mm > 5 else 'disagrees'})")
    for method in ("layer", "width"):
        for ratio in sorted(set(summary.ratio)):
            sft, kd = get(method, ratio, "sft"), get(method, ratio, "sft+l2")
            if np.isfinite(sft) and np.isfinite(kd):
                paper = {("layer", 0.15): "paper +0.4", ("layer", 0.3): "paper +0.6"}.get(
                    (method, ratio), "not in the paper's tables")
                lines.append(f"{ratio:g} {method}wise: SFT + L2 KD {kd:.1f}% vs SFT {sft:.1f}% "
                             f"({kd - sft:+.1f} points; {paper})")
    if np.isfinite(chance):
        lines.append(f"a random guesser reaches {chance:.0f}% of the teacher's AVG")
    lines.append(f"{items} items per benchmark" + (
        "; with this few items differences of a few points are noise" if items < 100 else ""))
    return lines


def teacher_table(checkpoint) -> pd.DataFrame:
    """How the toy-internvl teacher was made: parameters by part, its vision tower's probe
    accuracy and its training time (from the checkpoint's training summary)."""
    trained = teachers.read_summary(checkpoint)
    counts = trained["parameters"]
    return pd.DataFrame([{"arch": trained["arch"], **counts,
                          "llm_share": round(counts["llm"] / counts["total"], 3),
                          **{f"vision probe {k}": round(v, 3)
                             for k, v in trained["vision_pretraining"]["cell_accuracy"].items()},
                          "training_s": trained["wall_time_s"], "threads": trained["threads"]}])
