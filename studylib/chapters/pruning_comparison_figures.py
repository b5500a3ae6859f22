"""Chapter 01's figures, drawn from the run's rows (`pruning_comparison.summary`)."""

from __future__ import annotations

import matplotlib.pyplot as plt
import pandas as pd
import seaborn as sns

from studylib.analysis.paper import SHORT_PAPER_NAME, paper_table
from studylib.chapters import plotting
from studylib.chapters.pruning_comparison import OWN_SCORES, paper_models, scores
from studylib.evaluation import metrics


def fig_ratio_curves(summary: pd.DataFrame, methods, arch: str, paper_model: str | None,
                     chance_pct: float):
    """AVG-% against the achieved ratio, each method with its own importance score (solid)
    and random scores (dashed); beside it the paper's Table 6 for the same family."""
    paper = paper_table("table6_pruning_only")
    chosen = paper_models(paper_model)
    fig, (ax, axp) = plt.subplots(1, 2, figsize=(10, 3.8), sharey=True)
    for m in methods:
        for imp, g in summary[summary.family == m].groupby("importance", sort=False):
            pts = pd.concat([summary[summary.method == "none"], g]).sort_values("achieved")
            ax.plot(pts.achieved, pts["AVG-%"], marker="o" if imp != "random" else "x",
                    ls="--" if imp == "random" else "-", alpha=0.6 if imp == "random" else 1,
                    color=plotting.color(m), label=f"{m} ({imp})")
    ax.axhline(chance_pct, color=plotting.color("chance"), ls=":", lw=1.2, label="chance")
    ax.set(title=f"this study ({arch})", xlabel="fraction of LLM decoder parameters removed",
           ylabel="AVG-% (of the unpruned model)")
    ax.legend(fontsize=8)
    for pm, ls in zip(chosen, ["-", "--"], strict=False):
        for m, g in paper[paper.model == pm].groupby("method", sort=False):
            if m != "none":
                g = pd.concat([paper[(paper.model == pm) & (paper.method == "none")], g])
                axp.plot(g.ratio, g.AVG_pct, marker="s", ls=ls, color=plotting.color(m),
                         label=f"paper ({SHORT_PAPER_NAME.get(pm, pm)}) {m}")
    axp.set(title="paper, Table 6 (" + ", ".join(SHORT_PAPER_NAME.get(pm, pm) for pm in chosen)
            + ")", xlabel="pruning ratio (requested)",
            ylim=(0, max(110, summary["AVG-%"].max() + 8, chance_pct + 8)))
    axp.legend(fontsize=8)
    fig.tight_layout()
    return fig


def fig_block_influence(run: pd.DataFrame, arch: str):
    """Block Influence per decoder layer, shaded by the smallest ratio that removes it
    (None when the run has no layerwise pruning with Block Influence)."""
    bi = run[run.benchmark == "block_influence"]
    if bi.empty:
        return None
    per_layer = bi.groupby("layer").value.mean()
    first = bi[bi.removed.astype(bool)].groupby("layer").ratio.min()  # first ratio removing it
    steps = sorted(bi.ratio.unique())
    shades = dict(zip(steps, sns.light_palette(plotting.color("layer"), len(steps) + 1,
                                               reverse=True)[:len(steps)], strict=True))
    fig, ax = plt.subplots(figsize=(max(4.0, 0.55 * len(per_layer) + 1.5), 3.2))
    ax.bar(per_layer.index, per_layer.values,
           color=[shades[first[i]] if i in first.index else "#d9d9d9" for i in per_layer.index])
    for r in steps:
        ax.bar([0], [0], color=shades[r], label=f"removed at r = {r:g}")
    ax.set(xlabel="decoder layer", ylabel="Block Influence", xticks=list(per_layer.index),
           title=f"Block Influence of {arch}'s layers")
    ax.legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.0, 1.0))
    fig.tight_layout()
    return fig


def fig_benchmarks(run: pd.DataFrame, model: str, arch: str):
    """Scores on the paper's 0-100 scale: teacher, chance, and each pruned model (own
    importance scores), as a heatmap."""
    s = scores(run, model)
    on_scale = s.assign(value=s.value / s.benchmark.map(metrics.PAPER_SCALE))
    on_scale = on_scale[on_scale.importance.isin(OWN_SCORES)]
    labelled = on_scale.assign(row=[("teacher" if m == "none" else f"{m} r={r:g} ({a:.3g})")
                                    for m, r, a in zip(on_scale.method, on_scale.ratio,
                                                       on_scale.ratio_achieved, strict=True)])
    heat = labelled.pivot_table(index="row", columns="benchmark", values="value", sort=False)
    chance = run[(run.model == "chance") & (run.metric == "score")]
    heat.loc["chance"] = (chance.value / chance.benchmark.map(metrics.PAPER_SCALE)).set_axis(
        chance.benchmark)
    heat = heat[list(metrics.PAPER_KEYS)]
    heat["AVG"] = heat.mean(axis=1)
    fig, ax = plt.subplots(figsize=(7.5, 0.42 * len(heat) + 1.2))
    sns.heatmap(heat, annot=True, fmt=".0f", cmap="viridis", vmin=0, vmax=100, ax=ax,
                cbar_kws={"label": "score (0-100 scale)"})
    ax.set(xlabel="", ylabel="", title=f"{arch}: scores after pruning")
    fig.tight_layout()
    return fig
