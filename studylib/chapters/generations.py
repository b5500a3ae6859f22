"""Chapter 02, what the compressed models answer: a few benchmark items with every model's
prediction (the paper's Table 8, "example generations of compressed models"), drawn with
the scenes the questions ask about.

Nothing is trained or evaluated here: the predictions are the items stored in the grid's
cells (`studylib.study.cells`) when chapter 02 ran. Re-running the chapter's grid through
`grid.students` reads them back; a missing cell would be computed (and stored) as usual.
"""

from __future__ import annotations

import functools
import textwrap
import zlib
from typing import Any

import matplotlib.pyplot as plt
import pandas as pd

from studylib import models
from studylib.study import cells, grid
from studylib.testbed import suite

COLUMNS = ["item", "benchmark", "subset", "scene_seed", "question", "answer", "model",
           "prediction", "correct"]
RIGHT, WRONG = "#1a7f37", "#c62828"  # green / red, with a tick / cross for colour-blind readers


def chapter_grid(P: Any, seeds: tuple[int, ...] | None = None) -> grid.Grid:
    """Chapter 02's grid (as `grid.compute` builds it), optionally for some seeds only: a
    cell's key holds its own seed, not the grid's list, so one seed reads the same cells."""
    return grid.Grid(grid.product(P.methods, P.ratios), recipes=P.recipes, fractions=P.fractions,
                     seeds=seeds or P.seeds, calib_n=P.calib_n, max_steps=P.max_steps)


def model_label(s: grid.Student) -> str:
    """'teacher', 'layer 30% · prune only', 'width 30% · sft', ..."""
    if s.kind == "teacher":
        return "teacher"
    how = s.recipe.name if s.kind == "recovered" else "prune only"
    return f"{s.method} {round(100 * s.ratio, 1):g}% · {how}"


@functools.cache
def _items(benchmark: str) -> dict[str, suite.Item]:
    return {it.id: it for it in suite.benchmark(benchmark)}


def predictions(P: Any, *, cache: cells.CellCache | None = None) -> pd.DataFrame:
    """Every benchmark item's prediction by the teacher and, for the first replicate seed,
    every pruned and recovered student of chapter 02's grid (`P`), read from the cells:
    one tidy row per (model, item), in grid order."""
    teacher, processor = models.load(P.checkpoint_dir, dtype=P.dtype, device=P.resolved_device())
    cache = cache if cache is not None else grid.cell_cache(P)
    frames = []
    for s in grid.students(teacher, processor, chapter_grid(P, (P.seeds[0],)), cache=cache,
                           eval_limit=P.eval_limit, eval_seed=P.seed, batch_size=P.batch_size,
                           log=None):
        s.model = None  # a computed student's weights are not needed past its predictions
        frames.append(s.report.items.assign(model=model_label(s)))
    df = pd.concat(frames, ignore_index=True).rename(columns={"id": "item"})
    found = [_items(b)[i] for b, i in zip(df.benchmark, df["item"], strict=True)]
    df["question"] = [it.question for it in found]
    df["scene_seed"] = [it.scene_seed for it in found]
    df["correct"] = df["correct"].astype(bool)
    return df[COLUMNS]


def pick_items(preds: pd.DataFrame, n: int = 4, seed: int = 0) -> list[str]:
    """`n` item ids from `predictions()`, chosen without randomness at run time.

    Items fall into three classes: (A) the teacher is right and some compressed model wrong,
    (B) the teacher is wrong and some compressed model right, (C) every model agrees. Within
    a class, items whose models split most evenly (the larger min(right, wrong)) come first,
    ties broken by a CRC32 hash of `seed` and the item id (`seed` picks another fixed set).
    The order is A and B interleaved (A first), then C; walking it, an item is taken when its
    benchmark has none taken yet, then, if fewer than `n` benchmarks were found, the next
    items in the order fill up.
    """
    wide = preds.pivot_table(index="item", columns="model", values="correct", aggfunc="first")
    wide = wide.dropna()  # items every model answered (the same seeded subset: all of them)
    bench = preds.drop_duplicates("item").set_index("item").benchmark
    others = wide.drop(columns="teacher")
    right = others.sum(axis=1)
    split = pd.concat([right, len(others.columns) - right], axis=1).min(axis=1)
    ranked = pd.DataFrame({"split": split, "tie": [zlib.crc32(f"{seed}:{i}".encode())
                                                   for i in wide.index]}, index=wide.index)
    ranked = ranked.sort_values(["split", "tie"], ascending=[False, True], kind="stable")
    teacher = wide.teacher.astype(bool)
    a = [i for i in ranked.index if teacher[i] and right[i] < len(others.columns)]
    b = [i for i in ranked.index if not teacher[i] and right[i] > 0]
    taken = set(a) | set(b)
    c = [i for i in ranked.index if i not in taken]
    order = [x for pair in zip(a, b, strict=False) for x in pair]
    order += a[len(order) // 2:] if len(a) > len(b) else b[len(order) // 2:]
    order += c
    chosen: list[str] = []
    for item in order:
        if len(chosen) < n and bench[item] not in {bench[i] for i in chosen}:
            chosen.append(item)
    chosen += [i for i in order if i not in chosen][:n - len(chosen)]
    return chosen


def examples(P: Any, n: int = 4, seed: int = 0, *,
             cache: cells.CellCache | None = None) -> pd.DataFrame:
    """Chapter 02's example generations (paper Table 8): for `n` items, the teacher's and
    every first-seed pruned and recovered student's prediction, one tidy row per (item,
    model). The items are chosen by `pick_items` (preferring items where the models disagree,
    one per benchmark); the predictions come from the grid's cells (`cache`, default the
    chapter's `results/cells/`), so nothing is trained when the chapter has run."""
    preds = predictions(P, cache=cache)
    chosen = pick_items(preds, n, seed)
    out = preds[preds["item"].isin(chosen)].copy()
    out["item"] = pd.Categorical(out["item"], chosen, ordered=True)
    out["model"] = pd.Categorical(out["model"], list(dict.fromkeys(preds.model)), ordered=True)
    out = out.sort_values(["item", "model"])
    return out.astype({"item": str, "model": str}).reset_index(drop=True)


def _mark(prediction: str, correct: bool) -> str:
    return f"{'✓' if correct else '✗'} {prediction or '(empty)'}"


def answers_table(ex: pd.DataFrame) -> pd.DataFrame:
    """`examples()` as the paper's Table 8: one row per model, one column per item (its
    benchmark and id), each cell the prediction with ✓ / ✗; the first row the reference."""
    items = list(dict.fromkeys(ex["item"]))
    wide = ex.assign(cell=[_mark(p, c) for p, c in zip(ex.prediction, ex.correct, strict=True)])
    wide = wide.pivot(index="model", columns="item", values="cell")
    wide = wide.loc[list(dict.fromkeys(ex.model)), items]
    answer = ex.drop_duplicates("item").set_index("item").answer
    wide.loc["reference answer"] = [answer[i] for i in items]
    wide = wide.loc[["reference answer", *wide.index[:-1]]]
    return wide.rename_axis(index="model", columns=None).reset_index()


def _wrap(text: str, width: int) -> list[str]:
    return [line for para in text.split("\n") for line in textwrap.wrap(para, width) or [""]]


def fig_generations(ex: pd.DataFrame, *, wrap: int = 27, title: str | None = None):
    """One panel per item of `examples()`: the scene, the question and the reference answer
    under it, then each model's prediction, green with a tick when correct, red with a cross
    when wrong. Models are rows shared by every panel (their labels on the left), as in the
    paper's Table 8; pruned settings alternate a grey band so a row reads across."""
    items = list(dict.fromkeys(ex["item"]))
    labels = list(dict.fromkeys(ex.model))
    first = ex.drop_duplicates("item").set_index("item")
    questions = {i: _wrap(first.question[i], wrap) for i in items}
    head = max(len(q) for q in questions.values()) + 3  # a gap, the question, answer, a gap
    total = head + len(labels)
    line = 0.19  # inches per text line at font size 8.5
    width = 2.45 * len(items) + 1.9
    fig = plt.figure(figsize=(width, 1.9 + line * total + (0.4 if title else 0.1)))
    gs = fig.add_gridspec(2, len(items) + 1, height_ratios=[1.9, line * total],
                          width_ratios=[1.9] + [2.45] * len(items), hspace=0.02, wspace=0.03)
    groups = [lab.split(" · ")[0] for lab in labels]
    bands = [k for k, g in enumerate(groups) if g != "teacher"
             and sorted(set(groups[1:]), key=groups.index).index(g) % 2 == 0]

    def text_axes(col: int):
        ax = fig.add_subplot(gs[1, col])
        ax.set_xlim(0, 1)
        ax.set_ylim(total, 0)
        ax.axis("off")
        for k in bands:
            ax.axhspan(head + k, head + k + 1, color="#efefef", zorder=0, lw=0)
        return ax

    names = text_axes(0)
    names.text(0.98, head - 1.5, "reference answer", ha="right", va="center", fontsize=8.5,
               fontweight="bold")
    for k, lab in enumerate(labels):
        names.text(0.98, head + k + 0.5, lab, ha="right", va="center", fontsize=8.5)
    for col, item in enumerate(items, start=1):
        row = first.loc[item]
        img = fig.add_subplot(gs[0, col])
        img.imshow(_items(row.benchmark)[item].image, interpolation="nearest")
        img.set_xticks([])
        img.set_yticks([])
        img.set_title(" · ".join(x for x in (row.benchmark, row.subset) if x), fontsize=9,
                      fontweight="bold")
        img.set_xlabel(item, fontsize=7.5, color="#555555", labelpad=2)
        ax = text_axes(col)
        for k, text in enumerate(questions[item]):
            ax.text(0.04, k + 1.5, text, va="center", fontsize=8.5, style="italic")
        ax.text(0.04, head - 1.5, row.answer, va="center", fontsize=8.5, fontweight="bold")
        mine = ex[ex["item"] == item].set_index("model")
        for k, lab in enumerate(labels):
            pred, ok = mine.prediction[lab], bool(mine.correct[lab])
            ax.text(0.04, head + k + 0.5, _mark(pred, ok), va="center", fontsize=8.5,
                    color=RIGHT if ok else WRONG)
    if title:
        fig.suptitle(title, fontsize=10, fontweight="bold")
    return fig
