"""Chapter 01 (layerwise vs widthwise pruning, no recovery): its rows, table and takeaways.

- `compute()`: the teacher, a random guesser on the same items, and every (method, ratio,
  importance) pruned from the teacher through the study's grid (`studylib.study.grid`),
  evaluated without finetuning. Baseline rows are recorded under their own method name
  (`layer-random`, `width-random`) with the score in the `importance` column, so later
  chapters never mistake them for the real methods; Block Influence scores per layer are
  rows too (benchmark `block_influence`), for the figure; so is how the two forms of Taylor
  importance differ on the teacher (benchmark `taylor_forms`, `taylor_form_rows`).
- `summary()` / `results_table()` / `takeaways()` / `taylor_forms_table()`: read back from
  the run's rows only.
Figures are in `pruning_comparison_figures`.
"""

from __future__ import annotations

import time
from typing import Any

import numpy as np
import pandas as pd
from scipy.stats import spearmanr

from studylib import models
from studylib.analysis import findings
from studylib.analysis.paper import SHORT_PAPER_NAME, paper_table
from studylib.compress import prune
from studylib.compress.importance import width_scores
from studylib.evaluation import metrics
from studylib.evaluation.chance import chance_avg, chance_scores
from studylib.results import eval_rows
from studylib.study import grid
from studylib.study.params import PruningParams
from studylib.testbed import instructions

OWN_SCORES = ("none", "bi", "taylor")  # the teacher and each method's own importance
OWN_SCORE_NAMES = {"layer": "Block Influence", "width": "Taylor importance",
                   "depth+width": "Block Influence, then Taylor importance"}


def compute(P: PruningParams) -> list[dict[str, Any]]:
    """The run's rows: teacher, chance, and every pruned model (see the module doc)."""
    teacher, processor = models.load(P.checkpoint_dir, dtype=P.dtype, device=P.resolved_device())
    plan = grid.Grid(grid.product(P.methods, P.ratios), seeds=P.seeds,
                     importances=P.importances, calib_n=P.calib_n)
    rows: list[dict[str, Any]] = []
    for s in grid.students(teacher, processor, plan, eval_limit=P.eval_limit, eval_seed=P.seed,
                           batch_size=P.batch_size, cache=grid.cell_cache(P)):
        if s.kind == "teacher":
            counts = models.parameter_counts(teacher)
            info = dict(importance="none", ratio_achieved=0.0, n_params=counts["total"],
                        n_params_llm=counts["llm"], prune_s=0.0)
            chance = chance_scores(limit=P.eval_limit, seed=P.seed)
            rows += [{"model": "chance", "seed": P.seed, **r} for r in chance.to_dict("records")]
        else:
            pr = s.pruning
            info = dict(method=s.method if s.importance == "default" else f"{s.method}-{pr.importance}",
                        ratio=s.ratio, importance=pr.importance,
                        ratio_achieved=round(pr.ratio_achieved, 4),
                        n_params=pr.params_after["total"], n_params_llm=pr.params_after["llm"],
                        prune_s=pr.wall_time_s)
        info["eval_s"] = round(s.report.wall_time, 2)
        info["cell"] = s.cell
        rows += [{**r, **info} for r in eval_rows(s.report, model=P.model, seed=s.seed)]
        if s.pruning and s.pruning.importance == "bi":  # the scores behind the layers chosen
            rows += [{"model": P.model, "seed": s.seed, "benchmark": "block_influence",
                      "metric": "bi", "layer": i, "value": v,
                      "removed": i in s.pruning.removed_layers, **info}
                     for i, v in enumerate(s.pruning.layer_scores)]
    if "width" in P.methods:
        rows += taylor_form_rows(teacher, processor, P)
    return [{"calib_n": P.calib_n, **r} for r in rows]


TAYLOR_FORMS = ("taylor", "taylor-mean")  # the authors' batch gradient; per-sample mean


def taylor_form_rows(teacher, processor, P: PruningParams) -> list[dict[str, Any]]:
    """How the two Taylor forms differ on the teacher: both score every layer once (on the
    grid's calibration sample), then, per ratio and layer, how many of the MLP channels and
    kv groups each would remove are shared, and the Spearman correlation of the channel
    scores; plus each scoring's wall time. No pruning, no evaluation."""
    calib = instructions.calibration_sample(P.calib_n, seed=P.seed)  # as the grid draws it
    layer_ids = list(range(len(models.text_layers(teacher))))
    scores, rows = {}, []
    for form in TAYLOR_FORMS:
        start = time.perf_counter()
        scores[form] = width_scores(teacher, form, layer_ids, calib, processor)
        rows.append({"metric": "seconds", "importance": form, "ratio": 0.0,
                     "value": round(time.perf_counter() - start, 3)})
    rho = [spearmanr(a[1].numpy(), b[1].numpy()).statistic
           for a, b in zip(*scores.values(), strict=True)]
    for r in P.ratios:
        a, b = (prune.removed_by(teacher, r, scores[f]) for f in TAYLOR_FORMS)
        for i, ((ga, ca), (gb, cb)) in enumerate(zip(a, b, strict=True)):
            values = {"channels_removed": len(ca), "channels_shared": len(set(ca) & set(cb)),
                      "kv_groups_removed": len(ga), "kv_groups_shared": len(set(ga) & set(gb)),
                      "spearman_channels": float(rho[i])}
            rows += [{"metric": m, "ratio": float(r), "layer": i, "value": v,
                      "importance": "taylor vs taylor-mean"} for m, v in values.items()]
    return [{"model": P.model, "seed": P.seed, "benchmark": "taylor_forms", "method": "width",
             **row} for row in rows]


def taylor_forms_table(run: pd.DataFrame) -> pd.DataFrame | None:
    """Per ratio and layer: MLP channels and kv groups removed by `taylor` (the authors'
    form), how many of them `taylor-mean` removes too, and the Spearman correlation of the
    two channel scores; each scoring's wall time (s) is in `attrs["seconds"]`. None for runs
    without widthwise pruning or recorded before these rows existed."""
    rows = run[run.benchmark == "taylor_forms"]
    if rows.empty:
        return None
    secs = rows[rows.metric == "seconds"].set_index("importance").value
    per_layer = rows[rows.metric != "seconds"].astype({"layer": int})
    table = per_layer.pivot_table(index=["ratio", "layer"], columns="metric", values="value")
    out = pd.DataFrame({
        "MLP channels removed": table.channels_removed.astype(int),
        "of them shared": table.channels_shared.astype(int),
        "kv groups removed": table.kv_groups_removed.astype(int),
        "kv shared": table.kv_groups_shared.astype(int),
        "Spearman (channel scores)": table.spearman_channels.round(3)})
    out.attrs["seconds"] = {f: float(secs[f]) for f in TAYLOR_FORMS if f in secs}
    return out


def scores(run: pd.DataFrame, model: str) -> pd.DataFrame:
    """The model's benchmark scores (teacher and pruned), without the chance rows."""
    return run[(run.model == model) & (run.metric == "score")]


def summary(run: pd.DataFrame, model: str) -> pd.DataFrame:
    """One row per (method, importance, ratio): achieved ratio, LLM parameters, AVG and
    AVG-% of the teacher (each score the mean over the replicate seeds); `family` names
    the method a baseline belongs to."""
    s = scores(run, model)
    reference = _reference(s)
    rows = []
    for (m, imp, r), g in s.groupby(["method", "importance", "ratio"], sort=False):
        mean = g.groupby("benchmark", sort=False).value.mean().to_dict()
        rows.append({"method": m, "importance": imp, "ratio": r,
                     "achieved": g.ratio_achieved.mean(), "LLM params": int(g.n_params_llm.mean()),
                     "AVG": metrics.average(mean), "AVG-%": metrics.average_pct(mean, reference),
                     "seeds": g.seed.nunique()})
    out = pd.DataFrame(rows)
    out.insert(1, "family", out.method.str.split("-").str[0])  # layer-random -> layer
    return out


def _reference(s: pd.DataFrame) -> dict[str, float]:
    teacher = s[s.method == "none"]
    return dict(zip(teacher.benchmark, teacher.value, strict=True))


def chance_pct(run: pd.DataFrame, model: str) -> float:
    """A random guesser's AVG as a percentage of the teacher's."""
    return 100 * chance_avg(run) / metrics.average(_reference(scores(run, model)))


def paper_models(paper_model: str | None) -> list[str]:
    """The paper's model of our family, or every model of its Table 6."""
    return [paper_model] if paper_model else list(dict.fromkeys(
        paper_table("table6_pruning_only").model))


def results_table(summ: pd.DataFrame, paper_model: str | None) -> pd.DataFrame:
    """The chapter's table, for reading: per method and requested ratio, the share of the
    LLM removed, AVG-% with the method's own importance score and with each baseline score
    (random, ...), and the paper's AVG-% (Table 6, pruning only) at the requested ratio."""
    paper = paper_table("table6_pruning_only")
    paper_pct = (paper[paper.model.isin(paper_models(paper_model))]
                 .pivot_table(index=["method", "ratio"], columns="model", values="AVG_pct")
                 .rename(columns=lambda m: f"AVG-% (paper {SHORT_PAPER_NAME.get(m, m)}, Table 6)"))
    main = summ[summ.importance.isin(OWN_SCORES)].set_index(["method", "ratio"])
    out = pd.DataFrame({"removed (%)": 100 * main.achieved, "AVG-% (ours)": main["AVG-%"]})
    for imp in sorted(set(summ.importance) - set(OWN_SCORES)):
        out[f"AVG-% {imp} scores (ours)"] = \
            summ[summ.importance == imp].set_index(["family", "ratio"])["AVG-%"]
    out = out.join(paper_pct, how="left").reset_index()
    out.insert(1, "ratio (%)", 100 * out.pop("ratio"))
    out["method"] = out.method.replace({"none": "unpruned teacher"})
    return out.rename(columns={"method": "pruning"})


def takeaways(run: pd.DataFrame, P: PruningParams) -> list[str]:
    """Which method keeps more at each ratio, against the paper; how much the importance
    scores beat random ones; which settings collapse to chance."""
    summ, chance = summary(run, P.model), chance_pct(run, P.model)
    paper = paper_table("table6_pruning_only")
    own = summ[summ.importance.isin(["bi", "taylor"])].set_index(["method", "ratio"])["AVG-%"]
    lines = []
    if chance > 80:  # AVG-% divides by the teacher's AVG: meaningless if that is chance
        lines.append(f"**Warning:** the teacher's AVG is not clearly above chance (chance = "
                     f"{chance:.0f}% of it); the comparisons below say little about pruning")
    for pct in findings.idle_depth(findings.evaluations(run)).values():  # DEPTH_RULE
        lines.append(f"**Testbed-limited:** this teacher {findings.depth_caveat(pct)}: "
                     "it computes its answers in its first layers, so the layer-vs-width "
                     "comparisons below measure the toy's depth, not the methods, and chapter 05 "
                     "does not count them for findings 1 and 2")
    for r in P.ratios:
        have = {m: own.loc[(m, r)] for m in P.methods if (m, r) in own.index}
        if len(have) < 2:
            continue
        win = max(have, key=have.get)
        ours_txt = " vs ".join(f"{m} {v:.1f}%" for m, v in have.items())
        theirs = []
        for pm in paper_models(P.paper_model):
            p = paper[(paper.model == pm) & np.isclose(paper.ratio, r)].set_index("method").AVG_pct
            if {"layer", "width"} <= set(p.index):
                pw = "width" if p["width"] > p["layer"] else "layer"
                theirs.append(f"{SHORT_PAPER_NAME.get(pm, pm)}: {pw} wins "
                              f"({p['width']:.1f}% vs {p['layer']:.1f}%)"
                              + (", same as here" if pw == win else ", unlike here"))
        lines.append(f"r = {r:g}: {ours_txt} -> {win} keeps more "
                     f"(+{have[win] - min(have.values()):.1f} points)"
                     + (f"; paper {'; '.join(theirs)}" if theirs else "; no paper number"))
    for m in P.methods:
        base = summ[(summ.family == m) & (summ.importance == "random")].set_index("ratio")
        mine = own[own.index.get_level_values("method") == m].droplevel("method")
        both = mine.index.intersection(base.index)
        if len(both):
            gain = mine[both] - base.loc[both, "AVG-%"]
            name = OWN_SCORE_NAMES[prune.parse_method(m)[0]]
            lines.append(f"{m}: {name} beats random scores at {int((gain > 0).sum())} of "
                         f"{len(gain)} ratios (mean {gain.mean():+.1f} AVG-% points)")
    layer = summ[summ.method == "layer"].sort_values("ratio")
    if len(layer):  # whole layers: the achieved ratio moves in steps of 1/L
        lines.append("layerwise pruning removes whole layers: requested " + ", ".join(
            f"{100 * r:g}% -> {100 * a:.1f}%" for r, a in zip(layer.ratio, layer.achieved,
                                                             strict=True))
            + " of the LLM's decoder; the figures place it at the achieved ratio")
    near = summ[(summ.method != "none") & (summ["AVG-%"] <= chance + 5)]
    lines.append(f"at most 5 points above chance ({chance:.0f}%): " + (", ".join(
        f"{f} ({i}) r={r:g}" for f, i, r in zip(near.family, near.importance, near.ratio,
                                                strict=True)) or "none"))
    items = int(scores(run, P.model).n.max())
    lines.append(f"{items} items per benchmark at most"
                 + ("; with this few items differences of a few points are noise"
                    if items < 100 else ""))
    return lines
