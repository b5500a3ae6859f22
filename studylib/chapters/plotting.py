"""The book's figures: one function per figure, drawn from the results table only.

`set_theme()` once per notebook; every method and recipe keeps one colour across the whole
book (`COLORS`), so a reader learns "orange = widthwise" once. Where the paper reports the
same quantity, its numbers (the shared CSV tables in book/data/paper/) are drawn beside
ours, labelled "paper (LLaVA-7B)" vs "this study (toy-llava)".
"""

from __future__ import annotations

import os
import random
import tempfile
from collections.abc import Sequence
from pathlib import Path

import matplotlib

matplotlib.rcParams.setdefault("figure.max_open_warning", 0)

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402

from studylib.evaluation import metrics  # noqa: E402
from studylib.testbed import shapes  # noqa: E402

PAPER_DIR = Path(__file__).resolve().parents[2] / "book" / "data" / "paper"

# Fixed colours: methods, recovery recipes, and the reference series.
COLORS = {
    # sources
    "this study": "#1f77b4",
    "paper": "#7f7f7f",
    "chance": "#000000",
    # pruning methods
    "none": "#1f77b4",
    "layer": "#2ca02c",
    "width": "#ff7f0e",
    # recovery recipes
    "prune only": "#c7c7c7",
    "sft mm": "#9edae5",
    "sft mm+llm": "#17becf",
    "sft": "#17becf",
    "kl": "#bcbd22",
    "rkl": "#8c564b",
    "l2": "#e377c2",
    "sft+kl": "#d4d46a",
    "sft+rkl": "#c49c94",
    "sft+l2": "#d62728",
    "sft+rkl+l2": "#9467bd",
}
SHORT_PAPER_NAME = {"LLaVA-v1.5-7B": "LLaVA-7B", "Bunny-v1.0-3B": "Bunny-3B"}


def color(name: str) -> str:
    """The book-wide colour of a method/recipe/source (unknown names get a stable colour)."""
    key = name.lower()
    if key in COLORS:
        return COLORS[key]
    palette = plt.get_cmap("tab20").colors
    return matplotlib.colors.to_hex(palette[sum(map(ord, key)) % len(palette)])


def set_theme() -> None:
    """The book's style; call once per notebook before drawing."""
    import seaborn as sns

    sns.set_theme(context="notebook", style="whitegrid", font_scale=0.95)
    plt.rcParams.update({"figure.dpi": 100, "savefig.dpi": 120, "savefig.bbox": "tight",
                         "axes.titleweight": "bold", "legend.frameon": False})


def save(fig, name: str, directory: str | Path = "book/figures") -> Path:
    """Save a figure as PNG under `directory` (atomically) and return its path."""
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / f"{name}.png"
    fd, tmp = tempfile.mkstemp(prefix=f".{name}.", suffix=".png", dir=directory)
    try:
        with os.fdopen(fd, "wb") as f:  # a unique temp name: parallel runs never collide
            fig.savefig(f, format="png")
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


# --- the paper's numbers ------------------------------------------------------------------


def paper_table(name: str) -> pd.DataFrame:
    """One of the paper's tables (book/data/paper/<name>.csv)."""
    path = PAPER_DIR / f"{name}.csv"
    if not path.is_file():
        raise FileNotFoundError(f"paper table not found: {path}")
    return pd.read_csv(path)


def paper_unpruned(model: str) -> dict[str, float]:
    """The paper's unpruned scores for a model (Table 6, ratio 0): benchmark -> value."""
    t = paper_table("table6_pruning_only")
    row = t[(t.model == model) & (t.ratio == 0.0)]
    if row.empty:
        return {}
    return {k: float(row.iloc[0][k]) for k in metrics.PAPER_KEYS}


# --- reference levels ---------------------------------------------------------------------


def _guess_pool(name: str, items: Sequence[shapes.Item]) -> dict[str, list[str]]:
    """Per subset, the answers a guesser picks from: yes/no, the item's options, or the
    short answers of the same question family (GQA)."""
    if name in ("POPE", "MME-P", "MME-C"):
        return {"*": ["yes", "no"]}
    if name in ("SQA", "MMMU"):
        return {"*": list(shapes.LETTERS)}
    pool: dict[str, list[str]] = {}
    for it in shapes.benchmark(name):
        pool.setdefault(it.subset, [])
        if it.answer not in pool[it.subset]:
            pool[it.subset].append(it.answer)
    return pool


def chance_scores(benchmarks: Sequence[str] = shapes.BENCHMARKS, limit: int | None = None,
                  seed: int = 0, draws: int = 20) -> pd.DataFrame:
    """The score of a uniform random guesser, with each benchmark's own metric, on the same
    seeded item subset a run evaluates (mean over `draws` guessers, with their spread).

    Why not a constant: MME's acc+ and POPE's F1 do not sit at 50 for a coin flip, and GQA's
    chance depends on each question family's answer vocabulary.
    """
    from studylib.evaluation.evaluate import score, select

    rows = []
    for name in benchmarks:
        items = select(shapes.benchmark(name), limit, seed)
        pool = _guess_pool(name, items)
        rng = random.Random(seed)
        values: dict[str, list[float]] = {}
        for _ in range(draws):
            guesses = [rng.choice(pool.get(it.subset, pool.get("*", ["?"]))) for it in items]
            _, scored = score(name, items, guesses, seed=seed, n_boot=1)
            for r in scored.itertuples():
                values.setdefault(r.metric, []).append(float(r.value))
        for metric, vals in values.items():
            rows.append({"benchmark": name, "metric": metric, "value": float(np.mean(vals)),
                         "ci_low": float(np.percentile(vals, 2.5)),
                         "ci_high": float(np.percentile(vals, 97.5)), "n": len(items)})
    return pd.DataFrame(rows)


# --- the testbed --------------------------------------------------------------------------


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
        for it in shapes.benchmark(name)[:per_benchmark]:
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


def chance_avg(df: pd.DataFrame) -> float:
    """The paper's AVG of the `chance` rows of a run (NaN if a benchmark is missing)."""
    rows = df[(df.model == "chance") & (df.metric == "score")]
    head = dict(zip(rows.benchmark, rows.value, strict=False))
    try:
        return metrics.average(head)
    except KeyError:
        return float("nan")
