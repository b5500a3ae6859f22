"""Chapter 00, the testbed: example scenes and questions, the unpruned teachers' scores
against chance, and the checks that say whether a teacher is fit to be compressed
(`validity_table`)."""

from __future__ import annotations

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd

from studylib import models
from studylib.analysis import stats
from studylib.analysis.findings import LAYER_CHECK_MAX_PCT
from studylib.analysis.paper import SHORT_PAPER_NAME, paper_unpruned
from studylib.chapters.plotting import color
from studylib.evaluation import evaluate, metrics
from studylib.evaluation.chance import (
    IMAGE_BLIND_SHARE,
    chance_avg,
    chance_scores,
    edge_kept,
    image_blind,
)
from studylib.study import grid
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
        ax.imshow(shapes.render(scene, shapes.OCCLUSION), interpolation="nearest")
        hidden = sum(h is not None for h in shapes.occluders(scene, shapes.OCCLUSION))
        ax.set_title(f"{len(scene.objects)} objects" + (f", {hidden} partly hidden" if hidden
                     else ""), fontsize=8, fontweight="normal")
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


def unpruned(run: pd.DataFrame) -> pd.DataFrame:
    """The run's teacher and chance rows, without the layer-pruned model of the validity check."""
    return run[run.method.fillna("none") == "none"] if "method" in run else run


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
    main = unpruned(df)
    main = main[main.metric.isin(["score", "paper"])]
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
    """The model's parameters by part (vision encoder, projector, LLM), and each part's
    share of the total, in percent."""
    counts = models.parameter_counts(model)
    return pd.DataFrame({"part": list(counts), "parameters": [f"{v:,}" for v in counts.values()],
                         "of total (%)": [100 * v / counts["total"] for v in counts.values()]})


def compute(P, model, processor) -> list[dict]:
    """The run's rows: the teacher's scores, with its images and with shuffled ones (the
    control), a random guesser's on the same items, the validity check's model (the teacher
    with `layer_check_ratio` of its LLM removed by Block-Influence layer pruning, no
    recovery), through the study's one grid loop, and the option-lookup probe's accuracy."""
    plan = grid.Grid(pruned=(("layer", P.layer_check_ratio),), image_shuffle=True)
    rows = grid.run_grid(model, processor, plan, model=P.model, eval_limit=P.eval_limit,
                         eval_seed=P.seed, batch_size=P.batch_size, cache=grid.cell_cache(P))
    chance = chance_scores(limit=P.eval_limit, seed=P.seed, draws=P.chance_draws)
    counts = models.parameter_counts(model)
    rows += [{"model": "chance", "seed": P.seed, "n_params": counts["total"],
              "n_params_llm": counts["llm"], **r} for r in chance.to_dict("records")]
    n = P.option_lookup_items
    rows.append({"model": P.model, "seed": P.seed, "method": "none", "ratio": 0.0,
                 "benchmark": OPTION_LOOKUP, "metric": "accuracy", "n": n,
                 "value": evaluate.option_lookup_accuracy(model, processor, n=n,
                                                          batch_size=P.batch_size)})
    return rows


# The option-lookup probe's rows (`evaluate.option_lookup_accuracy`): not a benchmark.
OPTION_LOOKUP = "option lookup"


# What each benchmark's headline score is, and on which scale (the table's "metric" column).
METRIC_NAMES = {"GQA": "accuracy (%)", "SQA": "accuracy (%)", "MMMU": "accuracy (%)",
                "POPE": "F1 (%)", "MME-P": "acc + acc+ (0-2000)", "MME-C": "acc + acc+ (0-800)",
                "AVG": "paper's AVG (0-100)"}


def scores_table(run: pd.DataFrame, model: str, arch: str | None = None,
                 paper_model: str | None = None) -> pd.DataFrame:
    """Per benchmark, on its own metric's scale: the teacher's score with its 95% CI, a
    random guesser's on the same items, and the paper's unpruned model (Table 6) where
    `paper_model` is one of its models."""
    scores = unpruned(run)
    scores = scores[scores.metric.isin(["score", "paper"])]
    ours = scores[scores.model == model].groupby("benchmark", sort=False)[
        ["value", "ci_low", "ci_high"]].mean()
    chance = scores[scores.model == "chance"].groupby("benchmark", sort=False).value.mean()
    if "AVG" not in chance and all(k in chance for k in metrics.PAPER_KEYS):
        chance["AVG"] = metrics.average(chance.to_dict())
    table = pd.DataFrame({
        "benchmark": ours.index, "metric": ours.index.map(METRIC_NAMES),
        f"ours ({arch or model})": ours.value.to_numpy(float),
        "95% CI": [f"[{lo:.1f}, {hi:.1f}]" if pd.notna(lo) else None
                   for lo, hi in zip(ours.ci_low, ours.ci_high, strict=True)],
        "chance (random guess)": ours.index.map(chance).to_numpy(float)})
    paper = paper_unpruned(paper_model) if paper_model else {}
    if paper:
        paper["AVG"] = metrics.average(paper)
        short = SHORT_PAPER_NAME.get(paper_model, paper_model)
        table[f"paper ({short}, Table 6)"] = table.benchmark.map(paper).astype(float)
    table.attrs["items"] = int(scores[scores.benchmark != "AVG"].n.max())
    return table


def takeaway(run: pd.DataFrame, model: str) -> str:
    """The teacher's AVG against chance: the 100% every later chapter divides by."""
    run = unpruned(run)
    avg = float(run[(run.benchmark == "AVG") & (run.model == model)].value.iloc[0])
    items = int(run[run.benchmark.isin(shapes.BENCHMARKS)].n.max())
    return (f"{model}: AVG {avg:.1f} vs chance {chance_avg(run):.1f} with {items} items "
            f"per benchmark at most; every later chapter reports AVG-% = AVG / {avg:.1f}.")


# --- validity: is this teacher fit to be compressed? ------------------------------------------

# "Clearly above a guesser": the teacher's AVG must beat a random guesser's AVG by more than
# this many points on the paper's 0-100 scale. The 95% CI half-width of a teacher's AVG is
# ~1.5 points at the default profile's 300 items per benchmark, so 5 points is beyond
# evaluation noise and a gap worth compressing.
CLEAR_MARGIN = 5.0
# The layer-60 check: removing 60% of the LLM with no recovery must cost a real teacher most
# of its skill (the paper's LLaVA already loses about a quarter at 15% layerwise, Table 6).
# A teacher that keeps `LAYER_CHECK_MAX_PCT`% or more either sits near chance already or
# computes in its first layers; chapter 05 then marks the layer-vs-width findings
# testbed-limited (`findings.DEPTH_RULE`).
VALIDITY_COLUMNS = ["model", "check", "benchmark", "value", "ci_low", "ci_high", "reference",
                    "rule", "passed"]


def scores_of(run: pd.DataFrame, model: str, method: str = "none") -> pd.DataFrame:
    """Headline rows (one per benchmark, suite order) of `model` pruned by `method` (or
    `grid.IMAGE_SHUFFLE`: the teacher on shuffled images)."""
    rows = run[(run.model == model) & (run.metric == "score")
               & run.benchmark.isin(shapes.BENCHMARKS)]
    if "method" in rows:
        rows = rows[rows.method.fillna("none") == method]
    rows = rows.groupby("benchmark")[["value", "ci_low", "ci_high"]].mean()
    return rows.reindex([b for b in shapes.BENCHMARKS if b in rows.index])


def _row(model, check, benchmark, value, reference, rule, passed, ci_low=np.nan,
         ci_high=np.nan) -> dict:
    return {"model": model, "check": check, "benchmark": benchmark, "value": float(value),
            "ci_low": float(ci_low), "ci_high": float(ci_high), "reference": float(reference),
            "rule": rule, "passed": bool(passed)}


def chance_check(run: pd.DataFrame, model: str) -> list[dict]:
    """Per benchmark: the teacher's score, its 95% bootstrap CI and the guesser's score on
    the same items; passes when the CI's lower bound is above chance (a CI that reaches
    chance cannot tell the teacher from a random guesser)."""
    teacher, chance = scores_of(run, model), scores_of(run, "chance")
    return [_row(model, "CI lower bound above chance", b, r.value, chance.value.get(b, np.nan),
                 "ci_low > chance", r.ci_low > chance.value.get(b, np.nan), r.ci_low, r.ci_high)
            for b, r in teacher.iterrows()]


def layer_check(run: pd.DataFrame, model: str) -> list[dict]:
    """The teacher with a share of its LLM's layers removed (Block Influence, no recovery):
    its AVG-% must be below `LAYER_CHECK_MAX_PCT`, and every benchmark must move towards
    chance (|pruned - chance| < |teacher - chance|). A teacher that fails has nothing
    for pruning to destroy, so recovery numbers measured on it mean little."""
    pruned = run[(run.model == model) & (run.method.fillna("none") == "layer")] \
        if "method" in run else run.iloc[:0]
    if pruned.empty:
        return [_row(model, "layer pruning run", "AVG", np.nan, np.nan,
                     "the run has no layer-pruned model", False)]
    name = f"layer-{round(100 * float(pruned.ratio.iloc[0]))}"
    pct = pruned[(pruned.benchmark == "AVG") & (pruned.metric == "avg_pct")].value
    rows = [_row(model, f"{name}: AVG-% below {LAYER_CHECK_MAX_PCT:g}", "AVG",
                 pct.iloc[0] if len(pct) else np.nan, LAYER_CHECK_MAX_PCT,
                 f"AVG-% < {LAYER_CHECK_MAX_PCT:g}",
                 len(pct) and pct.iloc[0] < LAYER_CHECK_MAX_PCT)]
    teacher, after, chance = scores_of(run, model), scores_of(run, model, "layer"), scores_of(run, "chance")
    for b in teacher.index:
        before = abs(teacher.value[b] - chance.value.get(b, np.nan))
        now = abs(after.value.get(b, np.nan) - chance.value.get(b, np.nan))
        rows.append(_row(model, f"{name}: moved towards chance", b, now, before,
                         "|pruned - chance| < |teacher - chance|", now < before))
    return rows


def guesser_check(run: pd.DataFrame, model: str) -> list[dict]:
    """The teacher's AVG minus a random guesser's AVG on the same items, with the teacher
    AVG's 95% CI (the study's CI rule, `analysis.stats`); passes above `CLEAR_MARGIN`."""
    teacher = scores_of(run, model)
    guesser = chance_avg(run)
    try:
        avg = metrics.average(teacher.value.to_dict())
    except KeyError:
        avg = np.nan
    scale = teacher.index.map(metrics.PAPER_SCALE).to_numpy(float)
    se = np.sqrt(np.nansum((stats.se_from_ci(teacher.ci_low, teacher.ci_high) / scale) ** 2))
    half = stats.combine(np.nan, 0, se / len(metrics.PAPER_KEYS))
    gap = avg - guesser
    return [_row(model, f"AVG clearly above a guesser's (> {CLEAR_MARGIN:g} points)", "AVG", gap,
                 CLEAR_MARGIN, f"teacher AVG - guesser AVG > {CLEAR_MARGIN:g}",
                 gap > CLEAR_MARGIN, gap - half, gap + half)]


def image_check(run: pd.DataFrame, model: str) -> list[dict]:
    """Per benchmark where the teacher beats the guesser: with shuffled images (the control
    of `grid.IMAGE_SHUFFLE`) it must keep at most `IMAGE_BLIND_SHARE` of that edge, else the
    benchmark is answerable without the image (`chance.image_blind`). The checked value is
    the share kept, in percent; a run without the control has no such rows."""
    teacher, chance = scores_of(run, model), scores_of(run, "chance")
    shuffled = scores_of(run, model, grid.IMAGE_SHUFFLE)
    if shuffled.empty:
        return []
    blind = image_blind(teacher.value, shuffled.value, chance.value)
    limit = 100 * IMAGE_BLIND_SHARE
    rows = []
    for b in teacher.index:
        kept = 100 * edge_kept(teacher.value[b], shuffled.value.get(b, np.nan),
                               chance.value.get(b, np.nan))
        if not np.isfinite(kept):
            continue  # no edge to keep: the chance check already speaks for this benchmark
        rows.append(_row(model, f"image shuffle: keeps at most {limit:g}% of the edge", b,
                         kept, limit, "(shuffled - chance) / (teacher - chance) "
                         f"<= {IMAGE_BLIND_SHARE:g}", b not in blind))
    return rows


def validity_table(run: pd.DataFrame, model: str | None = None) -> pd.DataFrame:
    """Every validity check of every teacher in `run` (chapter 00 rows: teachers, the
    `chance` guesser and the layer-pruned models), one tidy row per check and benchmark:
    the checked value with its 95% CI where it has one, the reference it is held to, the
    rule and whether it passed."""
    names = [model] if model else [m for m in dict.fromkeys(run.model) if m != "chance"]
    rows = [r for m in names
            for r in (*chance_check(run, m), *layer_check(run, m), *guesser_check(run, m),
                      *image_check(run, m))]
    return pd.DataFrame(rows, columns=VALIDITY_COLUMNS)


def validity_display(table: pd.DataFrame) -> pd.DataFrame:
    """`validity_table` for reading: one teacher's checks, the CI as one column, the rule
    left to the prose that explains each check."""
    ci = [f"[{lo:.1f}, {hi:.1f}]" if pd.notna(lo) else None
          for lo, hi in zip(table.ci_low, table.ci_high, strict=True)]
    return pd.DataFrame({"check": table.check, "benchmark": table.benchmark,
                         "checked value": table.value, "95% CI": ci,
                         "held to": table.reference,
                         "passed": table.passed.map({True: "yes", False: "NO"})})


def validity_summary(table: pd.DataFrame) -> str:
    """One line per teacher: how many checks passed, and which failed."""
    lines = []
    for m, g in table.groupby("model", sort=False):
        failed = [f"{r.check} ({r.benchmark})" for r in g.itertuples() if not r.passed]
        lines.append(f"{m}: {int(g.passed.sum())}/{len(g)} checks pass"
                     + (f"; failed: {', '.join(failed)}" if failed else ""))
    return "\n".join(lines)
