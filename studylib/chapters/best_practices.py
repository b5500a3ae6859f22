"""Chapter 05 (best practices): the verdict rows it records, the paper's Table 3 beside ours,
and its figures -- the verdict grid, paper Fig. 1's spider plots of per-benchmark retention
and the retained-performance curve, ours beside the paper's."""

from __future__ import annotations

import textwrap

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd

from studylib.analysis import advise, evidence, findings, simulate
from studylib.analysis.paired import PairedNoise
from studylib.analysis.paper import (
    FINDINGS,
    PAPER_MODEL,
    PRESCRIBED_RECIPE,
    SHORT_PAPER_NAME,
    prescribed_method,
)
from studylib.analysis.table3 import best_practice, paper_retention
from studylib.chapters import show
from studylib.chapters.plotting import color
from studylib.study import grid

CLIP = 150.0  # retention is drawn up to this; beyond it the teacher's score is near zero
VERDICT_COLORS = {"replicated": "#2ca02c", "not replicated": "#d62728",
                  "inconclusive": "#c7c7c7", "testbed-limited": "#fdd49e",
                  "not measured": "#ffffff"}
ARCH_COLORS = {"holds": "#a1d99b", "opposite": "#fc9272", "open": "#e5e5e5",
               "testbed-limited": "#fdd49e", "not measured": "#ffffff"}


def fig_verdicts(v: pd.DataFrame):
    """Findings x (verdict, architectures): the first column is the finding's verdict, then
    one cell per architecture coloured by what the finding is there, with claim counts."""
    archs = list(dict.fromkeys(v.arch)) if not v.empty else []
    n = len(findings.ALL_FINDINGS)
    fig, ax = plt.subplots(figsize=(3.6 + 2.3 * (len(archs) + 1), 0.75 * n + 1.2))
    for i in findings.ALL_FINDINGS:
        label = v[v.finding == i].verdict.iloc[0] if archs else "not measured"
        ax.add_patch(plt.Rectangle((0, i - 1), 1, 1, facecolor=VERDICT_COLORS[label],
                                   edgecolor="#999999"))
        ax.text(0.5, i - 0.5, label, ha="center", va="center", fontsize=8, weight="bold")
        for j, arch in enumerate(archs, start=1):
            r = v[(v.finding == i) & (v.arch == arch)].iloc[0]
            ax.add_patch(plt.Rectangle((j, i - 1), 1, 1, facecolor=ARCH_COLORS[r.on_arch],
                                       edgecolor="#999999"))
            text = r.on_arch if not r.claims else (
                f"{r.on_arch}\n{r.supported}+ {r.contradicted}- {r.ties}= {r.untested}?"
                f"\nmedian d {r.median_d:+.1f}; seeds {r.seeds}")
            ax.text(j + 0.5, i - 0.5, text, ha="center", va="center", fontsize=7.5)
    ax.set_xlim(0, len(archs) + 1)
    ax.set_ylim(n, 0)
    ax.set_xticks(np.arange(len(archs) + 1) + 0.5, ["verdict", *archs])
    ax.set_yticks(np.arange(n) + 0.5, [textwrap.fill(f"{i}. {t}", 46)
                                       for i, t in findings.ALL_FINDINGS.items()], fontsize=7.5)
    ax.xaxis.tick_top()
    ax.grid(False)
    if not archs:
        ax.text(0.5, n / 2, "no measurements yet", ha="center", va="center")
    fig.suptitle("The paper's findings, and two beyond it, on the toy models\n(claims after "
                 "Holm: + supported, "
                 "- contradicted, = tie, ? untested)", fontsize=10)
    fig.tight_layout()
    return fig


def _radar(ax, values, labels, **kw):
    angles = np.linspace(0, 2 * np.pi, len(labels), endpoint=False)
    vals = np.append(values, values[0])
    ang = np.append(angles, angles[0])
    ax.plot(ang, vals, **kw)
    ax.fill(ang, vals, alpha=0.08, color=kw.get("color"))
    ax.set_xticks(angles, labels, fontsize=8)


def fig_spider(ev: pd.DataFrame, arch: str, paper_model: str | None,
               table3: pd.DataFrame | None = None, ratios: list[float] | None = None):
    """Paper Fig. 1 (right): per-benchmark retention (% of the unpruned model's score) at
    each ratio, for our best recovered setting, the paper's prescription applied to our
    model, and the paper's own best-practice model (Table 3)."""
    ret = evidence.retention(ev[(ev.arch == arch) & (ev.method != "none")])
    rec = ret[ret.recipe != "none"].dropna(subset=["AVG_pct"])
    ratios = ratios or sorted(set(rec.ratio))
    fig, axes = plt.subplots(1, max(len(ratios), 1), subplot_kw={"projection": "polar"},
                             figsize=(3.6 * max(len(ratios), 1), 3.9), squeeze=False)
    axes = axes[0]
    paper = paper_retention(table3, paper_model) if (
        table3 is not None and paper_model) else pd.DataFrame()
    labels = list(evidence.BENCHMARKS)
    top, clipped = 110.0, False
    for ax, r in zip(axes, ratios, strict=False):
        at = rec[np.isclose(rec.ratio, r)]
        s = evidence.summary(at).sort_values("AVG_pct")
        drawn = []
        if not s.empty:
            best = s.iloc[-1]
            drawn.append((f"ours best: {best.method}+{best.recipe}", best))
            presc = s[(s.method == prescribed_method(r))
                      & (s.recipe == PRESCRIBED_RECIPE)]
            if not presc.empty and presc.index[-1] != s.index[-1]:
                p = presc.iloc[-1]
                drawn.append((f"ours, paper's recipe: {p.method}+{p.recipe}", p))
        for k, (label, row) in enumerate(drawn):
            g = evidence.select(at, method=row.method, recipe=row.recipe)
            vals = g[labels].mean().to_numpy(float)
            if np.nanmax(vals, initial=0) > CLIP:  # a teacher near zero on a benchmark
                clipped = True
                vals = np.minimum(vals, CLIP)
            top = max(top, np.nanmax(vals, initial=0) + 5)
            _radar(ax, vals, labels, color=color("this study") if k == 0 else color("sft+l2"),
                   lw=2, ls="-" if k == 0 else "--", label=label)
        if not paper.empty:
            prow = paper[np.isclose(paper.ratio, r)]
            if not prow.empty:
                short = SHORT_PAPER_NAME.get(paper_model, paper_model)
                _radar(ax, prow.iloc[0][labels].to_numpy(float), labels,
                       color=color("paper"), lw=1.5, label=f"paper ({short}): "
                       f"{prow.iloc[0].recipe}")
        ax.set_title(f"ratio {r:g}", fontsize=10, pad=14)
        ax.legend(fontsize=6.5, loc="upper center", bbox_to_anchor=(0.5, -0.08))
    for ax in axes:
        ax.set_ylim(0, top)
        ax.set_yticks([50, 100], ["50%", "100%"], fontsize=7, color="#555555")
        ax.set_rlabel_position(100)
    if not ratios:
        axes[0].set_title("no recovered runs yet")
    note = f" (clipped at {CLIP:.0f}%)" if clipped else ""
    fig.suptitle(f"{arch}: per-benchmark retention, % of the unpruned model (paper Fig. 1)"
                 + note, fontsize=11)
    fig.tight_layout()
    return fig


def fig_retained(ev: pd.DataFrame, table3: pd.DataFrame | None = None):
    """AVG-% vs ratio per architecture: best pruned-only, best recovered (95% CIs), and the
    paper's best-practice models (Table 3)."""
    head = evidence.summary(ev[ev.method != "none"].dropna(subset=["AVG_pct"]))
    archs = sorted(set(head.arch)) if not head.empty else []
    fig, ax = plt.subplots(figsize=(7.0, 3.6))
    markers = ["o", "s", "^", "v"]
    for k, arch in enumerate(archs):
        h = head[head.arch == arch]
        for kind, style in (("pruned only", ":"), ("recovered", "-")):
            g = h[(h.recipe == "none") == (kind == "pruned only")]
            if g.empty:
                continue
            best = g.sort_values("AVG_pct").groupby("ratio").tail(1).sort_values("ratio")
            ax.errorbar(best.ratio, best.AVG_pct,
                        yerr=[best.AVG_pct - best.ci_low, best.ci_high - best.AVG_pct],
                        ls=style, marker=markers[k % 4], capsize=3,
                        color=color("this study") if kind == "recovered" else color("prune only"),
                        label=f"this study ({arch}), best {kind}")
    if table3 is not None:
        for k, (model, t) in enumerate(table3[table3.ratio > 0].groupby("model")):
            ax.plot(t.ratio, t.AVG_pct, marker=markers[k % 4], color=color("paper"), lw=1.2,
                    label=f"paper ({SHORT_PAPER_NAME.get(model, model)}), Table 3")
    ax.axhline(100, color="black", lw=0.8)
    ax.set_xlabel("pruning ratio (requested)")
    ax.set_ylabel("AVG-% of the unpruned model")
    ax.set_title("Retained performance: best measured setting per ratio")
    ax.legend(fontsize=7.5, loc="upper left", bbox_to_anchor=(1.0, 1.0))
    fig.tight_layout()
    return fig


def fig_advice(adv: pd.DataFrame):
    """Paper Fig. 1's decision flow as measured (`advise.advice_table`): per architecture,
    the AVG-% (95% CI) of the recommended pipeline at each asked ratio, one line per
    budget; the marker's colour is the pruning method, a hollow marker flags thin evidence,
    and the label is the recovery recipe."""
    adv = adv[adv.method != ""] if not adv.empty else adv
    archs = sorted(set(adv.arch)) if not adv.empty else []
    fig, axes = plt.subplots(1, max(len(archs), 1), figsize=(4.6 * max(len(archs), 1), 3.6),
                             squeeze=False, sharey=True)
    styles = {"none": ":", "projector": "--", "full": "-"}
    for ax, arch in zip(axes[0], archs, strict=False):
        for budget, g in adv[adv.arch == arch].groupby("budget", sort=False):
            g = g.sort_values("ratio")
            ax.errorbar(g.ratio, g.AVG_pct, yerr=[g.AVG_pct - g.ci_low, g.ci_high - g.AVG_pct],
                        ls=styles.get(budget, "-"), color="#555555", lw=1, capsize=2,
                        label=f"budget {budget}")
            for r in g.itertuples(index=False):
                c = color(str(r.method).split("-")[0])
                ax.plot(r.ratio, r.AVG_pct, "o", ms=7, mec=c, mfc="white" if r.thin else c)
                ax.annotate(r.recipe, (r.ratio, r.AVG_pct), xytext=(4, 4),
                            textcoords="offset points", fontsize=6.5)
        ax.set_title(arch, fontsize=10)
        ax.set_xlabel("asked pruning ratio")
    for m in ("layer", "width"):
        axes[0][-1].plot([], [], "o", color=color(m), label=f"{m}wise")
    axes[0][-1].plot([], [], "o", mec="#555555", mfc="white", label="thin evidence")
    axes[0][0].set_ylabel("AVG-% of the unpruned model")
    if not archs:
        axes[0][0].set_title("no recommendations yet: run chapters 01-04 first")
    axes[0][-1].legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.0, 1.0))
    fig.suptitle("Which pipeline? The best measured one per budget and ratio (paper Fig. 1)",
                 fontsize=11)
    fig.tight_layout()
    return fig


def read_chapters(rows: pd.DataFrame, studies, archs=()) -> tuple[pd.DataFrame, list[str]]:
    """The evaluations of the chapters judged, and the architectures judged (`archs`, or
    every one with evaluations); prints what was found."""
    ev = findings.evaluations(rows, studies=studies)
    archs = list(archs) or sorted(a for a in set(ev.arch) if isinstance(a, str))
    ev = ev[ev.arch.isin(archs)]
    print(f"{len(rows)} rows in the results table; {len(ev)} evaluations from "
          f"{ev.study.nunique()} of {len(studies)} chapters; architectures: "
          f"{', '.join(archs) or 'none'}")
    return ev, archs


def paired_noise(P) -> PairedNoise:
    """The paired evaluation noise over the grid cells beside the chapter's results table."""
    return PairedNoise(grid.cell_cache(P).root)


def noise_budgets(unpaired: pd.DataFrame, paired: pd.DataFrame) -> pd.DataFrame:
    """Per finding: the claims' median se of d from the seeds, and from the evaluation
    before and after pairing it by item, with the 95% half-width each gives (AVG-% points)."""
    before, after = findings.noise_budget(unpaired), findings.noise_budget(paired)
    if after.empty:
        return after
    counts = paired[paired.seeds >= findings.MIN_SEEDS].groupby("finding").paired.sum()
    return pd.DataFrame({
        "finding": after.finding, "claims": after.claims,
        "paired claims": after.finding.map(counts).fillna(0).astype(int),
        "se from seeds": after["se from seeds"],
        "se from evaluation, unpaired": before["se from evaluation"],
        "se from evaluation, paired": after["se from evaluation"],
        "95% half-width, unpaired": before["95% half-width"],
        "95% half-width, paired": after["95% half-width"],
        "median |d|": after["median |d|"]})


# The rules chapter 05's simulation table compares: the study's, and issue 15's before it.
SIMULATED_RULES = ("the study's rule (paired, shared, pooled seed variance, bounded df)",
                   "unpaired, plain Welch-Satterthwaite (before issue 27)")


def rule_checks(families: int) -> pd.DataFrame:
    """The verdict rule's error rates on `families` simulated families per setting
    (`analysis.simulate.rule_table`), beside the rule it replaced, in percent."""
    table = simulate.rule_table(families, rules={r: simulate.RULE_FORMS[r]
                                                 for r in SIMULATED_RULES})
    cols = {"95% CI coverage, null claims": "coverage, null (%)",
            "95% CI coverage, true difference 5 points": "coverage, d = 5 (%)",
            "family-wise error under the null (Holm)": "family-wise error (%)"}
    power = next(c for c in table.columns if c.startswith("power"))
    out = table[["setting", "rule", *cols, power]].rename(
        columns={**cols, power: "power, d = 5 (%)"})
    for c in out.columns[2:]:
        out[c] = 100 * out[c]
    out["rule"] = out.rule.map({SIMULATED_RULES[0]: "this study's",
                                SIMULATED_RULES[1]: "before pairing"})
    return out


def compute(P, ev: pd.DataFrame, verdicts: pd.DataFrame) -> list[dict]:
    """The run's rows: one verdict per (finding, architecture), and how much was judged."""
    out = findings.verdict_rows(verdicts)
    out.append({"model": P.model, "benchmark": "coverage", "metric": "evaluations",
                "value": float(len(ev)), "n": int(ev.study.nunique()) if len(ev) else 0})
    return out


def best_practice_table(ev: pd.DataFrame, archs, table3: pd.DataFrame) -> pd.DataFrame:
    """Paper Table 3 (the best practice per setting) beside ours, per architecture."""
    return pd.concat([best_practice(ev, a, PAPER_MODEL.get(a), table3) for a in archs]
                     or [best_practice(ev, "", None, None)], ignore_index=True)


def glue_counts(verdicts: pd.DataFrame) -> dict[str, int]:
    """How many of the paper's findings got each verdict, glued for the prose as
    `n_<verdict>` (the claims beyond the paper are counted in their own rows)."""
    paper_findings = verdicts[verdicts.finding.isin(list(FINDINGS))]
    counts = paper_findings.drop_duplicates("finding").verdict.value_counts()
    out = {f"n_{label.replace(' ', '_').replace('-', '_')}": int(counts.get(label, 0))
           for label in findings.LABELS}
    for name, n in out.items():
        show.glue(name, n)
    return out


def verdict_display(verdicts: pd.DataFrame) -> pd.DataFrame:
    """`findings.verdict_table` for reading: the paper's statement, our verdict, one column
    per architecture."""
    t = findings.verdict_table(verdicts).drop(columns=["paper evidence"])
    return t.rename(columns={"the paper": "the paper's finding", "verdict": "our verdict"})


def claims_display(claims: pd.DataFrame) -> pd.DataFrame:
    """Every claim in seven columns: d with its CI as text, the Holm-adjusted p."""
    if claims.empty:
        return pd.DataFrame(columns=["finding", "arch", "claim", "setting", "d [95% CI]",
                                     "p (Holm)", "outcome"])
    ci = [show.interval(d, lo, hi, signed=True)
          for d, lo, hi in zip(claims.d, claims.ci_low, claims.ci_high, strict=True)]
    return pd.DataFrame({"finding": claims.finding, "arch": claims.arch, "claim": claims.claim,
                         "setting": claims.setting, "d [95% CI]": ci,
                         "p (Holm)": claims.p_holm.map(lambda p: "–" if pd.isna(p) else f"{p:.3f}"),
                         "outcome": claims.outcome})


def table3_display(ev: pd.DataFrame, archs, table3: pd.DataFrame) -> pd.DataFrame:
    """`best_practice_table` without the per-benchmark columns (the spider plots show them)."""
    t = best_practice_table(ev, archs, table3)
    return t[["source", "model", "setting", "ratio", "AVG-%", "95% CI", "seeds"]].rename(
        columns={"ratio": "ratio requested"})


def advice_display(advice: pd.DataFrame) -> pd.DataFrame:
    """The decision table in seven columns."""
    t = advise.decision_table(advice)
    t = t.assign(**{"AVG-% [95% CI]": [f"{a:.1f} {ci}" if pd.notna(a) else "–"
                                        for a, ci in zip(t["AVG-%"], t["95% CI"], strict=True)]})
    return t[["arch", "budget", "ratio", "use", "AVG-% [95% CI]", "paper", "evidence"]]


def takeaways(verdicts: pd.DataFrame, head: pd.DataFrame) -> list[str]:
    """The verdicts in words, and each architecture's headline retention."""
    per_finding = verdicts.drop_duplicates("finding")
    counts = per_finding.verdict.value_counts().reindex(findings.LABELS, fill_value=0)
    lines = [f"{len(per_finding)} findings: "
             + ", ".join(f"{n} {label}" for label, n in counts.items())]
    for r in verdicts.itertuples(index=False):
        if r.claims:
            lines.append(f"* finding {r.finding} ({r.verdict}) on {r.arch}: {r.on_arch} "
                         f"({r.supported}+ / {r.contradicted}- / {r.ties}= / {r.untested} "
                         f"untested of {r.claims} claims; median d {r.median_d:+.1f} points; "
                         f"largest {r.largest_d}; seeds {r.seeds})"
                         + (f"; its teacher {r.caveat}" if r.caveat else ""))
    for r in head.itertuples(index=False):
        lines.append(f"* {r.arch} at ratio {r.ratio:g}: {r[2]:.1f}% pruned only ({r[3]}), "
                     f"{r[4]:.1f}% recovered ({r[5]})")
    return lines
