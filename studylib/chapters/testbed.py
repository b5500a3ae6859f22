"""Chapter 00, the testbed: example scenes and questions, and the unpruned teachers' scores against chance."""

from __future__ import annotations

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd

from studylib import models
from studylib.analysis.paper import SHORT_PAPER_NAME, paper_unpruned
from studylib.chapters.plotting import color
from studylib.evaluation import evaluate, metrics
from studylib.evaluation.chance import chance_avg, chance_scores
from studylib.results import eval_rows
from studylib.testbed import shapes, suite


def fig_example_scenes(n: int = 6, seed: int = 0):
    """A strip of ShapesWorld scenes (the images every benchmark asks about)."""
    scenes = [shapes.make_scene(shapes.BENCH_SEED_BASE + seed * 1000 + i) for i in range(n)]
    cols = min(n, 6)
    rows = -(-n // cols)
    fig, axes = plt.subplots(rows, cols, figsize=(1.7 * cols, 1.9 * rows), squeeze=False)
    for ax in axes.flat:
        ax.axis("off")
    for ax, scene in zip(axes.flat, scenes, strict=False):
        ax.imshow(shapes.render(scene), interpolation="nearest")
        ax.set_title(f"{len(scene.objects)} objects", fontsize=8, fontweight="normal")
    fig.suptitle("ShapesWorld scenes (48 x 48 px, a 3 x 3 grid)", fontsize=10)
    fig.tight_layout()
    return fig


def example_questions(per_benchmark: int = 2) -> pd.DataFrame:
    """The first questions of each benchmark with their reference answers."""
    rows = []
    for name in shapes.BENCHMARKS:
        for it in suite.benchmark(name)[:per_benchmark]:
            rows.append({"benchmark": name, "subset": it.subset,
                         "question": it.question.replace("\n", " "), "answer": it.answer})
    return pd.DataFrame(rows)


def _on_paper_scale(df: pd.DataFrame) -> pd.DataFrame:
    out = df.copy()
    scale = out.benchmark.map(metrics.PAPER_SCALE).fillna(1.0)
    for col in ("value", "ci_low", "ci_high"):
        if col in out:
            out[col] = pd.to_numeric(out[col], errors="coerce") / scale
    return out


def fig_testbed_scores(df: pd.DataFrame, model: str, arch: str | None = None,
                       paper_model: str | None = None):
    """Per benchmark: this study's model (95% bootstrap CI), the paper's unpruned model
    where it has one, and chance (a random guesser), all on the paper's 0-100 scale
    (MME-C / 8, MME-P / 20), plus the paper's AVG.

    `df` is results-table rows: the model's rows and the `chance` rows of the same run.
    """
    main = df[df.metric.isin(["score", "paper"])]
    ours = _on_paper_scale(main[main.model == model]).set_index("benchmark")
    chance = _on_paper_scale(main[main.model == "chance"]).set_index("benchmark")
    paper = paper_unpruned(paper_model) if paper_model else {}
    names = [b for b in (*metrics.PAPER_KEYS, "AVG") if b in ours.index]
    x = np.arange(len(names))
    width = 0.38 if paper else 0.6
    fig, ax = plt.subplots(figsize=(8, 3.6))
    label = f"this study ({arch or model})"
    vals = ours.loc[names, "value"].to_numpy(float)
    lo = np.nan_to_num(vals - ours.loc[names, "ci_low"].to_numpy(float))
    hi = np.nan_to_num(ours.loc[names, "ci_high"].to_numpy(float) - vals)
    offset = -width / 2 if paper else 0.0
    ax.bar(x + offset, vals, width, color=color("this study"), label=label,
           yerr=[lo, hi], capsize=3, error_kw={"elinewidth": 1})
    if paper:
        pvals = [metrics.average(paper) if b == "AVG" else paper.get(b, np.nan) / metrics.PAPER_SCALE.get(b, 1.0)
                 for b in names]
        short = SHORT_PAPER_NAME.get(paper_model, paper_model)
        ax.bar(x + width / 2, pvals, width, color=color("paper"), label=f"paper ({short})")
    if not chance.empty:
        cvals = [chance.value.get(b, np.nan) for b in names]
        if "AVG" in names and all(k in chance.index for k in metrics.PAPER_KEYS):
            cvals[names.index("AVG")] = float(np.mean([chance.value[k] for k in metrics.PAPER_KEYS]))
        ax.scatter(x, cvals, marker="_", s=900, linewidths=2.5, color=color("chance"),
                   label="chance (random guess)", zorder=5)
    ax.set_xticks(x, [f"{b}\n(/{metrics.PAPER_SCALE[b]:g})" if metrics.PAPER_SCALE.get(b, 1) != 1
                      else b for b in names])
    ax.set_ylabel("score (paper's 0-100 scale)")
    ax.set_ylim(0, 105)
    ax.set_title("Unpruned model: scores with 95% CIs vs chance")
    ax.legend(loc="upper left", bbox_to_anchor=(1.0, 1.0), fontsize=8)
    fig.tight_layout()
    return fig


def parameter_table(model) -> pd.DataFrame:
    """The model's parameters by part, and each part's share of the total."""
    counts = models.parameter_counts(model)
    return pd.DataFrame({"parameters": counts,
                         "share of total": {k: v / counts["total"] for k, v in counts.items()}})


def compute(P, model, processor) -> list[dict]:
    """The run's rows: the teacher's scores and a random guesser's on the same items."""
    report = evaluate.evaluate(model, processor, limit=P.eval_limit, seed=P.seed,
                               batch_size=P.batch_size, progress=False)
    chance = chance_scores(limit=P.eval_limit, seed=P.seed, draws=P.chance_draws)
    rows = eval_rows(report, model=P.model, seed=P.seed)
    rows += [{"model": "chance", "seed": P.seed, **r} for r in chance.to_dict("records")]
    counts = models.parameter_counts(model)
    return [{"n_params": counts["total"], "n_params_llm": counts["llm"], **r} for r in rows]


def scores_table(run: pd.DataFrame, model: str) -> pd.DataFrame:
    """Teacher, chance and paper scores per benchmark, with the teacher's 95% CI."""
    scores = run[run.metric.isin(["score", "paper"])]
    wide = scores.pivot_table(index="benchmark", columns="model", values="value", sort=False)
    wide.insert(1, "95% CI", [f"[{lo:.1f}, {hi:.1f}]" if pd.notna(lo) else "" for lo, hi in
                              scores[scores.model == model].set_index("benchmark")
                              .loc[wide.index, ["ci_low", "ci_high"]].itertuples(index=False)])
    return wide.round(2)


def takeaway(run: pd.DataFrame, model: str) -> str:
    """The teacher's AVG against chance: the 100% every later chapter divides by."""
    avg = float(run[(run.benchmark == "AVG") & (run.model == model)].value.iloc[0])
    items = int(run[run.benchmark != "AVG"].n.max())
    return (f"{model}: AVG {avg:.1f} vs chance {chance_avg(run):.1f} with {items} items "
            f"per benchmark at most; every later chapter reports AVG-% = AVG / {avg:.1f}.")
