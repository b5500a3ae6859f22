"""Chapter 04, data efficiency: the seeded data subsets, the AVG-% per data fraction with the
paper's full-data numbers beside ours, and the takeaways.

The paper's Fig. 4 is a plot: no table prints its per-fraction points. What its tables do print
is the 100% end of some curves: Table 3 (best practice, each model: layerwise + FT + L2 up to
30%, widthwise + FT + L2 from 45%) and Table 2 (Bunny, layerwise: FT and L2+FT), both trained on
the full data (`paper_full_data`). Those stand beside ours wherever the setting matches.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
import pandas as pd
from matplotlib.lines import Line2D

from studylib.analysis import paper
from studylib.chapters import plotting, show
from studylib.chapters import recovery_figures as rp
from studylib.compress import subsets


def grid_subsets(fractions: Sequence[float], seeds: Sequence[int]) -> list[subsets.Subset]:
    """The seeded recovery-data subsets a grid trains on (what `recover` draws), by seed
    and increasing fraction."""
    records = subsets.training_records()
    return [subsets.select_subset(records, f, seed)
            for seed in seeds for f in sorted(fractions)]


def subset_table(subs: Sequence[subsets.Subset], batch_size: int = 16) -> pd.DataFrame:
    """Per subset: size in images and question/answer pairs, steps per epoch, content hash,
    and whether it contains the next-smaller subset of the same seed."""
    records = subsets.training_records()
    rows, previous = [], {}
    for sub in subs:
        pairs = sum(len(records[i]["conversations"]) // 2 for i in sub.indices)
        idx = set(sub.indices)
        before = previous.get(sub.seed)
        rows.append({"seed": sub.seed, "fraction": sub.fraction, "images": len(idx),
                     "qa_pairs": pairs, "steps_per_epoch": math.ceil(len(idx) / batch_size),
                     "hash": sub.hash[:12],
                     "contains_smaller": None if before is None else before <= idx})
        previous[sub.seed] = idx
    return pd.DataFrame(rows)


def shown_subset_table(subs: Sequence[subsets.Subset], batch_size: int = 16) -> pd.DataFrame:
    """`subset_table` for reading: the fraction in percent, columns in words."""
    t = subset_table(subs, batch_size)
    return t.assign(fraction=100 * t.fraction,
                    contains_smaller=t.contains_smaller.map({True: "yes", False: "NO"})).rename(
        columns={"fraction": "data share (%)", "qa_pairs": "Q/A pairs",
                 "steps_per_epoch": "steps (1 epoch)", "hash": "content hash (12 hex)",
                 "contains_smaller": "contains the next smaller"})


def shown_subsets(fractions: Sequence[float], seeds: Sequence[int]) -> list[subsets.Subset]:
    """The run's subsets, and a second seed's when the run has one seed: the figure shows
    that each seed draws its own nested subsets."""
    shown = list(seeds) if len(seeds) > 1 else [seeds[0], seeds[0] + 1]
    return grid_subsets(fractions, shown)


# --- the paper's full-data points -----------------------------------------------------------


def paper_full_data(paper_model: str | None) -> pd.DataFrame:
    """The paper's AVG-% after recovery on 100% of its data, by our (method, ratio, recipe):
    Table 3's best-practice rows of `paper_model`, and Table 2's (Bunny, layerwise, FT and
    L2+FT) when `paper_model` is Bunny; where both print a point (they agree), Table 3's."""
    cols = ["method", "ratio", "recipe", "avg_pct", "source"]
    t3 = paper.paper_table("table3_best_practice")
    t3 = t3[(t3.model == paper_model) & (t3.recipe != "none")]
    rows = [{"method": r.recipe.split("+")[0], "ratio": float(r.ratio), "recipe": "sft+l2",
             "avg_pct": float(r.AVG_pct), "source": "Table 3"} for r in t3.itertuples()]
    if paper_model == paper.TABLE2_MODEL:
        t2 = paper.paper_table("table2_bunny_layer_kd")
        rows += [{"method": "layer", "ratio": float(r.ratio), "recipe": recipe,
                  "avg_pct": float(getattr(r, col)), "source": "Table 2"}
                 for r in t2.rename(columns={"L2+FT": "L2_FT"}).itertuples()
                 for col, recipe in (("FT", "sft"), ("L2_FT", "sft+l2"))]
    out = pd.DataFrame(rows, columns=cols)
    return out.drop_duplicates(["method", "ratio", "recipe"]).reset_index(drop=True)


def _paper_point(points: pd.DataFrame, method: str, ratio: float, recipe: str):
    hit = points[(points.method == method) & np.isclose(points.ratio, ratio)
                 & (points.recipe == recipe)]
    return None if hit.empty else hit.iloc[0]


def fraction_table(summary: pd.DataFrame, prune_only: pd.DataFrame,
                   points: pd.DataFrame) -> pd.DataFrame:
    """One row per pruning setting and recipe: AVG-% before recovery, after recovery on each
    data fraction ("mean ± 95% CI half-width" with several seeds), and the paper's AVG-% on
    100% of its data where it prints the setting (`paper_full_data`)."""
    rows = []
    for (method, ratio, recipe), g in summary.groupby(["method", "ratio", "recipe"], sort=True):
        only = prune_only[(prune_only.method == method) & np.isclose(prune_only.ratio, ratio)]
        row = {"pruning, recipe": f"{method} {100 * ratio:g}%, {recipe}",
               "pruned only": float(only["mean"].iloc[0]) if len(only) else math.nan}
        for r in g.sort_values("data_fraction").itertuples():
            row[f"{100 * r.data_fraction:g}% data"] = show.mean_ci(r.mean, r.ci95)
        p = _paper_point(points, method, ratio, recipe)
        row["paper, 100% data"] = None if p is None else f"{p.avg_pct:.1f} ({p.source})"
        rows.append(row)
    return pd.DataFrame(rows)


def fig4_with_paper(summary: pd.DataFrame, arch: str, prune_only: pd.DataFrame | None,
                    chance: float | None, points: pd.DataFrame, paper_model: str | None):
    """`recovery_figures.fig4_data_efficiency` with the paper's full-data AVG-% drawn as a
    diamond at 100% on each panel and recipe it prints (`paper_full_data`)."""
    fig = rp.fig4_data_efficiency(summary, arch, prune_only, chance)
    settings = summary[["method", "ratio"]].drop_duplicates().sort_values(["method", "ratio"])
    drawn = set()
    for ax, (method, ratio) in zip(fig.axes, settings.itertuples(index=False), strict=False):
        hits = [(recipe, p) for recipe in summary[(summary.method == method)
                                                  & (summary.ratio == ratio)].recipe.unique()
                if (p := _paper_point(points, method, ratio, recipe)) is not None]
        for recipe, p in hits:
            ax.scatter([1.0], [p.avg_pct], marker="D", s=55, color=plotting.color("paper"),
                       edgecolor=plotting.color(recipe), linewidth=1.8, zorder=6)
            drawn.add(p.source)
        if hits and 1.0 not in set(summary.data_fraction):
            ticks = sorted({*summary.data_fraction, 1.0})
            ax.set_xticks(ticks, [f"{100 * f:g}%" for f in ticks])
    if drawn and fig.legends:
        old = fig.legends[0]
        short = paper.SHORT_PAPER_NAME.get(paper_model or "", paper_model)
        labels = [f"ours ({arch})" if "paper: no per-fraction" in t.get_text() else t.get_text()
                  for t in old.get_texts()]
        handles = [*old.legend_handles, Line2D([], [], marker="D", ls="", color=plotting.color(
            "paper"), label="")]
        labels.append(f"paper ({short}), 100% data ({' / '.join(sorted(drawn))}); "
                      "edge: the recipe")
        old.remove()
        fig.legend(handles, labels, loc="lower center", ncol=3, fontsize=8,
                   bbox_to_anchor=(0.5, -0.02))
    return fig


# --- reading the run ------------------------------------------------------------------------


def data_takeaways(summary: pd.DataFrame, items: int,
                   points: pd.DataFrame | None = None) -> list[str]:
    """Chapter 04's findings from `summarize(pct, [..., "data_fraction"])`: per setting and
    recipe, the smallest fraction's result as a share of the largest's (the paper's
    finding 5: >= 95% below ~50% compression), how the curve grows, and our 100% result
    against the paper's where it prints one (`points`, `paper_full_data`)."""
    lines = []
    for (method, ratio, recipe), g in summary.groupby(["method", "ratio", "recipe"], sort=True):
        g = g.sort_values("data_fraction")
        lo, hi = g.iloc[0], g.iloc[-1]
        share = 100 * lo["mean"] / hi["mean"] if hi["mean"] else math.nan
        curve = ", ".join(f"{100 * f:g}%: {m:.1f}" for f, m in zip(g.data_fraction, g["mean"],
                                                                     strict=True))
        line = (f"{method} {ratio:g}, {recipe}: AVG-% {curve}; {100 * lo.data_fraction:g}% "
                f"of the data gives {share:.0f}% of the {100 * hi.data_fraction:g}% result")
        if hi.data_fraction == 1.0 and lo.data_fraction <= 0.05:
            expect = ">= 95%" if ratio < 0.5 else "< 95% (more data needed)"
            ok = (share >= 95) == (ratio < 0.5)
            line += f" (paper, finding 5: {expect} -> {'agrees' if ok else 'disagrees'})"
        else:
            line += " (finding 5 compares 5% with 100%: not in this grid)"
        p = _paper_point(points, method, ratio, recipe) if points is not None else None
        if p is not None:
            line += f"; the paper's 100% result is {p.avg_pct:.1f}% ({p.source})"
        lines.append(line)
    lines.append(f"{items} items per benchmark" + (
        "; with this few items differences of a few points are noise" if items < 100 else ""))
    return lines


def cost_table(recovered: pd.DataFrame, fractions: Sequence[float],
               seeds: Sequence[int]) -> pd.DataFrame:
    """What each recovery cost (subset size, steps, wall time) and bought (AVG-%), first seed;
    `attrs["hashes_match"]`: whether every recorded subset hash is the seeded subset's."""
    cost = (recovered[recovered.seed == recovered.seed.min()]
            .sort_values(["method", "ratio", "recipe", "data_fraction"]))
    expected = {(s.seed, round(s.fraction, 6)): s.hash for s in grid_subsets(fractions, seeds)}
    same = all(expected[(s, round(f, 6))] == h for s, f, h in
               zip(recovered.seed, recovered.data_fraction, recovered.subset_hash, strict=True))
    out = pd.DataFrame({
        "pruning, recipe": [f"{m} {100 * r:g}%, {rec}" for m, r, rec in
                            zip(cost.method, cost.ratio, cost.recipe, strict=True)],
        "data share (%)": 100 * cost.data_fraction.astype(float),
        "images": cost.subset_n.astype(int),
        "steps": cost.steps.astype(int), "wall time (s)": cost.recovery_wall_s.astype(float),
        "AVG-%": cost.avg_pct.astype(float), "subset hash": cost.subset_hash.str[:12]})
    out.attrs["hashes_match"] = same
    return out
