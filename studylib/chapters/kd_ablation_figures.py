"""Figures of chapter 03 (distillation ablation): teaching pictures and paper Figs. 3/5-7 and
Table 5 analogues. Evaluations come from `evidence.evaluations` (results-table rows only);
the paper's numbers from its shared tables, labelled as such. Colours are the book's
(`plotting.color`)."""

from __future__ import annotations

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd

from studylib.analysis import evidence
from studylib.analysis.paper import SHORT_PAPER_NAME, TABLE2_MODEL, TABLE2_RECIPES
from studylib.chapters.kd_ablation import HIDDEN_ABLATION, WITHOUT_SFT, nearest_paper_row
from studylib.chapters.plotting import color

PAPER_MARK = dict(marker="D", s=42, color=color("paper"), zorder=6)


def _settings(ev: pd.DataFrame) -> list[tuple[str, float]]:
    e = ev[ev.method != "none"]
    return sorted({(m, float(r)) for m, r in zip(e.method, e.ratio, strict=True)})


def _axes(n: int, width: float = 4.3, height: float = 3.6):
    fig, axes = plt.subplots(1, max(n, 1), figsize=(width * max(n, 1), height), squeeze=False)
    return fig, list(axes[0])


def _empty(ax, text: str) -> None:
    ax.text(0.5, 0.5, text, ha="center", va="center", transform=ax.transAxes, fontsize=9)
    ax.set_xticks([])
    ax.set_yticks([])


# --- teaching pictures ----------------------------------------------------------------------


def fig_kl_directions(frame: pd.DataFrame):
    """Teacher p with two modes; the best single-Gaussian q under forward and reverse KL."""
    fig, ax = plt.subplots(figsize=(7.5, 3.2))
    styles = {"teacher": dict(color=color("paper"), lw=0, alpha=0.35),
              "forward": dict(color=color("kl"), lw=2.2),
              "reverse": dict(color=color("rkl"), lw=2.2, ls="--")}
    fits = frame.attrs.get("fits", {})
    for curve, g in frame.groupby("curve", sort=False):
        if curve.startswith("teacher"):
            ax.fill_between(g.x, g.density, label=curve, **styles["teacher"])
            continue
        kind = "forward" if "forward" in curve else "reverse"
        fit = fits.get(curve.split(", ", 1)[1], {})
        label = f"{curve}: mean {fit.get('mean', np.nan):+.2f}, sd {fit.get('sd', np.nan):.2f}"
        ax.plot(g.x, g.density, label=label, **styles[kind])
    ax.set_xlabel("x (think: the vocabulary, laid out on a line)")
    ax.set_ylabel("density")
    ax.set_title("Forward KL covers both modes, reverse KL picks one")
    ax.legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.0, 1.0))
    fig.tight_layout()
    return fig


def fig_temperature(frame: pd.DataFrame):
    """The teacher's first-answer-token distribution at each temperature."""
    import seaborn as sns

    fig, ax = plt.subplots(figsize=(7.5, 3.2))
    data = frame.assign(tau=[f"tau = {t:g}" for t in frame.tau])
    sns.barplot(data=data, x="token", y="probability", hue="tau", ax=ax,
                palette="crest")
    ent = frame.attrs.get("entropy", {})
    ax.set_title(f"The teacher's first answer token (reference: "
                 f"“{frame.attrs.get('answer', '')}”), softened by tau", fontsize=10)
    ax.set_xlabel("token (the teacher's top tokens at tau = 1, then all others)")
    handles, labels = ax.get_legend_handles_labels()
    labels = [f"{lab} (entropy {ent[t]:.2f} nats)" if (t := float(lab.split("= ")[1])) in ent
              else lab for lab in labels]
    ax.legend(handles, labels, title=None, fontsize=8)
    ax.tick_params(axis="x", rotation=30)
    fig.tight_layout()
    return fig


def fig_norm_gain(gain: np.ndarray, rms: np.ndarray, arch: str):
    """Why L2 is taken before the final norm: (left) the norm's learned gain^2 per channel,
    the weight each channel would get in a post-norm L2; (right) the per-token RMS of the
    last layer's output, the scale the norm divides away."""
    fig, (ax, bx) = plt.subplots(1, 2, figsize=(9.0, 2.9))
    if gain.size == 0:
        _empty(ax, "no final-norm gain found")
    else:
        g2 = np.sort(gain ** 2)[::-1]
        ax.fill_between(np.arange(len(g2)), g2, step="mid", color=color("sft+l2"), alpha=0.8)
        ax.axhline(1.0, color="black", lw=1, ls=":", label="1 = every channel alike")
        ax.set_xlabel("hidden channel (sorted)")
        ax.set_ylabel("gain$^2$")
        ax.set_title(f"final-norm gain$^2$: max/min {g2[0] / max(g2[-1], 1e-12):.1f}x",
                     fontsize=10)
        ax.legend(fontsize=8, loc="lower left")
    if rms.size:
        bx.hist(rms, bins=30, color=color("l2"))
        bx.set_xlabel("RMS of the last layer's output at an answer token")
        bx.set_ylabel("tokens")
        bx.set_title(f"what the norm divides away: RMS {np.percentile(rms, 5):.2g}"
                     f"-{np.percentile(rms, 95):.2g} (5-95%)", fontsize=10)
    else:
        _empty(bx, "no hidden states")
    fig.suptitle(f"{arch}: two things a post-norm L2 would change", fontsize=11)
    fig.tight_layout()
    return fig


# --- paper figure analogues -----------------------------------------------------------------


def _paper_label(paper_name: str, ratio: float) -> str:
    return f"paper ({paper_name}, layer, Table 2, ratio {ratio:g})"


def fig_gain_over_ft(ev: pd.DataFrame, table2: pd.DataFrame | None = None, arch: str = "",
                     recipe_order: list[str] | None = None):
    """Paper Figs. 3/7: AVG-% gain of each recipe over plain SFT (FT), 95% CIs; the paper's
    Table 2 gains (Bunny, layerwise) beside ours where it has the recipe and ratio."""
    settings = _settings(ev)
    fig, axes = _axes(len(settings), height=0.35 * max(len(recipe_order or []), 6) + 1.2)
    if not settings:
        _empty(axes[0], "no recovered runs")
        return fig
    for ax, (method, ratio) in zip(axes, settings, strict=False):
        e = evidence.select(ev, method=method, ratio=ratio)
        base = e[e.recipe == "sft"]
        names = [r for r in (recipe_order or sorted(set(e.recipe))) if r in set(e.recipe)
                 and r not in ("sft", "none")]
        if base.empty or not names:
            _empty(ax, "needs the sft baseline and another recipe")
            continue
        paper = nearest_paper_row(table2, ratio) if table2 is not None and method == "layer" \
            else None
        labelled = False
        for y, name in enumerate(names):
            res = evidence.compare(e[e.recipe == name], base)
            ax.errorbar(res["d"], y, xerr=[[res["d"] - res["lo"]], [res["hi"] - res["d"]]],
                        fmt="o", color=color(name), capsize=3,
                        label=f"this study ({arch})" if y == 0 else None)
            col = {v: k for k, v in TABLE2_RECIPES.items()}.get(name)
            if paper is not None and col:
                ax.scatter(paper[col] - paper["FT"], y + 0.25, **PAPER_MARK,
                           label=None if labelled else _paper_label(SHORT_PAPER_NAME[TABLE2_MODEL], paper.ratio))
                labelled = True
        ax.axvline(0, color="black", lw=1)
        ax.set_yticks(range(len(names)), names)
        ax.invert_yaxis()
        ax.set_xlabel("AVG-% minus SFT's AVG-% (points)")
        ax.set_title(f"{method}wise, ratio {ratio:g}")
        ax.legend(fontsize=7, loc="upper center", bbox_to_anchor=(0.5, -0.28), ncol=1)
    fig.suptitle("Gain over SFT (FT) of distillation recipes (paper Figs. 3 / 7)", fontsize=11)
    fig.tight_layout()
    return fig


def fig_sft_term(ev: pd.DataFrame, table2: pd.DataFrame | None = None, arch: str = ""):
    """Paper Figs. 5/6: each distillation term without and with the SFT loss (AVG-%, 95%
    CIs), with SFT alone and pruned-only as reference lines; paper Table 2 beside."""
    settings = _settings(ev)
    fig, axes = _axes(len(settings))
    if not settings:
        _empty(axes[0], "no recovered runs")
        return fig
    for ax, (method, ratio) in zip(axes, settings, strict=False):
        e = evidence.select(ev, method=method, ratio=ratio)
        s = evidence.summary(e, by=["recipe"]).set_index("recipe")
        terms = [t for t in WITHOUT_SFT if t in s.index or WITHOUT_SFT[t] in s.index]
        if not terms:
            _empty(ax, "no KL / RKL / L2 runs")
            continue
        paper = nearest_paper_row(table2, ratio) if table2 is not None and method == "layer" \
            else None
        x = np.arange(len(terms))
        labelled = False
        for offset, with_sft in ((-0.2, False), (0.2, True)):
            for i, t in enumerate(terms):
                name = WITHOUT_SFT[t] if with_sft else t
                if name not in s.index:
                    continue
                r = s.loc[name]
                ax.bar(x[i] + offset, r.AVG_pct, 0.38, color=color(name),
                       hatch=None if with_sft else "//", edgecolor="white",
                       yerr=[[r.AVG_pct - r.ci_low], [r.ci_high - r.AVG_pct]], capsize=3,
                       label=("with the SFT loss" if with_sft else "distillation only")
                       if i == 0 else None)
                col = {v: c for c, v in TABLE2_RECIPES.items()}.get(name)
                if paper is not None and col:
                    ax.scatter(x[i] + offset, paper[col], **PAPER_MARK,
                               label=None if labelled else _paper_label(SHORT_PAPER_NAME[TABLE2_MODEL], paper.ratio))
                    labelled = True
        for ref, style in (("sft", dict(color=color("sft"), ls="--")),
                           ("none", dict(color=color("prune only"), ls=":"))):
            if ref in s.index:
                ax.axhline(s.loc[ref].AVG_pct, lw=1.5,
                           label="SFT alone" if ref == "sft" else "pruned only", **style)
        ax.set_xticks(x, [t.upper() for t in terms])
        ax.set_ylabel(f"AVG-% ({arch})")
        ax.set_title(f"{method}wise, ratio {ratio:g}")
        handles, labels = ax.get_legend_handles_labels()
        uniq = dict(zip(labels, handles, strict=False))
        ax.legend(uniq.values(), uniq.keys(), fontsize=7, loc="upper center",
                  bbox_to_anchor=(0.5, -0.1), ncol=2)
    fig.suptitle("Distillation with and without the SFT loss (paper Figs. 5 / 6)", fontsize=11)
    fig.tight_layout()
    return fig


def fig_hidden_layers(ev: pd.DataFrame, table5: pd.DataFrame | None = None, arch: str = ""):
    """Paper Table 5: matching the last 1, 2 or 3 hidden layers, as AVG-% points relative
    to matching the last one (ours with 95% CIs; the paper's at its nearest ratio)."""
    settings = _settings(ev)
    fig, axes = _axes(len(settings))
    if not settings:
        _empty(axes[0], "no recovered runs")
        return fig
    for ax, (method, ratio) in zip(axes, settings, strict=False):
        e = evidence.select(ev, method=method, ratio=ratio)
        base = e[e.recipe == "sft+l2"]
        names = [n for n in HIDDEN_ABLATION if n in set(e.recipe)]
        if base.empty or len(names) < 2:
            _empty(ax, "needs sft+l2 and sft+l2@last2/3")
            continue
        paper = nearest_paper_row(table5, ratio) if table5 is not None else None
        for i, name in enumerate(names):
            if name == "sft+l2":  # the reference: 0 by definition
                continue
            res = evidence.compare(e[e.recipe == name], base)
            ax.bar(i - 0.2, res["d"], 0.38, color=color(name),
                   yerr=[[res["d"] - res["lo"]], [res["hi"] - res["d"]]], capsize=3,
                   label=f"this study ({arch}), 95% CI" if i == 1 else None)
            if paper is not None:
                col = HIDDEN_ABLATION[name]
                ax.bar(i + 0.2, paper[col] - paper["last1"], 0.38, color=color("paper"),
                       label=f"paper (Table 5, ratio {paper.ratio:g})" if i == 1 else None)
        ax.axhline(0, color="black", lw=1)
        ax.set_xticks(range(len(names)), [f"{HIDDEN_ABLATION[n]}\n(reference)" if n == "sft+l2"
                                          else HIDDEN_ABLATION[n] for n in names])
        ax.set_ylabel("AVG-% minus last-1's (points)")
        ax.set_title(f"{method}wise, ratio {ratio:g}")
        ax.legend(fontsize=7, loc="upper center", bbox_to_anchor=(0.5, -0.2), ncol=2)
    fig.suptitle("Which hidden layers to match (paper Table 5)", fontsize=11)
    fig.tight_layout()
    return fig


def fig_step_times(rec: pd.DataFrame):
    """Median seconds per optimizer step of each recipe, by how it sees the teacher."""
    import seaborn as sns

    fig, ax = plt.subplots(figsize=(7.0, 0.32 * max(rec.recipe.nunique(), 4) + 1.2))
    if rec.empty or "step_time_s" not in rec:
        _empty(ax, "no recovery timings")
        return fig
    order = (rec.groupby("recipe").step_time_s.median().sort_values().index.tolist())
    palette = {"no teacher": color("sft"), "teacher cached": color("sft+l2"),
               "teacher online": color("rkl")}
    sns.barplot(data=rec, y="recipe", x="step_time_s", hue="teacher", order=order,
                dodge=False, palette=palette, errorbar=None, ax=ax)
    ax.set_xlabel("median s / step (1 thread)")
    ax.set_ylabel("")
    ax.set_title("Recovery step time, by how the recipe sees its teacher")
    ax.legend(fontsize=8, title=None)
    fig.tight_layout()
    return fig


def paper_name(model: str | None) -> str:
    return SHORT_PAPER_NAME.get(model or "", model or "")
