"""Chance baselines: the score of a uniform random guesser on the same seeded items a run evaluates, with each benchmark's own metric."""

from __future__ import annotations

import random
from collections.abc import Sequence

import numpy as np
import pandas as pd

from studylib.evaluation import metrics
from studylib.evaluation.evaluate import score, select
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
