"""Chapter 02, recovery by finetuning: what each recipe trains, and the takeaways."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd

from studylib.analysis import tables
from studylib.chapters import show


def trainable_table(df: pd.DataFrame) -> pd.DataFrame:
    """What each recipe trains, per pruned model: trainable parameters by part (seed 0)."""
    rows = df[(df.benchmark == "AVG") & (df.metric == "avg_pct") & (df.recipe != "none")]
    if rows.empty:
        return pd.DataFrame()
    rows = rows[rows.seed == rows.seed.min()]
    out = rows[["method", "ratio", "ratio_achieved", "recipe", "train", "n_params",
                "n_params_vision", "n_params_projector", "n_params_llm",
                "trainable_params"]].drop_duplicates(["method", "ratio", "recipe"])
    ints = ["n_params", "n_params_vision", "n_params_projector", "n_params_llm",
            "trainable_params"]
    out = out.astype({c: "int64" for c in ints})
    out = out.assign(lora_params=out.trainable_params - out.n_params_projector,
                     trainable_share=(out.trainable_params / out.n_params).round(4))
    return out.sort_values(["method", "ratio", "recipe"]).reset_index(drop=True)


def _fmt(mean: float, ci: float) -> str:
    return f"{mean:.1f}%" + (f" ± {ci:.1f}" if np.isfinite(ci) else "")


def sft_takeaways(summary: pd.DataFrame, items: int, chance: float = math.nan) -> list[str]:
    """Chapter 02's findings from `summarize(pct, ["method", "ratio", "recipe"])`:
    per setting the three curves, how much of the full recovery the projector alone gets,
    the paper's finding 3 (projector-only >= 95% at the smallest ratio) and finding 2
    (which method is ahead once the LLM is finetuned)."""
    lines = []
    s = summary.set_index(["method", "ratio", "recipe"])
    for (method, ratio), g in summary.groupby(["method", "ratio"], sort=True):
        by = g.set_index("recipe")
        parts = [f"{r} {_fmt(by.loc[r, 'mean'], by.loc[r, 'ci95'])}" for r in
                 ("none", "sft-mm", "sft", *[x for x in by.index
                                             if x not in ("none", "sft-mm", "sft")])
                 if r in by.index]
        line = (f"{method} {ratio:g} ({100 * g.ratio_achieved.iloc[0]:.3g}% removed): "
                + " -> ".join(parts).replace("none ", "prune only "))
        if {"none", "sft-mm", "sft"} <= set(by.index):
            gain_mm = by.loc["sft-mm", "mean"] - by.loc["none", "mean"]
            gain_full = by.loc["sft", "mean"] - by.loc["none", "mean"]
            line += (f"; over prune only: projector {gain_mm:+.1f} points, "
                     f"projector + LoRA {gain_full:+.1f}")
        lines.append(line)
    for method in sorted(set(summary.method)):
        smallest = summary[summary.method == method].ratio.min()
        if (method, smallest, "sft-mm") in s.index:
            v = s.loc[(method, smallest, "sft-mm"), "mean"]
            verdict = "as in the paper" if v >= 95 else "below the paper's >= 95%"
            lines.append(f"finding 3, {method} at {smallest:g}: projector-only finetuning keeps "
                         f"{v:.1f}% ({verdict})")
    if {"layer", "width"} <= set(summary.method) and "sft" in set(summary.recipe):
        for ratio in sorted(set(summary.ratio)):
            try:
                lay, wid = (s.loc[(m, ratio, "sft"), "mean"] for m in ("layer", "width"))
            except KeyError:
                continue
            lines.append(f"finding 2, {ratio:g} with projector + LoRA: "
                         f"{'layer' if lay > wid else 'width'} ahead ({lay:.1f}% vs {wid:.1f}%; "
                         "paper: layer below ~30-40%, width above)")
    if np.isfinite(chance) and chance >= 95:
        lines.append(f"a random guesser reaches {chance:.0f}% of the teacher's AVG: the teacher is "
                     "near chance on some benchmarks, so AVG-% differences partly reflect answer "
                     "biases, not skill (chapter 00 gives the per-benchmark scores)")
    elif np.isfinite(chance):
        low = summary[summary["mean"] <= chance + 5]
        lines.append(f"at or near chance ({chance:.0f}% + 5): " + (", ".join(
            f"{m} {r:g} {c}" for m, r, c in zip(low.method, low.ratio, low.recipe, strict=True))
            or "none"))
    lines.append(f"{items} items per benchmark" + (
        "; with this few items differences of a few points are noise" if items < 100 else ""))
    return lines


RECIPE_WORDS = {"none": "prune only", "sft-mm": "+ projector", "sft": "+ projector + LLM"}


def fig2_table(summary: pd.DataFrame, paper: pd.DataFrame) -> pd.DataFrame:
    """Fig. 2 as a table for reading: per method and requested ratio, the share removed,
    each recovery's AVG-% (mean ± 95% CI half-width over seeds) and the paper's AVG-% where
    its tables print the point."""
    w = tables.wide(summary, "recipe", paper=paper)
    out = pd.DataFrame(index=w.index)
    out["removed (%)"] = 100 * w.removed
    for recipe, words in RECIPE_WORDS.items():
        if recipe in w:
            half = w.get(f"± {recipe}", pd.Series(index=w.index, dtype=float))
            out[f"{words}, ours"] = [show.mean_ci(m, h) for m, h in zip(w[recipe], half, strict=True)]
    for col in [c for c in w.columns if c.startswith("paper ")]:
        out[f"{RECIPE_WORDS.get(col[6:], col[6:])}, paper"] = w[col]
    return out.reset_index().rename(columns={"ratio": "ratio requested"})


def trainable_display(trainable: pd.DataFrame) -> pd.DataFrame:
    """What each recipe trains, in words and counts (first seed)."""
    t = trainable.assign(**{"trainable (%)": 100 * trainable.trainable_share})
    return t[["method", "ratio", "recipe", "train", "n_params", "trainable_params",
              "trainable (%)"]].rename(columns={
                  "ratio": "ratio requested", "n_params": "parameters after pruning",
                  "trainable_params": "trained parameters"})
