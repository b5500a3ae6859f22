"""Chance baselines: the score of a uniform random guesser on the same seeded items a run evaluates, with each benchmark's own metric."""

from __future__ import annotations

import random
import warnings
from collections.abc import Mapping, Sequence

import numpy as np
import pandas as pd

from studylib.evaluation import metrics
from studylib.evaluation.evaluate import headline, score, select
from studylib.testbed import shapes, suite


def _guess_pool(name: str, items: Sequence[suite.Item]) -> dict[str, list[str]]:
    """Per subset, the answers a guesser picks from: yes/no, the item's options, or the
    short answers of the same question family (GQA)."""
    if name in ("POPE", "MME-P", "MME-C"):
        return {"*": ["yes", "no"]}
    if name in ("SQA", "MMMU"):
        return {"*": list(shapes.LETTERS)}
    pool: dict[str, list[str]] = {}
    for it in suite.benchmark(name):
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
    rows = []
    for name in benchmarks:
        items = select(suite.benchmark(name), limit, seed)
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


def chance_avg(df: pd.DataFrame) -> float:
    """The paper's AVG of the `chance` rows of a run (NaN if a benchmark is missing)."""
    rows = df[(df.model == "chance") & (df.metric == "score")]
    head = dict(zip(rows.benchmark, rows.value, strict=False))
    try:
        return metrics.average(head)
    except KeyError:
        return float("nan")


# --- near-chance teachers --------------------------------------------------------------------

# A teacher's score is *near chance* when it does not clear a random guesser's (on the same
# items, with the same metric) by a clear margin; a score below chance counts too (a model
# that always answers "no" gets POPE F1 0 and MME-P 500, below the guesser's ~50 and ~750).
# Accuracies (chance ~25) use a ratio; POPE's F1 and MME's acc + acc+ sit far from 0 for a
# guesser, so a ratio would be meaningless there and they use an additive margin instead.
NEAR_CHANCE_FACTOR = 1.5  # GQA, SQA, MMMU: near chance below 1.5 x chance
# POPE, MME-P, MME-C: near chance below chance + margin; each margin is 5 points on the
# paper's 0-100 scale (MME-P / 20, MME-C / 8): F1 ~50 + 5, MME-P ~750 + 100, MME-C ~300 + 40.
NEAR_CHANCE_MARGIN = {"POPE": 5.0, "MME-P": 100.0, "MME-C": 40.0}


class NearChanceWarning(UserWarning):
    """A teacher scores near (or below) a random guesser on a benchmark: compressing it
    cannot lose much there, so that benchmark's AVG-% says little about compression."""


def near_chance_threshold(benchmark: str, chance: float) -> float:
    """The score a teacher must reach on `benchmark` not to count as near chance."""
    if benchmark in NEAR_CHANCE_MARGIN:
        return chance + NEAR_CHANCE_MARGIN[benchmark]
    return NEAR_CHANCE_FACTOR * chance


def near_chance(scores: Mapping[str, float], chance: Mapping[str, float]) -> dict[str, str]:
    """Benchmark -> a sentence, for every benchmark of `scores` (headline values) that does
    not reach `near_chance_threshold`; benchmarks without a chance value are skipped."""
    found = {}
    for name, value in scores.items():
        if name not in chance or not np.isfinite(chance[name]) or not np.isfinite(value):
            continue
        bar = near_chance_threshold(name, chance[name])
        if value < bar:
            rule = (f"chance + {NEAR_CHANCE_MARGIN[name]:g}" if name in NEAR_CHANCE_MARGIN
                    else f"{NEAR_CHANCE_FACTOR:g} x chance")
            found[name] = (f"{name} {value:.1f} is near or below chance {chance[name]:.1f} "
                           f"(needs >= {bar:.1f} = {rule})")
    return found


def warn_near_chance(scores: Mapping[str, float], chance: Mapping[str, float] | None = None,
                     *, model: str = "teacher", limit: int | None = None,
                     seed: int = 0, stacklevel: int = 2) -> dict[str, str]:
    """Warn (`NearChanceWarning`, one per benchmark) where a teacher's headline `scores` sit
    near chance; `chance` defaults to a random guesser's scores on the same seeded items
    (`limit`, `seed`). `stacklevel` as for `warnings.warn`: whose line the warning names.
    Returns what it warned about."""
    scores = {k: float(v) for k, v in scores.items() if k in shapes.BENCHMARKS}
    if chance is None:
        rows = chance_scores(tuple(scores), limit=limit, seed=seed)
        chance = headline(rows)
    found = near_chance(scores, chance)
    for message in found.values():
        warnings.warn(f"{model}: {message}", NearChanceWarning, stacklevel=stacklevel)
    return found


def admonition(model: str, found: Mapping[str, str], meaning: str) -> str:
    """The page's copy of `warn_near_chance`'s warnings about one teacher: a MyST admonition
    of class `warning`, titled with the teacher and its benchmarks, with `near_chance`'s
    sentence for each benchmark of `found` (value, chance level, the bar), then `meaning`:
    what that does to the chapter's numbers. One check, two outputs: the terminal gets the
    warnings, the reader the admonition."""
    lines = "\n".join(f"- {sentence}" for sentence in found.values())
    return (f"```{{admonition}} {model} is near chance on {', '.join(found)}\n"
            f":class: warning\n\n{lines}\n\n{meaning}\n```\n")



# --- benchmarks answerable without the image --------------------------------------------------

# The image-shuffle control (`evaluate.evaluate(images="shuffled")`) asks every question about
# another item's image. A score that keeps more than this share of the teacher's edge over
# the guesser is answered mostly from the question (its priors and wording), not the image;
# real POPE's "popular" and "adversarial" splits exist because of exactly that.
IMAGE_BLIND_SHARE = 0.5


class ImageBlindWarning(UserWarning):
    """A teacher keeps most of its edge over a guesser when the images are shuffled: that
    benchmark measures what the questions give away, so its retention under compression
    says little about the vision-language model."""


def edge_kept(score: float, shuffled: float, chance: float) -> float:
    """The share of a teacher's edge over the guesser that survives shuffled images:
    (shuffled - chance) / (score - chance); NaN where there is no edge to keep."""
    edge = score - chance
    return (shuffled - chance) / edge if edge > 0 else float("nan")


def image_blind(scores: Mapping[str, float], shuffled: Mapping[str, float],
                chance: Mapping[str, float]) -> dict[str, str]:
    """Benchmark -> a sentence, for every benchmark where the teacher clears the guesser
    (`scores` above `chance`) and its score with shuffled images keeps more than
    `IMAGE_BLIND_SHARE` of that edge. Below-chance teachers are `near_chance`'s business."""
    found = {}
    for name, value in scores.items():
        if not all(np.isfinite(d.get(name, np.nan)) for d in (chance, shuffled)):
            continue
        kept = edge_kept(value, shuffled[name], chance[name])
        if kept > IMAGE_BLIND_SHARE:
            found[name] = (f"{name} {value:.1f} keeps {100 * kept:.0f}% of its edge over chance "
                           f"{chance[name]:.1f} with shuffled images ({shuffled[name]:.1f}; "
                           f"answerable without the image above {100 * IMAGE_BLIND_SHARE:g}%)")
    return found


def warn_image_blind(scores: Mapping[str, float], shuffled: Mapping[str, float],
                     chance: Mapping[str, float], *, model: str = "teacher",
                     stacklevel: int = 2) -> dict[str, str]:
    """Warn (`ImageBlindWarning`, one per benchmark) where `image_blind` finds one; returns
    what it warned about."""
    found = image_blind(scores, shuffled, chance)
    for message in found.values():
        warnings.warn(f"{model}: {message}", ImageBlindWarning, stacklevel=stacklevel)
    return found
