"""Figures of the recovery chapters (02 finetuning, 04 data efficiency), drawn from the
results table's rows (via `studylib.study.grid`) and, where the paper printed the same
quantity, from its tables (`studylib.analysis.paper`).

Colours follow `plotting.COLORS` (one per recipe across the book); ours are solid lines
labelled "ours (<arch>)", the paper's dashed and labelled "paper (<model>)".
"""

from __future__ import annotations

from collections.abc import Sequence

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
from matplotlib.lines import Line2D
from matplotlib.patches import Patch

from studylib.analysis import paper
from studylib.chapters import plotting
from studylib.compress import subsets
from studylib.evaluation import metrics

# The three curves of the paper's Fig. 2, by our recipe names.
FIG2_CURVES = {"none": "prune only", "sft-mm": "+ finetune projector (sft-mm)",
               "sft": "+ finetune projector + LoRA on LLM (sft)"}
_FIG2_COLORS = {"none": "prune only", "sft-mm": "sft mm", "sft": "sft mm+llm"}


def recipe_label(recipe: str) -> str:
    return FIG2_CURVES.get(recipe, recipe)


def recipe_color(recipe: str) -> str:
    return plotting.color(_FIG2_COLORS.get(recipe, recipe))


# --- the paper's numbers -------------------------------------------------------------------


def paper_fig2(paper_model: str | None) -> pd.DataFrame:
    """The paper's points of Fig. 2 that its tables print, for one model.

    Table 6 gives "prune only" (both methods, both models); Table 2 gives Bunny's layerwise
    "FT" column, the projector + LLM finetuning baseline of its KD comparison (our `sft`).
    AVG-% is recomputed as AVG / AVG(unpruned): Table 6's printed AVG-% for Bunny width
    disagrees with its own AVG column (see study.md). Nothing is printed for "+ finetune
    projector" on LLaVA or Bunny (only InternVL, Tables 10/11: chapter 06, toy-internvl).
    """
    cols = ["method", "ratio", "recipe", "avg_pct", "source"]
    if not paper_model:
        return pd.DataFrame(columns=cols)
    t6 = paper.paper_table("table6_pruning_only")
    t6 = t6[t6.model == paper_model]
    if t6.empty:
        return pd.DataFrame(columns=cols)
    avg0 = float(t6[t6.ratio == 0.0].AVG.iloc[0])
    rows = []
    for method in ("layer", "width"):
        rows.append({"method": method, "ratio": 0.0, "recipe": "none", "avg_pct": 100.0,
                     "source": "Table 6"})
        for r in t6[t6.method == method].itertuples():
            rows.append({"method": method, "ratio": float(r.ratio), "recipe": "none",
                         "avg_pct": metrics.pct_of_teacher(float(r.AVG), avg0),
                         "source": "Table 6"})
    if paper_model == paper.TABLE2_MODEL:
        t2 = paper.paper_table("table2_bunny_layer_kd")
        rows.append({"method": "layer", "ratio": 0.0, "recipe": "sft", "avg_pct": 100.0,
                     "source": "Table 2"})
        rows += [{"method": "layer", "ratio": float(r.ratio), "recipe": "sft",
                  "avg_pct": float(r.FT), "source": "Table 2"} for r in t2.itertuples()]
    return pd.DataFrame(rows, columns=cols)


# --- chapter 02 ----------------------------------------------------------------------------


def fig_trainable_parameters(table: pd.DataFrame):
    """What trains in each recipe, for one pruned model: the model's parameters by part
    (frozen grey, trained coloured), LoRA adapters drawn beyond the LLM they adapt."""
    row0 = table.iloc[0]
    sub = table[(table.method == row0.method) & (table.ratio == row0.ratio)]
    fig, ax = plt.subplots(figsize=(8.5, 1.6 + 0.6 * len(sub)))
    for i, r in enumerate(sub.itertuples()):
        left = 0.0
        segments = [
            ("vision tower (frozen)", r.n_params_vision, "#d9d9d9", None),
            ("projector (trained)", r.n_params_projector, recipe_color("sft-mm"), None),
            ("LLM (frozen)", r.n_params_llm, "#a6a6a6", None),
            ("LoRA adapters on the LLM (trained, merged after)",
             0 if r.train == "mm" else r.lora_params, recipe_color("sft"), "//"),
        ]
        for label, n, colour, hatch in segments:
            if n:
                ax.barh(i, n / 1e3, left=left / 1e3, color=colour, hatch=hatch,
                        edgecolor="white", label=label)
            left += n
        trainable, total = int(r.trainable_params), int(r.n_params)
        ax.text(left / 1e3 * 1.01, i, f"trainable {trainable:,}\n"
                f"({100 * trainable / total:.1f}% of {total:,})", va="center", fontsize=8)
    ax.set_yticks(range(len(sub)), [recipe_label(r) for r in sub.recipe])
    ax.invert_yaxis()
    ax.set_xlabel("parameters (thousands)")
    ax.set_xlim(0, ax.get_xlim()[1] * 1.35)
    handles, labels = ax.get_legend_handles_labels()
    unique = dict(zip(labels, handles, strict=True))
    fig.legend(unique.values(), unique.keys(), loc="lower center", ncol=2, fontsize=8,
               bbox_to_anchor=(0.5, 0.0))
    ax.set_title(f"What trains during recovery ({row0.method} pruning, "
                 f"{100 * row0.ratio_achieved:.3g}% of the LLM removed)")
    fig.tight_layout(rect=(0, 0.17, 1, 1))
    return fig


def _draw_ours(ax, s: pd.DataFrame, recipe: str) -> None:
    s = s.sort_values("ratio_achieved")
    x = np.r_[0.0, s.ratio_achieved.to_numpy(float)]
    y = np.r_[100.0, s["mean"].to_numpy(float)]
    err = np.r_[0.0, np.nan_to_num(s.ci95.to_numpy(float))]
    ax.errorbar(x, y, yerr=err if err.any() else None, color=recipe_color(recipe), marker="o",
                lw=2, ms=5, capsize=3)


def fig2_sft_recovery(summary: pd.DataFrame, arch: str, paper: pd.DataFrame | None = None,
                      paper_model: str | None = None, chance: float | None = None):
    """Paper Fig. 2: AVG-% against the share of LLM parameters removed, one panel per
    pruning method, one curve per recovery (prune only, + projector, + projector + LoRA).

    `summary`: `tables.summarize(pct, ["method", "ratio", "recipe"])` (mean and 95% CI over
    seeds, x = achieved ratio); `paper`: `paper_fig2(...)` (dashed, nominal ratio).
    """
    methods = [m for m in ("layer", "width") if m in set(summary.method)]
    recipes_ = ["none", *[r for r in summary.recipe.unique() if r != "none"]]
    fig, axes = plt.subplots(1, len(methods), figsize=(5.2 * len(methods), 4.0), sharey=True,
                             squeeze=False)
    top = max(105.0, float(summary["mean"].max()) + 8,
              float(chance) + 5 if chance is not None and np.isfinite(chance) else 0.0)
    for ax, method in zip(axes[0], methods, strict=True):
        for recipe in recipes_:
            s = summary[(summary.method == method) & (summary.recipe == recipe)]
            if not s.empty:
                _draw_ours(ax, s, recipe)
            if paper is not None and not paper.empty:
                p = paper[(paper.method == method) & (paper.recipe == recipe)].sort_values("ratio")
                if not p.empty:
                    ax.plot(p.ratio, p.avg_pct, color=recipe_color(recipe), ls="--", marker="s",
                            ms=4, lw=1.3, alpha=0.8)
        if chance is not None and np.isfinite(chance):
            ax.axhline(chance, color=plotting.color("chance"), ls=":", lw=1)
        ax.axhline(100, color="#555555", lw=0.8)
        ax.set_title(f"{method}wise pruning")
        ax.set_xlabel("share of LLM decoder parameters removed")
        ax.set_xlim(-0.02, 0.7)
        ax.set_ylim(0, top)
    axes[0][0].set_ylabel("AVG-% (unpruned = 100)")
    handles = [Line2D([], [], color=recipe_color(r), lw=2, label=recipe_label(r))
               for r in recipes_]
    handles.append(Line2D([], [], color="black", lw=2, marker="o", label=f"ours ({arch})"))
    if paper is not None and not paper.empty:
        handles.append(Line2D([], [], color="black", ls="--", marker="s", lw=1.3,
                              label=f"paper ({paper_model})"))
    if chance is not None and np.isfinite(chance):
        handles.append(Line2D([], [], color=plotting.color("chance"), ls=":",
                              label="chance (random guesser)"))
    fig.legend(handles=handles, loc="lower center", ncol=3, fontsize=8,
               bbox_to_anchor=(0.5, -0.02))
    fig.tight_layout(rect=(0, 0.12, 1, 1))
    return fig


# --- chapter 04 ----------------------------------------------------------------------------


def fig_subsets(subs: Sequence[subsets.Subset], show: int = 240):
    """Which of the first `show` training images each seeded subset selects: a fixed
    permutation cut at round(f * n), so smaller fractions sit inside larger ones and a
    different seed picks different images."""
    fig, ax = plt.subplots(figsize=(8.5, 0.55 + 0.32 * len(subs)))
    labels = []
    for row, sub in enumerate(subs):
        chosen = [i for i in sub.indices if i < show]
        ax.scatter(chosen, [row] * len(chosen), marker="|", s=90, lw=1.6,
                   color=plotting.color("sft+l2") if sub.seed == subs[0].seed else "#7f7f7f")
        labels.append(f"seed {sub.seed}, {100 * sub.fraction:g}% "
                      f"({len(sub.indices)} images, {sub.hash[:8]})")
    ax.set_yticks(range(len(subs)), labels, fontsize=8)
    ax.set_ylim(len(subs) - 0.5, -0.5)
    ax.set_xlim(-1, show)
    ax.set_xlabel(f"training image index (first {show} of {subs[0].n_total})")
    ax.set_title("Seeded data subsets: nested across fractions, different across seeds")
    ax.grid(axis="y", visible=False)
    fig.tight_layout()
    return fig


def fig4_data_efficiency(summary: pd.DataFrame, arch: str, prune_only: pd.DataFrame | None = None,
                         chance: float | None = None):
    """Paper Fig. 4 analogue: AVG-% against the share of recovery data, one panel per
    pruning setting, one line per recipe (mean and 95% CI over seeds), with the prune-only
    level and, per recipe, 95% of its largest-data result (the paper's "5% is enough"
    criterion, finding 5). The paper prints no per-fraction numbers: ours only.

    `summary`: `tables.summarize(pct, ["method", "ratio", "recipe", "data_fraction"])`;
    `prune_only`: `tables.summarize(...)` rows with recipe "none".
    """
    settings = summary[["method", "ratio"]].drop_duplicates().sort_values(["method", "ratio"])
    n = len(settings)
    fig, axes = plt.subplots(1, n, figsize=(max(7.0, 4.8 * n + 0.5), 3.9), sharey=True,
                             squeeze=False)
    fractions = sorted(summary.data_fraction.unique())
    top = max(105.0, float(summary["mean"].max()) + 8,
              float(chance) + 5 if chance is not None and np.isfinite(chance) else 0.0)
    for ax, (method, ratio) in zip(axes[0], settings.itertuples(index=False), strict=True):
        s = summary[(summary.method == method) & (summary.ratio == ratio)]
        for recipe in s.recipe.unique():
            r = s[s.recipe == recipe].sort_values("data_fraction")
            err = np.nan_to_num(r.ci95.to_numpy(float))
            c = plotting.color(recipe)
            ax.errorbar(r.data_fraction, r["mean"], yerr=err if err.any() else None, color=c,
                        marker="o", lw=2, ms=5, capsize=3, label=f"{recipe}")
            full = float(r["mean"].iloc[-1])
            ax.axhline(0.95 * full, color=c, ls="--", lw=0.9, alpha=0.8)
        if prune_only is not None and not prune_only.empty:
            p = prune_only[(prune_only.method == method) & (prune_only.ratio == ratio)]
            if not p.empty:
                ax.axhline(float(p["mean"].iloc[0]), color=plotting.color("prune only"),
                           lw=2, label="prune only")
        if chance is not None and np.isfinite(chance):
            ax.axhline(chance, color=plotting.color("chance"), ls=":", lw=1)
        ax.axhline(100, color="#555555", lw=0.8)
        achieved = float(s.ratio_achieved.mean()) if "ratio_achieved" in s else ratio
        ax.set_title(f"{method}wise, {100 * achieved:.3g}% removed")
        ax.set_xscale("log")
        ax.set_xticks(fractions, [f"{100 * f:g}%" for f in fractions])
        ax.minorticks_off()
        ax.set_xlabel("share of the recovery data")
        ax.set_ylim(0, top)
    axes[0][0].set_ylabel("AVG-% (unpruned = 100)")
    handles, labels = axes[0][0].get_legend_handles_labels()
    handles += [Line2D([], [], color="black", ls="--", lw=0.9,
                       label="95% of the recipe's largest-data result"),
                Patch(color="none", label=f"ours ({arch}); paper: no per-fraction table")]
    if chance is not None and np.isfinite(chance):
        handles.append(Line2D([], [], color=plotting.color("chance"), ls=":",
                              label="chance (random guesser)"))
    fig.legend(handles=handles, loc="lower center", ncol=3, fontsize=8,
               bbox_to_anchor=(0.5, -0.02))
    fig.tight_layout(rect=(0, 0.14, 1, 1))
    return fig
