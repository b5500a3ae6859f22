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

from studylib.analysis import paper, tables
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


PAPER_COL = "(paper, Tables 10–11)"


def pruning_label(method: str, ratio: float, removed: float = math.nan) -> str:
    """How a reader names a student's pruning: "layerwise 30%", with the share of the LLM's
    decoder parameters actually removed where it differs (layerwise moves in whole layers)."""
    if method == "none":
        return "unpruned"
    text = f"{method}wise {100 * ratio:g}%"
    if np.isfinite(removed) and abs(removed - ratio) > 5e-4:
        text += f" ({100 * removed:.1f}% removed)"
    return text


def side_by_side(summary: pd.DataFrame, paper: pd.DataFrame,
                 run: pd.DataFrame | None = None) -> pd.DataFrame:
    """One row per (method, ratio, recipe), in reader words: our AVG-% (mean over seeds, its
    95% CI half-width when there are several seeds) beside the paper's where Tables 10-11
    print the cell (NaN where they do not); with `run`, also GQA retention (`retention`),
    ours and the paper's."""
    ours = summary[summary.recipe.isin(RECIPE_ORDER)].copy()
    keys = list(zip(ours.method, ours.ratio, ours.recipe, strict=True))
    p = paper[paper.ratio > 0].set_index(["method", "ratio", "recipe"])
    out = pd.DataFrame({
        "pruning": [pruning_label(m, r, a) for m, r, a in
                    zip(ours.method, ours.ratio, ours.ratio_achieved, strict=True)],
        "recovery": [RECIPE_LABELS[r] for r in ours.recipe],
        "AVG-% (ours)": ours["mean"].to_numpy(float),
        "± 95% CI (ours)": ours.ci95.to_numpy(float),
        f"AVG-% {PAPER_COL}": [p.avg_pct.get(k, math.nan) for k in keys]})
    if run is not None:
        gqa = retention(run).set_index(["method", "ratio", "recipe"])["GQA-%"]
        gqa0 = float(paper[paper.ratio == 0].GQA.iloc[0])
        out["GQA-% (ours)"] = [gqa.get(k, math.nan) for k in keys]
        out[f"GQA-% {PAPER_COL}"] = [metrics.pct_of_teacher(p.GQA.get(k, math.nan), gqa0)
                                     for k in keys]
    if out["± 95% CI (ours)"].isna().all():
        out = out.drop(columns="± 95% CI (ours)")
    order = pd.DataFrame({"ratio": ours.ratio.to_numpy(), "method": ours.method.to_numpy(),
                          "r": [RECIPE_ORDER.index(r) for r in ours.recipe]})
    out = out.iloc[order.sort_values(["ratio", "method", "r"]).index].reset_index(drop=True)
    values = [c for c in out.columns if c not in ("pruning", "recovery")]
    out[values] = out[values].round(1)
    return out


def _per_model(frame: pd.DataFrame) -> pd.DataFrame:
    """Scores by model in reader words: one row per (method, ratio, recipe), the unpruned
    model first, then by ratio, method and recipe; the six benchmarks and AVG."""
    f = frame.assign(r=[RECIPE_ORDER.index(r) for r in frame.recipe])
    f = f.sort_values(["ratio", "method", "r"])  # the unpruned model has ratio 0
    achieved = f.ratio_achieved if "ratio_achieved" in f else f.ratio
    model = [pruning_label(m, r, a) + ("" if m == "none" else
                                       f", {'prune only' if rec == 'none' else rec}")
             for m, r, a, rec in zip(f.method, f.ratio, achieved, f.recipe, strict=True)]
    values = [*metrics.PAPER_KEYS, "AVG"]
    return pd.DataFrame({"model": model, **{k: f[k].to_numpy(float) for k in values}})


def benchmark_table(run: pd.DataFrame) -> pd.DataFrame:
    """Our per-benchmark scores of every model in a run (first seed), on the paper's scale,
    in the column order of Tables 10-11; the teacher's row first."""
    rows = run[(run.metric == "score") & (run.model != "chance")
               & run.benchmark.isin(metrics.PAPER_KEYS)].copy()
    rows = rows[rows.seed.isna() | (rows.seed == rows.seed.min())]
    rows["recipe"] = rows.recipe.fillna("none")
    rows["ratio_achieved"] = rows.ratio_achieved.fillna(0.0).astype(float)
    table = rows.pivot_table(index=["method", "ratio", "ratio_achieved", "recipe"],
                             columns="benchmark", values="value", sort=False)
    table = table[list(metrics.PAPER_KEYS)]
    table["AVG"] = [metrics.average(dict(zip(metrics.PAPER_KEYS, v, strict=True)))
                    for v in table.to_numpy(float)]
    return _per_model(table.reset_index())


def paper_benchmark_table(paper: pd.DataFrame) -> pd.DataFrame:
    """The paper's Tables 10-11 (`paper_tables_10_11`) in `benchmark_table`'s layout."""
    return _per_model(paper)


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
              gqa: pd.DataFrame | None = None,
              paper: pd.DataFrame | None = None) -> list[str]:
    """The paper's InternVL statements, each checked on our rows where the grid has them:
    projector-only recovery >= 95% at 15%; at 30% layerwise, finetuning the LLM adds much
    more than the projector alone; SFT + KD >= SFT. `gqa`: `retention(run)`, for the same
    30% layerwise comparison on GQA alone. The paper's side is read from `paper`
    (`paper_tables_10_11()` by default), never typed."""
    paper = paper_tables_10_11() if paper is None else paper
    s = summary.set_index(["method", "ratio", "recipe"])["mean"]
    p = paper.set_index(["method", "ratio", "recipe"])
    gqa0 = float(paper[paper.ratio == 0].GQA.iloc[0])

    def get(method: str, ratio: float, recipe: str) -> float:
        return float(s.get((method, ratio, recipe), math.nan))

    def theirs(method: str, ratio: float, recipe: str, col: str = "avg_pct") -> float:
        v = float(p[col].get((method, ratio, recipe), math.nan))
        return metrics.pct_of_teacher(v, gqa0) if col == "GQA" else v

    lines = []
    for method in ("layer", "width"):
        v = get(method, 0.15, "sft-mm")
        if np.isfinite(v):
            lines.append(f"15% {method}wise, projector only: {v:.1f}% (paper "
                         f"{theirs(method, 0.15, 'sft-mm'):.1f}%; finding 3 expects >= 95%: "
                         f"{'agrees' if v >= 95 else 'disagrees'})")
    for col, what, ours in (("avg_pct", "30% layerwise: ", s),
                            ("GQA", "30% layerwise, GQA retained: ",
                             None if gqa is None else
                             gqa.set_index(["method", "ratio", "recipe"])["GQA-%"])):
        if ours is None:
            continue
        mm, full = (float(ours.get(("layer", 0.3, r), math.nan)) for r in ("sft-mm", "sft"))
        pm, pf = (theirs("layer", 0.3, r, col) for r in ("sft-mm", "sft"))
        if np.isfinite(mm) and np.isfinite(full):
            lines.append(f"{what}projector only {mm:.1f}%, projector + LoRA {full:.1f}% "
                         f"({full - mm:+.1f} points; paper {pm:.1f}% -> {pf:.1f}%, "
                         f"{pf - pm:+.1f}: at 30% the LLM itself needs training -> "
                         f"{'agrees' if full - mm > 5 else 'disagrees'})")
    for method in ("layer", "width"):
        for ratio in sorted(set(summary.ratio)):
            sft, kd = get(method, ratio, "sft"), get(method, ratio, "sft+l2")
            if np.isfinite(sft) and np.isfinite(kd):
                d = theirs(method, ratio, "sft+l2") - theirs(method, ratio, "sft")
                said = f"paper {d:+.1f}" if np.isfinite(d) else "not in the paper's tables"
                lines.append(f"{100 * ratio:g}% {method}wise: SFT + L2 KD {kd:.1f}% vs SFT "
                             f"{sft:.1f}% ({kd - sft:+.1f} points; {said})")
    removed = summary[summary.method == "layer"].groupby("ratio").ratio_achieved.mean()
    for ratio, got in removed.items():
        if abs(got - ratio) > 5e-4:
            lines.append(f"layerwise pruning removes whole decoder layers: {100 * ratio:g}% "
                         f"requested removed {100 * got:.1f}% of the LLM's decoder "
                         "parameters, so that student is not quite the paper's")
    if np.isfinite(chance):
        lines.append(f"a random guesser reaches {chance:.0f}% of the teacher's AVG")
    lines.append(f"{items} items per benchmark" + (
        "; with this few items differences of a few points are noise" if items < 100 else ""))
    return lines


def teacher_vs_chance(run: pd.DataFrame) -> dict[str, float]:
    """The teacher's AVG, a random guesser's AVG-% and the teacher's GQA as a multiple of
    the guesser's: why this chapter reads GQA-% beside AVG-%."""
    score = run[(run.metric == "score") & (run.benchmark == "GQA")]
    teacher = score[(score.model != "chance") & (score.method == "none")].value.mean()
    guess = score[score.model == "chance"].value.mean()
    return {"teacher_avg": tables.teacher_avg(run), "chance_pct": tables.chance_pct(run),
            "gqa_x_chance": float(teacher / guess) if guess > 0 else math.nan}


def teacher_table(checkpoint) -> pd.DataFrame:
    """How big the toy-internvl teacher is: parameters by part and each part's share."""
    counts = teachers.read_summary(checkpoint)["parameters"]
    parts = ["vision", "projector", "llm", "total"]
    return pd.DataFrame({"part": ["vision tower", "projector", "LLM", "total"],
                         "parameters": [f"{int(counts[k]):,}" for k in parts],
                         "% of total": [100 * counts[k] / counts["total"] for k in parts]})


def teacher_note(checkpoint) -> str:
    """How the teacher was trained, from its checkpoint's training summary, in one sentence."""
    trained = teachers.read_summary(checkpoint)
    probe = ", ".join(f"{k} {100 * v:.1f}%" for k, v in
                      trained["vision_pretraining"]["cell_accuracy"].items())
    threads = trained["machine"]["threads"]
    return (f"Its vision tower, pretrained and then frozen, reads each grid cell's attributes "
            f"with probe accuracy {probe}; the whole teacher trained in "
            f"{trained['wall_time_s'] / 60:.0f} minutes on {threads} CPU "
            f"thread{'s' if threads != 1 else ''} of an {trained['machine']['kind']} CPU, "
            f"in {trained['recipe']['dtype']}.")
