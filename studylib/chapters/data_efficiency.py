"""Chapter 04, data efficiency: the seeded data subsets, and the takeaways."""

from __future__ import annotations

import math
from collections.abc import Sequence

import pandas as pd

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


def data_takeaways(summary: pd.DataFrame, items: int) -> list[str]:
    """Chapter 04's findings from `summarize(pct, [..., "data_fraction"])`: per setting and
    recipe, the smallest fraction's result as a share of the largest's (the paper's
    finding 5: >= 95% below ~50% compression) and how the curve grows."""
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
        lines.append(line)
    lines.append(f"{items} items per benchmark" + (
        "; with this few items differences of a few points are noise" if items < 100 else ""))
    return lines


def shown_subsets(fractions: Sequence[float], seeds: Sequence[int]) -> list[subsets.Subset]:
    """The run's subsets, and a second seed's when the run has one seed: the figure shows
    that each seed draws its own nested subsets."""
    shown = list(seeds) if len(seeds) > 1 else [seeds[0], seeds[0] + 1]
    return grid_subsets(fractions, shown)


def cost_table(recovered: pd.DataFrame, fractions: Sequence[float],
               seeds: Sequence[int]) -> pd.DataFrame:
    """What each recovery cost (subset size, steps, wall time) and bought (AVG-%), first seed;
    prints whether every recorded subset hash is the seeded subset's."""
    cost = (recovered[recovered.seed == recovered.seed.min()]
            [["method", "ratio", "recipe", "data_fraction", "subset_n", "steps",
              "recovery_wall_s", "subset_hash", "avg_pct"]]
            .sort_values(["method", "ratio", "recipe", "data_fraction"]))
    expected = {(s.seed, round(s.fraction, 6)): s.hash for s in grid_subsets(fractions, seeds)}
    same = all(expected[(s, round(f, 6))] == h for s, f, h in
               zip(recovered.seed, recovered.data_fraction, recovered.subset_hash, strict=True))
    print(f"recorded subset hashes match the seeded subsets: {same}")
    return cost.astype({"subset_n": int, "steps": int}).assign(
        subset_hash=cost.subset_hash.str[:12]).round({"recovery_wall_s": 1, "avg_pct": 1})
