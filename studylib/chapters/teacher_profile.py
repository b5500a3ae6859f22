"""Chapter 00: what a teacher knows, before any verdict leans on it.

- **Two formulations of multiple choice** (`formulation_table`): SQA and MMMU scored by the
  generated letter and by option log-likelihood (cloze; `studylib.evaluation.choice`), with
  the option-lookup probe that says whether the letter format itself was learned.
- **The image-shuffle control** (`shuffle_table`): every benchmark asked again about another
  item's image; a score that stays up is answered from the question, not the image.
- **The profile** (`fig_profile`): each benchmark as a multiple of its guesser's score, our
  teacher beside the paper's three unpruned models, so a reader sees where the testbed is
  like the real thing and where it is not.
"""

from __future__ import annotations

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd

from studylib.analysis.paper import (
    PAPER_MODELS,
    SHORT_PAPER_NAME,
    benchmark_guessers,
    paper_unpruned,
)
from studylib.chapters.plotting import color
from studylib.chapters.testbed import OPTION_LOOKUP, scores_of, unpruned
from studylib.evaluation import evaluate, metrics
from studylib.evaluation.chance import IMAGE_BLIND_SHARE, edge_kept, image_blind
from studylib.study import grid
from studylib.testbed import shapes, suite

FORMULATION_NAMES = {"letter": "letter (generated)", "cloze": "cloze (option log-likelihood)"}


def _ci(lo: float, hi: float) -> str | None:
    return f"[{lo:.1f}, {hi:.1f}]" if pd.notna(lo) else None


def formulation_table(run: pd.DataFrame, model: str) -> pd.DataFrame:
    """SQA and MMMU in both formulations (accuracy %, 95% CI), the guesser's score on the
    same items, which one is the headline; then the text-only option-lookup probe (letters
    only: it asks which letter says a word)."""
    rows = unpruned(run)
    ours = rows[rows.model == model]
    chance = scores_of(run, "chance").value
    out = []
    for b in evaluate.MULTIPLE_CHOICE:
        row = {"benchmark": b}
        for f in evaluate.FORMULATIONS:
            r = ours[(ours.benchmark == b) & (ours.metric == f)]
            row[FORMULATION_NAMES[f]] = float(r.value.mean()) if len(r) else np.nan
            row[f"{f} 95% CI"] = _ci(r.ci_low.mean(), r.ci_high.mean()) if len(r) else None
        row["chance"] = float(chance.get(b, np.nan))
        row["headline"] = evaluate.HEADLINE_FORMULATION
        out.append(row)
    probe = ours[ours.benchmark == OPTION_LOOKUP]
    if len(probe):
        out.append({"benchmark": f"{OPTION_LOOKUP} (text only)",
                    FORMULATION_NAMES["letter"]: float(probe.value.mean()),
                    "chance": 100.0 / len(shapes.LETTERS), "headline": "letter"})
    return pd.DataFrame(out)


def shuffle_table(run: pd.DataFrame, model: str) -> pd.DataFrame:
    """Per benchmark (own scale): the teacher with its images and with shuffled ones, the
    guesser, the share of the teacher's edge over the guesser that survives shuffling, and
    whether that makes the benchmark answerable without the image."""
    real, chance = scores_of(run, model).value, scores_of(run, "chance").value
    shuffled = scores_of(run, model, grid.IMAGE_SHUFFLE).value
    blind = image_blind(real, shuffled, chance)
    kept = pd.Series({b: 100 * edge_kept(real[b], shuffled.get(b, np.nan),
                                         chance.get(b, np.nan)) for b in real.index})
    return pd.DataFrame({
        "benchmark": real.index, "own image": real.to_numpy(float),
        "shuffled images": shuffled.reindex(real.index).to_numpy(float),
        "guesser": chance.reindex(real.index).to_numpy(float),
        "edge kept (%)": kept.to_numpy(float),
        "answerable without the image": ["YES" if b in blind else
                                         ("no" if np.isfinite(k) else "– (no edge)")
                                         for b, k in kept.items()]})


def hidden_table(items: pd.DataFrame, split: str = "test") -> pd.DataFrame:
    """Per benchmark, the share of items answered right (the headline formulation; POPE and
    MME per question) on scenes in full view and on scenes with a partly hidden object
    (`suite.has_hidden_object`), from an evaluation's item table (`EvalReport.items`)."""
    rows = []
    for name, table in items.groupby("benchmark", sort=False):
        by_id = {it.id: it for it in suite.benchmark(name, split=split)}
        hidden = np.array([suite.has_hidden_object(by_id[i]) for i in table.id])
        correct = table.correct.to_numpy(dtype=float)
        row = {"benchmark": name}
        for label, where in (("in full view", ~hidden), ("an object hidden", hidden)):
            row[f"{label}: items"] = int(where.sum())
            row[f"{label}: correct (%)"] = (round(100 * correct[where].mean(), 1)
                                            if where.any() else np.nan)
        rows.append(row)
    return pd.DataFrame(rows)


def teacher_items(run: pd.DataFrame, model: str, cache) -> pd.DataFrame:
    """The teacher's item table (every prediction), read from its grid cell in `cache`."""
    keys = run[(run.model == model) & (run.method == "none")].cell.dropna().unique()
    if len(keys) != 1:
        raise ValueError(f"expected one teacher cell for {model!r}, found {len(keys)}")
    return pd.DataFrame(cache.get(keys[0])["report"]["items"])


def profile(run: pd.DataFrame, model: str, arch: str | None = None) -> pd.DataFrame:
    """Long rows (model, benchmark, multiple): each benchmark's score divided by its
    guesser's, for this run's teacher (its own guesser rows) and the paper's three unpruned
    models (the real benchmarks' guessers, `benchmark_guessers`; GQA has none)."""
    ours, chance = scores_of(run, model).value, scores_of(run, "chance").value
    rows = [{"model": f"ours: {arch or model}", "benchmark": b, "multiple": ours[b] / chance[b]}
            for b in metrics.PAPER_KEYS if b in ours and chance.get(b, 0) > 0]
    guessers = benchmark_guessers()
    for name in PAPER_MODELS:
        scores = paper_unpruned(name)
        rows += [{"model": f"paper: {SHORT_PAPER_NAME.get(name, name)}", "benchmark": b,
                  "multiple": scores[b] / guessers[b]}
                 for b in metrics.PAPER_KEYS if b in scores and b in guessers]
    return pd.DataFrame(rows)


def fig_profile(run: pd.DataFrame, model: str, arch: str | None = None):
    """`profile` as dots per benchmark; 1 is the guesser, below it worse than guessing."""
    data = profile(run, model, arch)
    names = list(dict.fromkeys(data.model))
    fig, ax = plt.subplots(figsize=(8, 3.4))
    x = np.arange(len(metrics.PAPER_KEYS))
    for k, name in enumerate(names):
        g = data[data.model == name].set_index("benchmark").reindex(metrics.PAPER_KEYS)
        ours = name.startswith("ours")
        ax.scatter(x + (k - (len(names) - 1) / 2) * 0.12, g.multiple,
                   s=70 if ours else 40, marker="o" if ours else "s", zorder=3,
                   color=color("this study") if ours else plt.cm.Greys(0.45 + 0.18 * k),
                   label=name)
    ax.axhline(1.0, ls="--", lw=1, color=color("chance"), label="guesser (= 1)")
    ax.set_xticks(x, metrics.PAPER_KEYS)
    ax.set_ylabel("score / guesser's score")
    ax.set_ylim(0, max(2.2, float(np.nanmax(data.multiple)) * 1.1))
    ax.set_title("Score / guesser's score: our teacher and the paper's three")
    ax.legend(loc="upper left", bbox_to_anchor=(1.0, 1.0), fontsize=8)
    fig.tight_layout()
    return fig


def takeaway(run: pd.DataFrame, model: str) -> str:
    """The formulations, the shuffle control and the profile in three sentences."""
    forms = formulation_table(run, model).set_index("benchmark")
    mc = forms.loc[list(evaluate.MULTIPLE_CHOICE)]
    letter, cloze = FORMULATION_NAMES["letter"], FORMULATION_NAMES["cloze"]
    parts = [f"{b}: letter {r[letter]:.1f}, cloze {r[cloze]:.1f} (guesser {r.chance:.1f})"
             for b, r in mc.iterrows()]
    lookup = forms[letter].get(f"{OPTION_LOOKUP} (text only)", np.nan)
    shuffle = shuffle_table(run, model)
    blind = shuffle[shuffle["answerable without the image"] == "YES"].benchmark.tolist()
    below = profile(run, model).query("model.str.startswith('ours') and multiple < 1").benchmark
    return (f"{model}: multiple choice {'; '.join(parts)}; headline "
            f"{evaluate.HEADLINE_FORMULATION}; option lookup {lookup:.1f}. With shuffled "
            f"images, {', '.join(blind) or 'no benchmark'} keep more than "
            f"{100 * IMAGE_BLIND_SHARE:g}% of the edge over the guesser. Below the guesser: "
            f"{', '.join(below) or 'none'}.")
