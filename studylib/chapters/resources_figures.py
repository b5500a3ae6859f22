"""Chapter 08's figures, drawn from its rows (`resources.latency_pairs`, `resources.relative_frame`)."""

from __future__ import annotations

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd

from studylib.analysis import paper
from studylib.chapters import plotting
from studylib.chapters.resources import OVERHEAD_SHARE
from studylib.evaluation import measure


def fig_time_vs_flops(pairs: pd.DataFrame):
    """Time ratio (min) against FLOPs ratio per pair and teacher; diagonal: time follows FLOPs."""
    archs, batches = list(dict.fromkeys(pairs.arch)), sorted(set(pairs.batch))
    fig, axes = plt.subplots(1, len(archs), figsize=(4.6 * len(archs), 4.2), squeeze=False)
    shades = plt.get_cmap("viridis")(np.linspace(0.1, 0.85, len(batches)))
    x = np.linspace(0, 1, 11)
    lo = float(min(pairs.flops_ratio.min(), pairs.ratio_min.min(), 0.9)) - 0.05
    for ax, arch in zip(axes[0], archs, strict=True):
        ax.plot(x, x, color="black", lw=0.8, label="time = FLOPs ratio")
        ax.plot(x, 1 - OVERHEAD_SHARE * (1 - x), color="black", lw=0.8, ls="--",
                label=f"{OVERHEAD_SHARE:.0%} of the FLOPs cut")
        for shade, batch in zip(shades, batches, strict=True):
            for method, marker in (("width", "o"), ("layer", "s")):
                g = pairs[(pairs.arch == arch) & (pairs.batch == batch) & (pairs.method == method)]
                ax.scatter(g.flops_ratio, g.ratio_min, color=shade, marker=marker, s=36,
                           label=f"batch {batch}, {method}")
        ax.set(xlim=(lo, 1.02), ylim=(lo, max(1.1, float(pairs.ratio_min.max()) + 0.05)),
               xlabel="FLOPs ratio (pruned / teacher)", ylabel="prefill time ratio (min)",
               title=f"this study ({arch})")
    axes[0][-1].legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.01, 1))
    fig.tight_layout()
    return fig


def fig_resources(rel: pd.DataFrame):
    """FLOPs and memory (% of the unpruned model) against the share of decoder parameters
    removed, one column per paper model: its cells, our count of its architecture (meta
    device, solid) and the toy teacher that stands in for it (pruned for real, dotted)."""
    papers = [m for m in dict.fromkeys(rel.paper_model) if m is not None]
    fig, axes = plt.subplots(2, len(papers), figsize=(4.4 * len(papers), 6.4), squeeze=False,
                             sharex=True)
    for col, model in enumerate(papers):
        short, g = paper.SHORT_PAPER_NAME.get(model, model), rel[rel.paper_model == model]
        for row, label in enumerate(("FLOPs", "memory")):
            ax, metric = axes[row][col], f"{label.lower()}_pct"
            for method in [m for m in ("width", "layer") if m in set(g.method)]:
                for arch, a in g.groupby("arch", sort=False):
                    pts = a[a.method.isin(["none", method])]
                    ax.plot(pts.ratio_achieved, pts[metric], marker=".", color=plotting.color(method),
                            ls="-" if arch in measure.ARCHS else ":",
                            label=f"{method}, this study ({arch})")
                cells = g[g.method.isin(["none", method])].drop_duplicates("ratio")
                ax.plot(cells.ratio, cells[f"paper_{metric}"], ls="none", marker="x", ms=7,
                        color=plotting.color(method), label=f"{method}, paper ({short})")
            ax.set(ylabel=f"{label} (% of unpruned)", title=f"{label}: {short}")
        axes[1][col].set_xlabel("LLM decoder parameters removed")
        axes[0][col].legend(fontsize=6.5, loc="lower left")
    fig.tight_layout()
    return fig
